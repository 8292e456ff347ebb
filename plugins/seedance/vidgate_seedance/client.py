"""One Ark call: Bearer auth, the platform's base URL, and Ark's error envelope, on
:class:`vidgate.vendorhttp.VendorAPI`.

Ark answers errors as ``{"error": {"code", "message", "param"?, "type"?}}`` with an HTTP
status; :func:`classify` maps ``error.code`` (then the status) to vidgate's error classes.
The code names are those reported by client code (reference 2.6, unconfirmed), so a code
this table does not know falls back on its HTTP status. The codes are matched by prefix
(``RateLimitExceeded.*``), some statuses win over codes, and a task object carries an
``error`` at HTTP 200 (a failed task), so the classification stays here rather than in
``VendorAPI``'s exact-match ``codes`` table.
"""

from __future__ import annotations

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
from vidgate.vendorhttp import ErrorFactory, Reply, VendorAPI, join_url

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


class SeedanceAPI(VendorAPI):
    """Bearer auth and the platform's host; errors by Ark's ``error`` object (:func:`classify`)."""

    def base_url(self, ctx: CallContext) -> str:
        return base_url(ctx)

    def classify(self, reply: Reply, *, not_found: ErrorFactory | None = None) -> VendorError | None:
        status, data, wait = reply
        if status < 300:
            return None  # a failed task's own ``error`` (at HTTP 200) is the poll's to read
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            # A proxy's HTML page, a truncated body: transient, and it may have arrived.
            return VendorUnavailable(f"{VENDOR} sent a malformed reply (HTTP {status})", http_status=status)
        return classify(status, error, wait)


API = SeedanceAPI(VENDOR)


async def call(
    ctx: CallContext,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    params: Sequence[tuple[str, str | int]] | None = None,
) -> dict[str, Any]:
    """Call Ark and return the decoded JSON object; raise a ``VendorError`` otherwise."""
    query = [(key, str(value)) for key, value in params] if params else None
    return await API.call(ctx, method, path, json=body, params=query)
