"""One Runway API call: the two headers, the JSON body, and error classification.

Runway answers errors as HTTP statuses with a JSON ``{"error": "<human-readable>"}``
body (reference 2.9): 400 client, 401 bad key, 404/405 client (404 on a task path: the
task is gone), 429 rate, 502/503/504 transient.
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

from .mapping import API_VERSION

VENDOR = "Runway"
#: When a 429 carries no Retry-After: Runway's advice is backoff with jitter.
DEFAULT_RATE_LIMIT_DELAY = 2.0


def api_version(ctx: CallContext) -> str:
    return str(ctx.channel.options.get("api_version") or API_VERSION)


def headers(ctx: CallContext) -> dict[str, str]:
    """Runway's two required headers (the version header on every call)."""
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("Runway channel has no api_key credential")
    return {"Authorization": f"Bearer {key}", "X-Runway-Version": api_version(ctx)}


def _message(body: Any, status: int) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):  # tolerate {"error": {"message": ...}} from proxies
        err = err.get("message")
    text = str(err) if err else f"HTTP {status}"
    return f"Runway: {text}"[:1000]


def classify(status: int, body: Any, wait: float | None, *, task_path: bool) -> VendorError:
    """The vidgate error for a Runway error answer."""
    message = _message(body, status)
    if status == 429:
        return VendorRateLimited(message, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_DELAY)
    if status in (401, 403):
        return ChannelUnusable(message, http_status=status)
    if status == 404 and task_path:
        return TaskNotFound(message, http_status=status)
    if 400 <= status < 500:
        # Runway reports an empty balance as a 400 "You do not have enough credits"
        # (docs.dev.runwayml.com/errors; not in the reference table): the account, not
        # the request, is at fault.
        if "enough credits" in message.lower():
            return ChannelUnusable(message, http_status=status)
        return VendorRejected(message, http_status=status)
    # 503 is Runway shedding load before the work starts; 500/502/504 may hide a job.
    return VendorUnavailable(message, http_status=status, maybe_received=status != 503)


async def call(
    ctx: CallContext, method: str, path: str, body: dict[str, Any] | None = None, *, task_path: bool = False
) -> Any:
    """Call Runway; return the decoded JSON body (None for 204). Raise a
    :class:`VendorError` subclass otherwise. ``task_path``: a 404 means the task is gone."""
    url = join_url(ctx.channel.base_url, path)
    hdrs = headers(ctx)
    if body is not None:
        hdrs["Content-Type"] = "application/json"
    with transport_errors(VENDOR):
        async with ctx.http.request(
            method, url, headers=hdrs, data=None if body is None else json.dumps(body), timeout=ctx.timeout
        ) as resp:
            status = resp.status
            raw = await resp.read()
            wait = retry_after(resp.headers)
    if 200 <= status < 300:
        if not raw.strip():
            return None
        return parse_json(raw, VENDOR, status)
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
        if status < 500 and status != 429:
            raise VendorUnavailable(f"{VENDOR} sent a malformed reply (HTTP {status})", http_status=status) from None
    err = classify(status, decoded, wait, task_path=task_path)
    ctx.log.warning("runway_error", http_status=status, message=scrub(err.message, ctx.channel)[:300])
    raise err
