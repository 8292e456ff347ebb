"""One Luma API call: the channel's surface, bearer auth, JSON, and error classification.

Both surfaces (reference 2.10) speak ``Authorization: Bearer <key>`` and JSON, and both
SDKs (``lumaai``, ``luma-agents`` 0.5.0) map 400/422 to client errors, 401/403 to auth, 404,
409, 429 to rate limits (``Retry-After``/``retry-after-ms`` honoured) and >=500 to
transient failures. Luma's Agents guide adds 402 (insufficient balance), 413 (input too
large) and 503 (image ingestion unavailable), and says the message is in ``detail``.
Dream Machine's body shape is FastAPI-style too: ``{"detail": "..."}`` or a list of
validation errors; ``{"error": ...}``/``{"message": ...}`` are read as well.

The surface is the channel's ``options.surface`` (``agents`` or ``dream-machine``); without
it a ``base_url`` under ``/dream-machine`` means Dream Machine and anything else the Agents
API, the default since December 2026.
"""

from __future__ import annotations

import json
from typing import Any

from vidgate import CallContext, Channel
from vidgate.errors import (
    ChannelUnusable,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import join_url, parse_json, retry_after, scrub, transport_errors

VENDOR = "Luma"
DEFAULT_RATE_LIMIT_DELAY = 2.0
AGENTS = "agents"
DREAM_MACHINE = "dream-machine"
SURFACES = (AGENTS, DREAM_MACHINE)
AGENTS_BASE_URL = "https://agents.lumalabs.ai/v1"
DREAM_MACHINE_BASE_URL = "https://api.lumalabs.ai/dream-machine/v1"


def surface_setting(channel: Channel) -> str | None:
    """The channel's ``options.surface`` normalised (``dream_machine`` = ``dream-machine``),
    or None when unset. Any other value is returned as given, for the caller to refuse."""
    raw = channel.options.get("surface")
    if raw is None or raw == "":
        return None
    return str(raw).strip().lower().replace("_", "-")


def surface_of(channel: Channel) -> str:
    """The channel's surface: ``options.surface``, else ``dream-machine`` for a
    ``base_url`` under ``/dream-machine`` (channels written for the old default keep
    working), else ``agents``."""
    surface = surface_setting(channel)
    if surface is None:
        return DREAM_MACHINE if "/dream-machine" in channel.base_url.lower() else AGENTS
    if surface not in SURFACES:
        raise ChannelUnusable(f"options.surface must be 'agents' or 'dream-machine', not {surface!r}")
    return surface


def base_url(channel: Channel, surface: str) -> str:
    """The channel's ``base_url``, else the surface's public host."""
    return channel.base_url or (AGENTS_BASE_URL if surface == AGENTS else DREAM_MACHINE_BASE_URL)


def _message(body: Any, status: int) -> str:
    text: Any = None
    if isinstance(body, dict):
        text = body.get("detail") or body.get("error") or body.get("message")
        if isinstance(text, list):  # validation errors: [{"loc": [...], "msg": ...}]
            text = "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in text)
        elif isinstance(text, dict):
            text = text.get("message") or json.dumps(text)[:300]
    return f"Luma: {text or f'HTTP {status}'}"[:1000]


def classify(status: int, body: Any, wait: float | None, *, task_path: bool) -> VendorError:
    message = _message(body, status)
    if status == 429:
        return VendorRateLimited(message, retry_after=wait if wait is not None else DEFAULT_RATE_LIMIT_DELAY)
    if status in (401, 402, 403):
        return ChannelUnusable(message, http_status=status)
    if status == 404 and task_path:
        return TaskNotFound(message, http_status=status)
    if 400 <= status < 500:
        low = message.lower()
        # An empty balance (Agents: 402 "Insufficient balance"/"credits"; other wordings
        # unconfirmed) is the account's fault, not the request's.
        if ("credit" in low or "balance" in low) and ("insufficient" in low or "not enough" in low):
            return ChannelUnusable(message, http_status=status)
        return VendorRejected(message, http_status=status)
    return VendorUnavailable(message, http_status=status)


async def call(
    ctx: CallContext,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    task_path: bool = False,
    surface: str = DREAM_MACHINE,
) -> Any:
    """Call Luma's ``surface``; the decoded JSON (None when empty), or a :class:`VendorError`."""
    key = str(ctx.channel.credentials.get("api_key") or "")
    if not key:
        raise ChannelUnusable("Luma channel has no api_key credential")
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    with transport_errors(VENDOR):
        async with ctx.http.request(
            method,
            join_url(base_url(ctx.channel, surface), path),
            headers=headers,
            data=None if body is None else json.dumps(body),
            timeout=ctx.timeout,
        ) as resp:
            status = resp.status
            raw = await resp.read()
            wait = retry_after(resp.headers)
    if 200 <= status < 300:
        return parse_json(raw, VENDOR, status) if raw.strip() else None
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
        if status < 500 and status != 429:
            raise VendorUnavailable(f"{VENDOR} sent a malformed reply (HTTP {status})", http_status=status) from None
    err = classify(status, decoded, wait, task_path=task_path)
    ctx.log.warning("luma_error", http_status=status, message=scrub(err.message, ctx.channel)[:300])
    raise err
