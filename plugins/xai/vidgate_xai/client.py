"""HTTP to xAI's REST video API: the auth header, one call, and the classified errors.

xAI's official SDK (``xai-sdk``) speaks gRPC; this plugin calls the REST routes
(``/v1/videos/*``) the reference describes, which the SDK's protos mirror.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from vidgate import CallContext, Channel
from vidgate.errors import ChannelUnusable, VendorUnavailable
from vidgate.vendorhttp import join_url, transport_errors

from .mapping import classify

DEFAULT_BASE_URL = "https://api.x.ai"
MAX_BODY_BYTES = 1 << 20  # a status object is tiny; more is a broken upstream


def auth_headers(channel: Channel) -> dict[str, str]:
    """``Authorization: Bearer <api_key>``."""
    key = channel.credentials.get("api_key")
    if not isinstance(key, str) or not key:
        raise ChannelUnusable("xAI channel has no credentials.api_key")
    return {"Authorization": f"Bearer {key}"}


def url(channel: Channel, path: str) -> str:
    """``{base_url}{path}``; ``path`` starts with ``/v1``, so a base_url given with a
    trailing ``/v1`` (as OpenAI-style tools write it) is not doubled."""
    base = (channel.base_url or DEFAULT_BASE_URL).rstrip("/")
    if base.endswith("/v1") and path.startswith("/v1/"):
        base = base[: -len("/v1")]
    return join_url(base, path)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    # StreamReader.read(n) may return early; collect chunks up to the cap.
    data = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) >= cap:
            break
    return bytes(data[:cap])


async def call(
    ctx: CallContext, method: str, path: str, *, operation: str, body: dict[str, Any] | None = None
) -> tuple[int, Any, Mapping[str, str]]:
    """One call; returns ``(status, decoded body or None when empty, headers)`` for a
    2xx answer, else raises the classified :class:`vidgate.errors.VendorError`."""
    headers = {**auth_headers(ctx.channel), "Accept": "application/json"}
    with transport_errors("xAI", f"{operation} call failed"):
        async with ctx.http.request(
            method, url(ctx.channel, path), headers=headers, json=body, timeout=ctx.timeout, allow_redirects=False
        ) as resp:
            raw = await _read_capped(resp, MAX_BODY_BYTES + 1)
            status, resp_headers = resp.status, resp.headers
    decoded: Any = None
    if raw.strip():
        try:
            decoded = json.loads(raw) if len(raw) <= MAX_BODY_BYTES else None
        except (ValueError, UnicodeDecodeError):
            decoded = raw[:500].decode("utf-8", "replace")
    if not 200 <= status < 300:
        raise classify(status, decoded, resp_headers, operation=operation)
    if decoded is not None and not isinstance(decoded, dict):
        raise VendorUnavailable(f"xAI {operation} answered HTTP {status} with a malformed body", http_status=status)
    return status, decoded, resp_headers
