"""One fal queue call: ``Authorization: Key``, JSON answers and error classification.

fal answers errors with ``{"detail": ...}`` (a string, or FastAPI's list of
``{loc, msg, type}`` for 422 validation errors) and marks transient runner faults with
``X-Fal-Error-Type`` / ``error_type`` (vendor-protocols-2026 §2.12).
"""

from __future__ import annotations

import json
from typing import Any

from vidgate import CallContext
from vidgate.errors import ChannelUnusable, VendorError, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate.vendorhttp import join_url, retry_after, scrub, transport_errors

#: ``error_type`` values fal uses for runner faults that a retry may cure.
TRANSIENT_ERROR_TYPES = frozenset(
    {"request_timeout", "runner_disconnected", "runner_scheduling_failure", "startup_timeout", "internal_error"}
)


def url(ctx: CallContext, *parts: str) -> str:
    return join_url(ctx.channel.base_url, *parts)


def detail(body: Any) -> tuple[str, str | None]:
    """(message, field) from fal's ``detail``; the field from a 422's ``loc``."""
    if not isinstance(body, dict):
        return "", None
    d = body.get("detail")
    if isinstance(d, list) and d and isinstance(d[0], dict):
        loc = d[0].get("loc")
        field = str(loc[-1]) if isinstance(loc, list) and loc and loc[-1] != "body" else None
        return "; ".join(str(e.get("msg", "")) for e in d if isinstance(e, dict)), field
    if isinstance(d, str):
        return d, None
    if isinstance(body.get("error"), str):
        return str(body["error"]), None
    return "", None


def classify(status: int, body: Any, headers: Any, what: str) -> VendorError:
    message, field = detail(body)
    error_type = (body.get("error_type") if isinstance(body, dict) else None) or headers.get("x-fal-error-type")
    text = f"fal: {message}" if message else f"fal {what} failed (HTTP {status})"
    kw: dict[str, Any] = {"vendor_code": error_type or status, "http_status": status}
    if status == 429:
        return VendorRateLimited(text, retry_after=retry_after(headers), **kw)
    if status in (401, 403):
        return ChannelUnusable(text, **kw)  # bad key, locked account, exhausted balance
    if error_type in TRANSIENT_ERROR_TYPES or status >= 500:
        # fal's own error answer means no job was made; a proxy's 502/504 may hide one.
        return VendorUnavailable(text, maybe_received=status in (502, 504), **kw)
    return VendorRejected(text, param=field, **kw)


async def call(
    ctx: CallContext, method: str, target: str, body: dict[str, Any] | None = None, *, what: str = "call"
) -> tuple[int, Any, Any]:
    """``(status, decoded body or None, headers)``; raises only for transport errors."""
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("fal channel has no credentials.api_key")
    headers = {"Authorization": f"Key {key}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    with transport_errors("fal"):
        async with ctx.http.request(
            method, target, headers=headers, data=None if body is None else json.dumps(body), timeout=ctx.timeout
        ) as resp:
            status, raw, resp_headers = resp.status, await resp.read(), resp.headers
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
        if status < 400 or status >= 500:
            ctx.log.warning(
                "fal_malformed_reply", http_status=status, body=scrub(raw[:200].decode(errors="replace"), ctx.channel)
            )
            raise VendorUnavailable(f"fal sent a malformed reply (HTTP {status})", http_status=status) from None
    return status, decoded, resp_headers


def fail(ctx: CallContext, status: int, body: Any, headers: Any, what: str) -> VendorError:
    err = classify(status, body, headers, what)
    ctx.log.warning("fal_error", what=what, http_status=status, message=scrub(err.message, ctx.channel)[:300])
    return err
