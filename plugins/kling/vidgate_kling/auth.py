"""Kling's two credential styles, built with the standard library only.

Both are sent as ``Authorization: Bearer <token>``:

* an **API key** (Kling's 2026 console): the key itself is the bearer token;
* an **AccessKey/SecretKey** pair: an HS256 JWT signed with the SecretKey whose ``iss``
  is the AccessKey, ``exp`` 30 minutes ahead and ``nbf`` 5 seconds in the past
  (clock-skew tolerance). Minting is cheap, but we still cache one token per channel in
  ``ctx.state`` and renew it when less than :data:`RENEW_MARGIN` seconds of life are
  left, so a burst of polls does not mint a token per request and a render that outlives
  one token (they can run longer than 30 minutes) is polled with a fresh one.

An explicit ``api_key`` wins over an AK/SK pair on the same channel (the precedence of
``vercel/ai`` ``packages/klingai``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, MutableMapping
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


def cached_token(
    state: MutableMapping[str, Any],
    access_key: str,
    secret_key: str,
    *,
    renew: bool = False,
    now: float | None = None,
) -> str:
    """The channel's cached token, minting a new one when missing, near expiry or ``renew``.

    The cache entry remembers which AccessKey it was minted for, so a config reload that
    changes the key never reuses a token of the old account.
    """
    entry = state.get(_STATE_KEY)
    now = time.time() if now is None else now
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


def credential_problems(credentials: Mapping[str, Any]) -> list[str]:
    """What is missing from a channel's credentials, naming the keys (empty when usable)."""
    api_key, ak, sk = (bool(credentials.get(k)) for k in ("api_key", "access_key", "secret_key"))
    if api_key:
        return []
    if ak and not sk:
        return [
            "credentials.secret_key: required by vendor 'kling' with credentials.access_key "
            "(or give credentials.api_key instead)"
        ]
    if sk and not ak:
        return [
            "credentials.access_key: required by vendor 'kling' with credentials.secret_key "
            "(or give credentials.api_key instead)"
        ]
    if not ak and not sk:
        return [
            "credentials.api_key: required by vendor 'kling' "
            "(or credentials.access_key and credentials.secret_key for a JWT-signed pair)"
        ]
    return []


def bearer_token(state: MutableMapping[str, Any], credentials: Mapping[str, Any], *, renew: bool = False) -> str | None:
    """The bearer token for a channel: its ``api_key``, else a JWT from its AK/SK pair;
    None when neither is configured."""
    api_key = credentials.get("api_key")
    if api_key:
        return str(api_key)
    ak, sk = str(credentials.get("access_key") or ""), str(credentials.get("secret_key") or "")
    if not ak or not sk:
        return None
    return cached_token(state, ak, sk, renew=renew)


def uses_jwt(credentials: Mapping[str, Any]) -> bool:
    """True when the channel signs JWTs (no ``api_key``): only then does renewing help."""
    return not credentials.get("api_key")
