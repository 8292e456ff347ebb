"""fal's webhook signatures (vendor-protocols-2026 §3.2): ED25519 over
``request_id \\n user_id \\n timestamp \\n hex(sha256(body))``, in the headers
``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` and ``-Signature`` (hex), with
fal's public keys published as a JWKS (``{"keys": [{"kty": "OKP", "crv": "Ed25519", "x":
base64url}]}``) and a timestamp tolerance of five minutes.

The keys are fetched through the gateway's guarded download session (``ctx.download``:
the address guard and the channel's ``allow_result_networks`` apply), bounded in time and
size, and cached per JWKS URL; an unknown signature refetches them at most once a minute,
so forged callbacks cannot make the gateway hammer fal (or wait on it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vidgate import CallContext

DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
#: How far a webhook's timestamp may be from our clock, either way (fal's docs: 5 minutes).
TOLERANCE_SECONDS = 300
#: How long fetched keys are used before they are fetched again (fal's docs: cache for a day).
KEYS_TTL_SECONDS = 24 * 3600.0
#: The least time between two fetches of one JWKS (an unknown key, or a failed fetch).
REFETCH_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 10.0
MAX_JWKS_BYTES = 64 * 1024

REQUEST_ID = "x-fal-webhook-request-id"
USER_ID = "x-fal-webhook-user-id"
TIMESTAMP = "x-fal-webhook-timestamp"
SIGNATURE = "x-fal-webhook-signature"


class KeysUnavailable(Exception):
    """fal's JWKS could not be fetched or read (the webhook then cannot be verified)."""


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs for a webhook with ``body``."""
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


def public_keys(jwks: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document (other key types and malformed entries skipped)."""
    keys = []
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(entry, dict) or entry.get("kty", "OKP") != "OKP" or entry.get("crv", "Ed25519") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))))
        except (ValueError, binascii.Error):
            continue
    return keys


def _verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:  # fal may publish several keys (rotation): any one will do
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


async def fetch_jwks(url: str, ctx: CallContext) -> list[Ed25519PublicKey]:
    """fal's public keys from ``url``; ``KeysUnavailable`` when they cannot be had."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
            source = await ctx.download(url)
            data = bytearray()
            try:
                async for chunk in source.chunks:
                    data += chunk
                    if len(data) > MAX_JWKS_BYTES:
                        raise KeysUnavailable(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
            finally:
                aclose = getattr(source.chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
    except KeysUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - guard refusals, HTTP errors, timeouts: no keys
        raise KeysUnavailable(f"{type(exc).__name__}: {exc}"[:200]) from None
    try:
        keys = public_keys(json.loads(bytes(data)))
    except (ValueError, RecursionError):
        raise KeysUnavailable("the JWKS is not JSON") from None
    if not keys:
        raise KeysUnavailable("the JWKS has no Ed25519 key")
    return keys


class WebhookVerifier:
    """Verifies fal webhooks; holds the keys of each JWKS URL (one per process and URL)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # url -> (monotonic time fetched, keys); url -> monotonic time of the last fetch
        self._keys: dict[str, tuple[float, list[Ed25519PublicKey]]] = {}
        self._tried: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def problem(self, body: bytes, headers: Mapping[str, str], url: str, ctx: CallContext) -> str | None:
        """None when ``body`` carries a valid fal signature, else why not (for the log)."""
        lower = {k.lower(): v for k, v in headers.items()}
        request_id, user_id, timestamp, signature = (
            lower.get(h, "") for h in (REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE)
        )
        if not (request_id and user_id and timestamp and signature):
            return "no fal signature headers"
        try:
            age = abs(self._clock() - int(timestamp))
            raw = bytes.fromhex(signature)
        except ValueError:
            return "malformed timestamp or signature"
        if age > TOLERANCE_SECONDS:
            return "timestamp outside the tolerance"
        message = signed_message(request_id, user_id, timestamp, body)
        try:
            if _verifies(await self._keys_for(url, ctx, refresh=False), raw, message):
                return None
            # Perhaps fal rotated its keys since we fetched them.
            if _verifies(await self._keys_for(url, ctx, refresh=True), raw, message):
                return None
        except KeysUnavailable as exc:
            return f"fal's public keys are unavailable ({exc})"
        return "signature does not verify"

    async def _keys_for(self, url: str, ctx: CallContext, *, refresh: bool) -> list[Ed25519PublicKey]:
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:  # concurrent webhooks share one fetch
            now = time.monotonic()
            cached, tried = self._keys.get(url), self._tried.get(url)
            fresh = cached is not None and now - cached[0] < KEYS_TTL_SECONDS and not refresh
            if fresh or (tried is not None and now - tried < REFETCH_SECONDS):
                if cached is None:
                    raise KeysUnavailable("the last fetch failed moments ago")
                return cached[1]
            self._tried[url] = now
            try:
                keys = await fetch_jwks(url, ctx)
            except KeysUnavailable as exc:
                if cached is None:
                    raise
                # Keys past their day still verify what fal signed with them.
                ctx.log.warning("fal_jwks_refetch_failed", error=str(exc))
                return cached[1]
            self._keys[url] = (now, keys)
            ctx.log.info("fal_jwks_fetched", keys=len(keys))
            return keys
