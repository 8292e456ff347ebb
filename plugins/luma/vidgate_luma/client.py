"""One Luma API call: bearer auth, JSON, and error classification.

The reference (2.10, from the SDK's error classes): 400/422 client, 401/403 auth, 404,
409, 429 rate, >=500 transient. The error body shape is not in the reference; Luma's API
is FastAPI-style, so ``{"detail": "..."}`` (or a list of validation errors) is read, and
``{"error": ...}``/``{"message": ...}`` too (unconfirmed).
"""

from __future__ import annotations

import json
from typing import Any

from vidgate import CallContext
from vidgate.errors import (
    ChannelUnusable,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import join_url, parse_json, retry_after, scrub, transport_errors

VENDOR = "Luma"
DEFAULT_RATE_LIMIT_DELAY = 2.0


def _message(body: Any, status: int) -> str:
    text: Any = None
    if isinstance(body, dict):
        text = body.get("detail") or body.get("error") or body.get("message")
        if isinstance(text, list):  # validation errors: [{"loc": [...], "msg": ...}]
            text = "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in text)
        elif isinstance(text, dict):
            text = text.get("message") or json.dumps(text)[:300]
    return f"Luma: {text or f'HTTP {status}'}"[:1000]


def classify(status: int, body: Any, wait: float | None, *, task_path: bool) -> VendorError:
    message = _message(body, status)
    if status == 429:
        return VendorRateLimited(message, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_DELAY)
    if status in (401, 402, 403):
        return ChannelUnusable(message, http_status=status)
    if status == 404 and task_path:
        return TaskNotFound(message, http_status=status)
    if 400 <= status < 500:
        low = message.lower()
        # An empty credit balance (unconfirmed wording) is the account's fault, not the request's.
        if "credit" in low and ("insufficient" in low or "not enough" in low):
            return ChannelUnusable(message, http_status=status)
        return VendorRejected(message, http_status=status)
    return VendorUnavailable(message, http_status=status)


async def call(
    ctx: CallContext, method: str, path: str, body: dict[str, Any] | None = None, *, task_path: bool = False
) -> Any:
    """Call Luma; the decoded JSON (None when empty), or a :class:`VendorError`."""
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("Luma channel has no api_key credential")
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    with transport_errors(VENDOR):
        async with ctx.http.request(
            method,
            join_url(ctx.channel.base_url, path),
            headers=headers,
            data=None if body is None else json.dumps(body),
            timeout=ctx.timeout,
        ) as resp:
            status = resp.status
            raw = await resp.read()
            wait = retry_after(resp.headers)
    if 200 <= status < 300:
        return parse_json(raw, VENDOR, status) if raw.strip() else None
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
        if status < 500 and status != 429:
            raise VendorUnavailable(f"{VENDOR} sent a malformed reply (HTTP {status})", http_status=status) from None
    err = classify(status, decoded, wait, task_path=task_path)
    ctx.log.warning("luma_error", http_status=status, message=scrub(err.message, ctx.channel)[:300])
    raise err
