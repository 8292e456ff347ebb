"""One Vidu call: the ``Token`` auth header, error envelopes and classification.

Vidu answers errors with an HTTP status and ``{"code", "reason", "message", "metadata"}``
(the envelope and its ``reason`` strings are unconfirmed in the reference: taken from
third-party clients). ``reason`` decides the class where it is known, the HTTP status otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from vidgate import CallContext
from vidgate.errors import (
    ChannelUnusable,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import join_url, parse_json, retry_after, scrub, transport_errors

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


async def call(ctx: CallContext, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call Vidu and return the decoded JSON object; raise a ``VendorError`` otherwise."""
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("Vidu channel has no api_key credential")
    headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    with transport_errors("Vidu"):
        async with ctx.http.request(
            method,
            join_url(base_url(ctx), path),
            headers=headers,
            data=None if body is None else json.dumps(body),
            timeout=ctx.timeout,
        ) as resp:
            status = resp.status
            raw = await resp.read()
            wait = retry_after(resp.headers)
    data = parse_json(raw, "Vidu", status) if raw.strip() else {}
    if not isinstance(data, dict):
        raise VendorUnavailable(f"Vidu sent a malformed reply (HTTP {status})", http_status=status)
    if 200 <= status < 300:
        return data
    reason = str(data.get("reason") or "")
    message = str(data.get("message") or "")
    ctx.log.warning("vidu_error", reason=reason, http_status=status, message=scrub(message, ctx.channel)[:300])
    raise classify(status, reason, message, wait=wait)
