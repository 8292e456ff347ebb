"""One Kling API call: auth header, envelope parsing and error classification.

Kling answers every call with ``{"code", "message", "request_id", "data"}``; ``code == 0``
is success. The business ``code``, not the HTTP status, says what went wrong (HTTP 429 is
used both for "slow down" and for "your balance is gone"), so :func:`classify` maps codes
to vidgate's error classes and nothing here looks at the HTTP status alone.
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
from vidgate.vendorhttp import join_url, retry_after, scrub, transport_errors

from .auth import bearer_token, uses_jwt

#: Business codes (Kling "General Information" error table).
AUTH_RETRY_CODES = frozenset({1003, 1004})  # token not yet valid / expired: renew once
REJECTED_CODES = frozenset({1200, 1201, 1202, 1203, 1300, 1301})
RATE_LIMIT_CODES = frozenset({1302, 1303})
UNAVAILABLE_CODES = frozenset({5000, 5001, 5002})
UNUSABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1004, 1100, 1101, 1102, 1103, 1304})

#: Kling's documented advice for 1302/1303: back off, first delay at least 1 s.
DEFAULT_RATE_LIMIT_DELAY = 1.0


def classify(code: int, message: str, *, request_id: str | None, retry_after: float | None) -> VendorError:
    """The vidgate error for a Kling business ``code`` (non-zero)."""
    text = f"Kling: {message}" if message else f"Kling error {code}"
    kwargs: dict[str, Any] = {"vendor_code": code, "request_id": request_id}
    if code in REJECTED_CODES:
        return VendorRejected(text, **kwargs)
    if code in RATE_LIMIT_CODES:
        return VendorRateLimited(
            text, retry_after=retry_after if retry_after is not None else DEFAULT_RATE_LIMIT_DELAY, **kwargs
        )
    if code in UNAVAILABLE_CODES:
        return VendorUnavailable(text, **kwargs)
    if code in UNUSABLE_CODES:
        return ChannelUnusable(text, **kwargs)
    # A code Kling added after this plugin was written: 1xxx are account/request
    # problems of this channel, anything else is treated as transient.
    if 1000 <= code < 1200:
        return ChannelUnusable(text, **kwargs)
    return VendorUnavailable(text, **kwargs)


def base_url(ctx: CallContext, default: str) -> str:
    return join_url(ctx.channel.base_url or default)


async def call(
    ctx: CallContext,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Call Kling and return the whole success envelope (``code == 0``).

    Raises a :class:`vidgate.errors.VendorError` subclass otherwise. On 1003/1004 (token
    not yet valid / expired) a JWT is renewed and the call retried exactly once (an API
    key cannot be renewed: the error stands). The raised error carries ``http_status``
    for callers that need it.
    """
    creds = ctx.channel.credentials
    renewed = False
    while True:
        token = bearer_token(ctx.state, creds, renew=renewed)
        if token is None:
            raise ChannelUnusable("Kling channel has neither api_key nor access_key/secret_key credentials")
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        with transport_errors("Kling"):
            async with ctx.http.request(
                method,
                url,
                headers=headers,
                params=params,
                data=None if body is None else json.dumps(body),
                timeout=ctx.timeout,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                wait = retry_after(resp.headers)

        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = None
        code = envelope.get("code") if isinstance(envelope, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            # An HTML error page from a proxy, a truncated body, ...: transient.
            ctx.log.warning("kling_malformed_reply", http_status=status, body=raw[:200].decode("utf-8", "replace"))
            raise VendorUnavailable(f"Kling sent a malformed reply (HTTP {status})", http_status=status)
        assert isinstance(envelope, dict)  # only a dict yields an int code
        request_id = envelope.get("request_id")
        request_id = str(request_id) if request_id is not None else None
        if code == 0:
            return envelope
        message = str(envelope.get("message") or "")
        if code in AUTH_RETRY_CODES and not renewed and uses_jwt(creds):
            ctx.log.info("kling_token_renewal", vendor_code=code, request_id=request_id)
            renewed = True
            continue
        # Kling's message can quote what it was sent, credentials included.
        ctx.log.warning(
            "kling_error",
            vendor_code=code,
            http_status=status,
            message=scrub(message, ctx.channel)[:300],
            request_id=request_id,
        )
        err = classify(code, message, request_id=request_id, retry_after=wait)
        err.http_status = status
        raise err
