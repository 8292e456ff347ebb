"""One Vidu call: the ``Token`` auth header, error envelopes and classification, on
:class:`vidgate.vendorhttp.VendorAPI`.

Vidu answers errors with an HTTP status and ``{"code", "reason", "message", "metadata"}``
(the envelope and its ``reason`` strings are unconfirmed in the reference: taken from
third-party clients). ``reason`` decides the class where it is known, the HTTP status otherwise.
"""

from __future__ import annotations

from typing import Any

from vidgate import CallContext
from vidgate.errors import (
    ChannelUnusable,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import ErrorFactory, Reply, VendorAPI

from .mapping import RATE_REASONS, REJECTED_REASONS, UNUSABLE_REASONS, guess_param

#: Hosts by ``options.region``: mainland (the reference's host) and international (unconfirmed).
REGIONS = {"cn": "https://api.vidu.cn", "intl": "https://api.vidu.com"}
DEFAULT_BASE_URL = REGIONS["cn"]
DEFAULT_RATE_LIMIT_DELAY = 1.0


def base_url(ctx: CallContext) -> str:
    """An explicit ``base_url`` wins over ``options.region``."""
    region = ctx.channel.options.get("region")
    configured = ctx.channel.base_url
    if isinstance(region, str) and (not configured or configured.rstrip("/") == DEFAULT_BASE_URL):
        return REGIONS[region.lower()]
    return configured or DEFAULT_BASE_URL


def classify(status: int, reason: str, message: str, *, wait: float | None) -> VendorError:
    """The vidgate error for a Vidu error answer."""
    text = f"Vidu: {message}" if message else f"Vidu error {reason or status}"
    kwargs: dict[str, Any] = {"vendor_code": reason or status, "http_status": status}
    if reason in RATE_REASONS or status == 429:
        return VendorRateLimited(text, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_DELAY, **kwargs)
    if reason in UNUSABLE_REASONS or status in (401, 402, 403):
        return ChannelUnusable(text, **kwargs)
    if reason in REJECTED_REASONS or 400 <= status < 500:
        param = "prompt" if reason == "TaskPromptPolicyViolation" else guess_param(message)
        return VendorRejected(text, param=param, **kwargs)
    # Vidu's own 5xx answer (with a reason) made no task; a bare 502/504 from a proxy might have.
    return VendorUnavailable(text, maybe_received=not reason and status in (502, 504), **kwargs)


class ViduAPI(VendorAPI):
    """Vidu's ``Token`` auth and region hosts; errors by ``reason`` (:func:`classify`)."""

    def base_url(self, ctx: CallContext) -> str:
        return base_url(ctx)

    def classify(self, reply: Reply, *, not_found: ErrorFactory | None = None) -> VendorError | None:
        status, data, wait = reply
        if 200 <= status < 300:
            return None
        if not isinstance(data, dict):
            return VendorUnavailable(f"Vidu sent a malformed reply (HTTP {status})", http_status=status)
        return classify(status, str(data.get("reason") or ""), str(data.get("message") or ""), wait=wait)


API = ViduAPI("Vidu", auth="Token {api_key}")


async def call(ctx: CallContext, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call Vidu and return the decoded JSON object; raise a ``VendorError`` otherwise."""
    return await API.call(ctx, method, path, json=body, headers={"Accept": "application/json"})
