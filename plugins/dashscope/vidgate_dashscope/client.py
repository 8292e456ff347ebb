"""One DashScope call: auth headers, envelope parsing and error classification.

DashScope answers ``{"output": {...}, "usage": {...}, "request_id"}`` on success and
``{"code", "message", "request_id"}`` on failure, sometimes with HTTP 200: a reply is an
error when it carries a non-empty ``code`` or (for calls that must return one) lacks
``output``. The ``code`` decides the class, the HTTP status only where it has none.
"""

from __future__ import annotations

import json
from typing import Any

from vidgate import CallContext
from vidgate.errors import (
    ChannelUnusable,
    ModelRetired,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import join_url, parse_json, retry_after, scrub, transport_errors

from .mapping import AUTH_CODES, FILTER_CODES, guess_param

#: Hosts by ``options.region`` (Model Studio endpoints; keys and task ids are region-bound).
REGIONS = {
    "intl": "https://dashscope-intl.aliyuncs.com",
    "singapore": "https://dashscope-intl.aliyuncs.com",
    "cn": "https://dashscope.aliyuncs.com",
    "beijing": "https://dashscope.aliyuncs.com",
    "us": "https://dashscope-us.aliyuncs.com",
    "virginia": "https://dashscope-us.aliyuncs.com",
}
DEFAULT_BASE_URL = REGIONS["intl"]
#: DashScope gives no Retry-After on throttling; back off at least this long.
DEFAULT_RATE_LIMIT_DELAY = 1.0


def base_url(ctx: CallContext) -> str:
    """The channel's host: an explicit ``base_url`` (e.g. a workspace host) wins over
    ``options.region``; the core fills in the default host when neither is set."""
    region = ctx.channel.options.get("region")
    configured = ctx.channel.base_url
    if isinstance(region, str) and (not configured or configured.rstrip("/") == DEFAULT_BASE_URL):
        return REGIONS[region.lower()]
    return configured or DEFAULT_BASE_URL


def classify(status: int, code: str, message: str, *, request_id: str | None, wait: float | None) -> VendorError:
    """The vidgate error for a DashScope failure ``code`` (possibly empty) with HTTP ``status``."""
    text = f"DashScope: {message}" if message else f"DashScope error {code or status}"
    kwargs: dict[str, Any] = {"vendor_code": code or None, "request_id": request_id, "http_status": status}
    if code.startswith("Throttling") or status == 429:
        return VendorRateLimited(text, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_DELAY, **kwargs)
    if code in AUTH_CODES or status in (401, 403):
        return ChannelUnusable(text, **kwargs)
    if code in ("ModelNotFound", "Model.NotFound") or (status == 404 and "model" in message.lower()):
        return ModelRetired(text, **kwargs)
    if code in FILTER_CODES:
        # The input (prompt or image) was refused by moderation at submit.
        return VendorRejected(text, param=guess_param(message) or "prompt", **kwargs)
    if status >= 500 or code.startswith(("InternalError", "SystemError", "ServiceUnavailable")):
        # An answer of DashScope itself (a JSON code) means it made no task; a bare 502/504
        # from a proxy in front of it might have.
        return VendorUnavailable(text, maybe_received=not code and status in (502, 504), **kwargs)
    if 400 <= status < 500 or code.startswith(("InvalidParameter", "InvalidURL", "BadRequest", "UnsupportedOperation")):
        return VendorRejected(text, param=guess_param(message), **kwargs)
    return VendorUnavailable(text, maybe_received=False, **kwargs)


async def call(
    ctx: CallContext,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    create: bool = False,
    needs_output: bool = True,
) -> dict[str, Any]:
    """Call DashScope and return the success envelope; raise a ``VendorError`` otherwise.

    ``create`` adds ``X-DashScope-Async: enable`` (mandatory on video creates: without it
    DashScope refuses the call as an unsupported synchronous one).
    """
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("DashScope channel has no api_key credential")
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if create:
        headers["X-DashScope-Async"] = "enable"
    workspace = ctx.channel.options.get("workspace")
    if isinstance(workspace, str) and workspace:
        headers["X-DashScope-WorkSpace"] = workspace
    url = join_url(base_url(ctx), path)
    with transport_errors("DashScope"):
        async with ctx.http.request(
            method, url, headers=headers, data=None if body is None else json.dumps(body), timeout=ctx.timeout
        ) as resp:
            status = resp.status
            raw = await resp.read()
            wait = retry_after(resp.headers)
    envelope = parse_json(raw, "DashScope", status) if raw.strip() else {}
    if not isinstance(envelope, dict):
        raise VendorUnavailable(f"DashScope sent a malformed reply (HTTP {status})", http_status=status)
    code = str(envelope.get("code") or "")
    request_id = envelope.get("request_id")
    request_id = str(request_id) if request_id is not None else None
    ok = status == 200 and not code and (isinstance(envelope.get("output"), dict) or not needs_output)
    if ok:
        return envelope
    if status == 200 and not code:
        raise VendorUnavailable("DashScope reply has no output object", request_id=request_id, http_status=status)
    message = str(envelope.get("message") or "")
    # DashScope's messages can quote what they were sent.
    ctx.log.warning(
        "dashscope_error",
        vendor_code=code,
        http_status=status,
        message=scrub(message, ctx.channel)[:300],
        request_id=request_id,
    )
    raise classify(status, code, message, request_id=request_id, wait=wait)
