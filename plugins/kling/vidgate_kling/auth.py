"""Kling's JWT authentication, built with the standard library only.

Kling authenticates every call with ``Authorization: Bearer <JWT>``: an HS256 token signed
with the account's SecretKey whose ``iss`` is the AccessKey, ``exp`` 30 minutes ahead and
``nbf`` 5 seconds in the past (clock-skew tolerance). Minting is cheap, but we still cache
one token per channel in ``ctx.state`` and renew it when less than :data:`RENEW_MARGIN`
seconds of life are left, so a burst of polls does not mint a token per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import MutableMapping
from typing import Any

#: Token lifetime (seconds) that every known Kling client uses (the official example).
LIFETIME = 1800
#: ``nbf`` is back-dated this much so a server clock slightly behind ours accepts it.
NBF_SKEW = 5
#: On a renewal after 1003 ("not yet valid": Kling's clock is behind ours) back-date more.
RENEW_NBF_SKEW = 60
#: Renew a cached token when it has less than this many seconds left.
RENEW_MARGIN = 300

_STATE_KEY = "kling_jwt"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (JWT segments)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(payload: dict[str, Any], secret: str, header: dict[str, Any] | None = None) -> str:
    """Encode and HS256-sign ``payload`` (compact JWS serialisation)."""
    head = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        _b64url(json.dumps(head, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def mint_token(access_key: str, secret_key: str, now: float | None = None, nbf_skew: int = NBF_SKEW) -> tuple[str, int]:
    """A fresh Kling JWT and its ``exp`` (Unix seconds)."""
    now_s = int(time.time() if now is None else now)
    exp = now_s + LIFETIME
    token = encode_jwt({"iss": access_key, "exp": exp, "nbf": now_s - nbf_skew}, secret_key)
    return token, exp


def cached_token(state: MutableMapping[str, Any], access_key: str, secret_key: str, *, renew: bool = False) -> str:
    """The channel's cached token, minting a new one when missing, near expiry or ``renew``.

    The cache entry remembers which AccessKey it was minted for, so a config reload that
    changes the key never reuses a token of the old account.
    """
    entry = state.get(_STATE_KEY)
    now = time.time()
    if (
        not renew
        and isinstance(entry, dict)
        and entry.get("access_key") == access_key
        and entry.get("exp", 0) - now > RENEW_MARGIN
    ):
        return str(entry["token"])
    token, exp = mint_token(access_key, secret_key, now, RENEW_NBF_SKEW if renew else NBF_SKEW)
    state[_STATE_KEY] = {"token": token, "exp": exp, "access_key": access_key}
    return token
