"""One Replicate API call: Bearer token, JSON answers, RFC 7807 problem details.

Replicate answers errors as ``{type, title, status, detail, instance}``
(vendor-protocols-2026 §2.13): 401 auth, 402 billing (unconfirmed), 404/422 client,
429 rate (``Retry-After``), 5xx transient. A 422's ``detail`` names the input as
``input.<field>``, which becomes the 400's ``param``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from vidgate import CallContext
from vidgate.errors import ChannelUnusable, VendorError, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate.vendorhttp import join_url, retry_after, scrub, transport_errors

_FIELD = re.compile(r"\binput\.([A-Za-z0-9_]+)")


def url(ctx: CallContext, *parts: str) -> str:
    return join_url(ctx.channel.base_url, "v1", *parts)


def problem(body: Any) -> tuple[str, str | None]:
    """(message, input field) from a problem-details body."""
    if not isinstance(body, dict):
        return "", None
    message = str(body.get("detail") or body.get("title") or "")
    m = _FIELD.search(message)
    return message, m[1] if m else None


def classify(status: int, body: Any, headers: Any, what: str) -> VendorError:
    message, field = problem(body)
    text = f"Replicate: {message}" if message else f"Replicate {what} failed (HTTP {status})"
    kw: dict[str, Any] = {"vendor_code": status, "http_status": status}
    if status == 429:
        return VendorRateLimited(text, retry_after=retry_after(headers), **kw)
    if status in (401, 402, 403):
        return ChannelUnusable(text, **kw)
    if status >= 500:
        # Replicate's own error answer made no prediction; a proxy's 502/504 may hide one.
        return VendorUnavailable(text, maybe_received=status in (502, 504), **kw)
    return VendorRejected(text, param=field, **kw)


async def call(ctx: CallContext, method: str, target: str, body: dict[str, Any] | None = None) -> tuple[int, Any, Any]:
    """``(status, decoded body or None, headers)``. Never sends ``Prefer: wait``: the worker
    polls, so no connection is held per task."""
    token = str(ctx.channel.credentials.get("api_key") or "")
    if not token:
        raise ChannelUnusable("Replicate channel has no credentials.api_key")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    with transport_errors("Replicate"):
        async with ctx.http.request(
            method, target, headers=headers, data=None if body is None else json.dumps(body), timeout=ctx.timeout
        ) as resp:
            status, raw, resp_headers = resp.status, await resp.read(), resp.headers
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
        if status < 400 or status >= 500:
            text = scrub(raw[:200].decode(errors="replace"), ctx.channel)
            ctx.log.warning("replicate_malformed_reply", http_status=status, body=text)
            raise VendorUnavailable(f"Replicate sent a malformed reply (HTTP {status})", http_status=status) from None
    return status, decoded, resp_headers


def fail(ctx: CallContext, status: int, body: Any, headers: Any, what: str) -> VendorError:
    err = classify(status, body, headers, what)
    ctx.log.warning("replicate_error", what=what, http_status=status, message=scrub(err.message, ctx.channel)[:300])
    return err
