"""One Ark call: Bearer auth, the platform's base URL, and Ark's error envelope.

Ark answers errors as ``{"error": {"code", "message", "param"?, "type"?}}`` with an HTTP
status; :func:`classify` maps ``error.code`` (then the status) to vidgate's error classes.
The code names are those reported by client code (reference 2.6, unconfirmed), so a code
this table does not know falls back on its HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
from vidgate.vendorhttp import join_url, retry_after, scrub, transport_errors

from .mapping import DEFAULT_PLATFORM, PLATFORMS, platform_of

VENDOR = "Seedance"
#: Ark's request field -> the unified field a client sets it with.
_PARAMS = {"duration": "seconds", "ratio": "size", "resolution": "size", "content": "prompt", "model": "model"}
#: Without a Retry-After, wait this long after a 429 (Ark documents no header).
DEFAULT_RATE_LIMIT_DELAY = 1.0


def base_url(ctx: CallContext) -> str:
    """The channel's ``base_url``, else its platform's (the core fills in the BytePlus
    default when the channel sets none, so that one counts as "not set")."""
    url = ctx.channel.base_url
    if not url or url == PLATFORMS[DEFAULT_PLATFORM]:
        url = PLATFORMS.get(platform_of(ctx.channel), PLATFORMS[DEFAULT_PLATFORM])
    return join_url(url)


def classify(status: int, error: dict[str, Any], wait: float | None) -> VendorError:
    """The vidgate error for an Ark error answer (HTTP ``status``, ``error`` object)."""
    code = str(error.get("code") or "")
    message = str(error.get("message") or "") or f"HTTP {status}"
    text = f"Seedance: {message}" + (f" ({code})" if code else "")
    kwargs: dict[str, Any] = {"vendor_code": code or None, "http_status": status}
    if code.startswith(("RateLimitExceeded", "QuotaExceeded", "ServerOverloaded")) or status == 429:
        return VendorRateLimited(text, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_DELAY, **kwargs)
    if code.startswith(("InputTextSensitiveContentDetected", "InputImageSensitiveContentDetected")):
        return VendorRejected(text, **kwargs)
    if code.startswith(("ModelNotOpen", "InvalidEndpoint")):
        # Not activated on this account, or a wrong id: another channel may serve it.
        return ModelRetired(text, **kwargs)
    if status == 404 or code.startswith("ResourceNotFound"):
        return TaskNotFound(text, **kwargs)
    if status in (401, 403) or code.startswith(("AuthenticationError", "AccessDenied", "AccountOverdue")):
        return ChannelUnusable(text, **kwargs)
    if code.startswith(("InvalidParameter", "MissingParameter")) or 400 <= status < 500:
        param = error.get("param")
        return VendorRejected(text, param=_PARAMS.get(str(param)) if param else None, **kwargs)
    # An error answer from Ark itself: it did not create anything.
    return VendorUnavailable(text, maybe_received=False, **kwargs)


async def call(
    ctx: CallContext,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: Sequence[tuple[str, str | int]] | None = None,
) -> Any:
    """Call Ark and return the decoded success body; raise a ``VendorError`` otherwise."""
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("Seedance channel has no api_key credential")
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    url = join_url(base_url(ctx), path)
    with transport_errors(VENDOR):
        async with ctx.http.request(
            method,
            url,
            headers=headers,
            params=list(params) if params else None,
            data=None if body is None else json.dumps(body),
            timeout=ctx.timeout,
        ) as resp:
            status = resp.status
            raw = await resp.read()
            wait = retry_after(resp.headers)
    try:
        decoded = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        decoded = None
    if status < 300 and decoded is not None:
        return decoded
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(error, dict):
        # A proxy's HTML page, a truncated body: transient, and it may have arrived.
        ctx.log.warning("seedance_malformed_reply", http_status=status, body=raw[:200].decode("utf-8", "replace"))
        raise VendorUnavailable(f"Seedance sent a malformed reply (HTTP {status})", http_status=status)
    ctx.log.warning(
        "seedance_error",
        http_status=status,
        vendor_code=error.get("code"),
        message=scrub(str(error.get("message") or ""), ctx.channel)[:300],
    )
    raise classify(status, error, wait)
