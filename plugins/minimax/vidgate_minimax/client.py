"""One MiniMax API call: Bearer key, ``base_resp`` envelope, error classification.

V1 answers HTTP 200 and puts the verdict in ``base_resp.status_code`` (0 = ok), so the
code, not the HTTP status, decides; a non-2xx answer (V2's errors, a proxy, an overloaded
front) without a code is classified by its HTTP status.
"""

from __future__ import annotations

import re
from typing import Any

from vidgate import CallContext
from vidgate.errors import ChannelUnusable, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate.vendorhttp import join_url, read_json, retry_after, scrub, transport_errors

from .mapping import classify

VENDOR = "MiniMax"


def base_url(ctx: CallContext) -> str:
    # One key serves chat (/v1) and video (/v1, /v2): operators often paste ".../v1".
    return re.sub(r"/v[12]/?$", "", ctx.channel.base_url.rstrip("/"))


async def call(
    ctx: CallContext, method: str, path: str, body: dict[str, Any] | None = None, **params: str
) -> dict[str, Any]:
    """Call MiniMax; return the decoded object, or raise the VendorError it means."""
    headers = {"Authorization": f"Bearer {ctx.channel.credentials['api_key']}"}
    with transport_errors(VENDOR):
        async with ctx.http.request(
            method,
            join_url(base_url(ctx), path),
            json=body,
            params=params or None,
            headers=headers,
            timeout=ctx.timeout,
        ) as resp:
            data = await read_json(resp, VENDOR)
            status, wait = resp.status, retry_after(resp.headers)
    base = data.get("base_resp") if isinstance(data, dict) else None
    code = base.get("status_code") if isinstance(base, dict) else None
    message = str(base.get("status_msg") or "") if isinstance(base, dict) else ""
    if isinstance(code, int) and code != 0:
        ctx.log.warning("minimax_error", vendor_code=code, http_status=status, message=scrub(message, ctx.channel))
        err = classify(code, message, wait)
        err.http_status = status
        raise err
    if status >= 300:
        # V2 errors ride on the HTTP status; its body shape is unconfirmed (error.message assumed).
        error = data.get("error") if isinstance(data, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        text = f"{VENDOR}: {detail} (HTTP {status})" if detail else f"{VENDOR} answered HTTP {status}"
        if status in (401, 402, 403):
            raise ChannelUnusable(text, http_status=status)
        if status == 429:
            raise VendorRateLimited(text, retry_after=wait, http_status=status)
        raise (VendorRejected if status < 500 else VendorUnavailable)(text, http_status=status)
    if not isinstance(data, dict):
        raise VendorUnavailable(f"{VENDOR} answered {type(data).__name__}, not an object")
    return data
