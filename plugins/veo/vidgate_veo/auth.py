"""Vertex AI authentication: OAuth2 access tokens minted from a service account.

Google's JWT bearer grant (RFC 7523): an RS256-signed JWT with ``iss`` = the account's
``client_email``, ``scope`` = cloud-platform, ``aud`` = the account's ``token_uri``,
``iat`` and ``exp`` (one hour later) is POSTed form-encoded to ``token_uri``; the answer
is ``{"access_token", "expires_in", "token_type": "Bearer"}``. Tokens are cached per
channel (in ``ctx.state``) until five minutes before they expire.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vidgate import CallContext
from vidgate.errors import ChannelUnusable, VendorUnavailable
from vidgate.vendorhttp import transport_errors

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_LIFETIME = 3600
REFRESH_MARGIN = 300  # renew this many seconds before the token expires


@attrs.frozen
class ServiceAccount:
    """The parts of a service-account key file this plugin uses."""

    client_email: str
    private_key: str = attrs.field(repr=False)
    token_uri: str = DEFAULT_TOKEN_URI
    private_key_id: str | None = None
    project_id: str | None = None

    @classmethod
    def parse(cls, value: Any) -> ServiceAccount:
        """Read ``credentials.service_account``: the key file's JSON text or a table."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ChannelUnusable("credentials.service_account is not valid JSON") from None
        if not isinstance(value, Mapping):
            raise ChannelUnusable("credentials.service_account must be the key file's JSON or a table")
        email, key = value.get("client_email"), value.get("private_key")
        if not isinstance(email, str) or not isinstance(key, str):
            raise ChannelUnusable("credentials.service_account needs client_email and private_key")
        return cls(
            client_email=email,
            private_key=key,
            token_uri=str(value.get("token_uri") or DEFAULT_TOKEN_URI),
            private_key_id=value.get("private_key_id"),
            project_id=value.get("project_id"),
        )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_assertion(account: ServiceAccount, now: float | None = None) -> str:
    """The signed JWT for the bearer grant."""
    iat = int(now if now is not None else time.time())
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": iat,
        "exp": iat + TOKEN_LIFETIME,
    }
    try:
        key = serialization.load_pem_private_key(account.private_key.encode(), password=None)
    except (ValueError, TypeError):
        raise ChannelUnusable("credentials.service_account.private_key is not a PEM RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ChannelUnusable("credentials.service_account.private_key is not an RSA key")
    compact = (",", ":")
    signing_input = (
        f"{_b64url(json.dumps(header, separators=compact).encode())}."
        f"{_b64url(json.dumps(claims, separators=compact).encode())}"
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


async def access_token(account: ServiceAccount, ctx: CallContext) -> str:
    """A valid access token for ``account``, from the channel's cache or freshly minted."""
    cache: dict[str, tuple[str, float]] = ctx.state.setdefault("veo_tokens", {})
    lock: asyncio.Lock = ctx.state.setdefault("veo_token_lock", asyncio.Lock())
    cached = cache.get(account.client_email)
    if cached and cached[1] - REFRESH_MARGIN > time.time():
        return cached[0]
    async with lock:  # one mint per channel at a time, not one per concurrent task
        cached = cache.get(account.client_email)
        if cached and cached[1] - REFRESH_MARGIN > time.time():
            return cached[0]
        token, expires_at = await _mint(account, ctx)
        cache[account.client_email] = (token, expires_at)
        return token


def forget_token(account: ServiceAccount, ctx: CallContext) -> None:
    """Drop a cached token the vendor refused (revoked key, changed permissions)."""
    ctx.state.get("veo_tokens", {}).pop(account.client_email, None)


async def _mint(account: ServiceAccount, ctx: CallContext) -> tuple[str, float]:
    # RSA signing takes a millisecond or two; keep it off the event loop anyway.
    assertion = await asyncio.to_thread(make_assertion, account)
    started = time.time()
    with transport_errors("token endpoint", "unreachable"):
        async with ctx.http.post(
            account.token_uri, data={"grant_type": GRANT_TYPE, "assertion": assertion}, timeout=ctx.timeout
        ) as resp:
            text = await resp.text()
            status = resp.status
    if status >= 500 or status in (408, 429):
        raise VendorUnavailable(f"token endpoint answered HTTP {status}", vendor_code=status)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        reason = ""
        if isinstance(body, dict):
            reason = f": {body.get('error', '')} {body.get('error_description', '')}".rstrip()
        raise ChannelUnusable(f"service account token request refused (HTTP {status}){reason}", vendor_code=status)
    expires_in = body.get("expires_in", TOKEN_LIFETIME)
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
        expires_in = TOKEN_LIFETIME
    ctx.log.info("veo_token_minted", expires_in=expires_in)
    return body["access_token"], started + float(expires_in)
