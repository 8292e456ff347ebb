"""HTTP to the Interactions API and the classification of Google's errors.

==========  ======================================================
auth        ``x-goog-api-key: <credentials.api_key>``
create      ``POST {base}/v1beta/interactions``
poll        ``GET {base}/v1beta/interactions/{id}``
cancel      ``POST {base}/v1beta/interactions/{id}/cancel``
==========  ======================================================

Errors are Google's ``{"error": {"code", "message", "status", "details"}}``. The API
version is the channel option ``api_version`` (``v1beta``, where Google documents
interactions; google-genai 3.x itself defaults to ``v1``).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from vidgate import CallContext
from vidgate.errors import (
    ChannelUnusable,
    ModelRetired,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import retry_after, transport_errors

GEMINI_BASE = "https://generativelanguage.googleapis.com"
_BIG_BODY = 1 << 20  # parse bodies above this size off the event loop (inline videos)

_PARAM_HINTS = (
    ("duration", "seconds"),
    ("aspect_ratio", "size"),
    ("resolution", "size"),
    ("image", "image"),
    ("seed", "metadata.seed"),
    ("input", "prompt"),
)


def _error_parts(body: Any) -> tuple[str, str, list[Any]]:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", "", []
    details = err.get("details")
    return str(err.get("message") or ""), str(err.get("status") or ""), details if isinstance(details, list) else []


def _retry_after(headers: Any, details: list[Any]) -> float | None:
    if (seconds := retry_after(headers)) is not None:
        return seconds
    for d in details:  # google.rpc.RetryInfo {"retryDelay": "30s"}
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            m = re.match(r"^\s*([\d.]+)s\s*$", str(d.get("retryDelay", "")))
            if m:
                return float(m[1])
    return None


def classify(status: int, body: Any, headers: Any, *, creating: bool) -> VendorError:
    """Turn a non-200 Google answer into the error class that tells the core what to do."""
    message, gstatus, details = _error_parts(body)
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict) and "reason" in d}
    code = gstatus or status
    text = message or f"HTTP {status}"
    if status == 400 and reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}:
        return ChannelUnusable(f"Google refused the API key: {text}", vendor_code="API_KEY_INVALID")
    if status in (401, 403) or gstatus in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return ChannelUnusable(f"Google refused this account ({gstatus or status}): {text}", vendor_code=code)
    if status == 429:
        return VendorRateLimited(
            f"Google rate limit: {text}", vendor_code=code, retry_after=_retry_after(headers, details)
        )
    if status == 408 or status >= 500:
        return VendorUnavailable(
            f"Google answered HTTP {status}: {text}", vendor_code=code, maybe_received=status in (502, 504)
        )
    if status == 404:
        if creating or "no longer available" in text.lower():
            return ModelRetired(f"Google does not serve this model here: {text}", vendor_code=code, http_status=404)
        return TaskNotFound(f"Google does not know this interaction: {text}", vendor_code=code, http_status=404)
    if creating:
        lowered = text.lower()
        param = next((p for needle, p in _PARAM_HINTS if needle in lowered), None)
        return VendorRejected(f"Gemini rejected the request: {text}", vendor_code=code, param=param)
    return VendorUnavailable(f"Google answered HTTP {status}: {text}", vendor_code=code)


class GeminiClient:
    """One channel's view of the Interactions API, for one call."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        key = ctx.channel.credentials.get("api_key")
        if not isinstance(key, str) or not key:
            raise ChannelUnusable("credentials.api_key is required")
        self._key = key
        base = (ctx.channel.base_url or GEMINI_BASE).rstrip("/")
        version = str(ctx.channel.options.get("api_version") or "v1beta")
        self.root = f"{base}/{version}/interactions"

    async def _call(self, method: str, url: str, body: Any | None, *, creating: bool = False) -> dict[str, Any]:
        headers = {"x-goog-api-key": self._key}
        with transport_errors("Google", "unreachable"):
            async with self.ctx.http.request(method, url, json=body, headers=headers, timeout=self.ctx.timeout) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        try:
            data = await asyncio.to_thread(json.loads, raw) if len(raw) > _BIG_BODY else json.loads(raw)
        except ValueError:
            data = None
        del raw
        if status == 200:
            if not isinstance(data, dict):
                raise VendorUnavailable("Google answered 200 with a body that is not a JSON object")
            return data
        raise classify(status, data, resp_headers, creating=creating)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", self.root, body, creating=True)

    async def get(self, interaction_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{self.root}/{interaction_id}", None)

    async def cancel(self, interaction_id: str) -> dict[str, Any]:
        return await self._call("POST", f"{self.root}/{interaction_id}/cancel", {})
