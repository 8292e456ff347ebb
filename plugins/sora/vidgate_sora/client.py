"""HTTP to an OpenAI Videos API upstream: auth headers, calls, error classification.

Every upstream answer is classified here once into the vidgate error classes, so the
plugin methods only deal with successful Video objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from vidgate import CallContext, Channel
from vidgate.errors import (
    ChannelUnusable,
    ModelRetired,
    TaskFailed,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import retry_after, transport_errors

#: None: OpenAI shut its own Videos API down on 2026-09-24, so every channel names its
#: upstream (Azure OpenAI v1, vLLM-Omni, SGLang, a relay, another vidgate).
DEFAULT_BASE_URL: str | None = None
#: ``options.auth``: how the key is sent. ``bearer`` = ``Authorization: Bearer <key>``
#: (OpenAI, vLLM-Omni, SGLang, relays, vidgate); ``api-key`` = ``api-key: <key>`` (Azure).
AUTH_MODES = ("bearer", "api-key")
#: The derived tasks the protocol has; ``options.operations`` narrows them per upstream.
OPERATIONS = ("remix", "extend", "edit")
#: Where each derived task goes (``{id}`` = the upstream video id).
DERIVED_PATHS = {"remix": "/videos/{id}/remix", "extend": "/videos/extensions", "edit": "/videos/edits"}
MAX_MESSAGE = 500
MAX_JSON_BYTES = 1 << 20  # a Video object is tiny; a huge body is a broken upstream

# Upstream ``error.param`` -> the client-facing field of the unified request.
_PARAMS = {
    "model": "model",
    "prompt": "prompt",
    "seconds": "seconds",
    "size": "size",
    "input_reference": "input_reference",
    "input_reference[image_url]": "input_reference",
    "input_reference.image_url": "input_reference",
}


def base_url(channel: Channel) -> str:
    """The channel's API root, including ``/v1`` (no trailing slash)."""
    if not channel.base_url:
        raise ChannelUnusable("channel has no base_url (OpenAI's own Videos API is gone)")
    return channel.base_url.rstrip("/")


def auth_mode(channel: Channel) -> str:
    """``options.auth``: ``bearer`` (the default) or ``api-key``."""
    mode = channel.options.get("auth", "bearer")
    return mode if isinstance(mode, str) else "bearer"


def channel_problems(channel: Channel) -> list[str]:
    """What is wrong with a sora channel's settings, each naming its key."""
    problems = []
    if not channel.base_url:
        problems.append(
            "base_url: required (OpenAI shut its Videos API down on 2026-09-24): the upstream's /v1 root, "
            "e.g. https://RESOURCE.openai.azure.com/openai/v1 or http://host:8091/v1"
        )
    if not channel.credentials.get("api_key"):
        problems.append("credentials.api_key: required by vendor 'sora' (any value for a keyless vLLM-Omni)")
    mode = channel.options.get("auth", "bearer")
    if mode not in AUTH_MODES:
        problems.append(f'options.auth: must be "bearer" or "api-key" (Azure\'s api-key header), not {mode!r}')
    ops = channel.options.get("operations")
    if ops is not None and (
        not isinstance(ops, (list, tuple)) or not all(isinstance(o, str) and o in OPERATIONS for o in ops)
    ):
        problems.append(f"options.operations: must be a list of {', '.join(OPERATIONS)} (what the upstream serves)")
    return problems


def serves(channel: Channel, operation: str) -> bool:
    """Whether the channel's upstream serves the derived task ``operation``
    (``options.operations``; all three by default)."""
    ops = channel.options.get("operations")
    return ops is None or operation in ops


def auth_headers(channel: Channel) -> dict[str, str]:
    """The key as ``options.auth`` says, plus the optional organisation/project headers."""
    key = channel.credentials.get("api_key")
    if not isinstance(key, str) or not key:
        raise ChannelUnusable("channel has no credentials.api_key")
    if auth_mode(channel) == "api-key":
        # Azure OpenAI's own key header (the reference marks it unconfirmed on the v1
        # route, where Azure also takes Bearer; the option exists for deployments that
        # only take this one).
        return {"api-key": key}
    headers = {"Authorization": f"Bearer {key}"}
    for option, header in (("organization", "OpenAI-Organization"), ("project", "OpenAI-Project")):
        value = channel.options.get(option)
        if isinstance(value, str) and value:
            headers[header] = value
    return headers


def poll_after(headers: Mapping[str, str]) -> float | None:
    """The upstream's suggested poll delay (``openai-poll-after-ms``), in seconds."""
    value = headers.get("openai-poll-after-ms")
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        return None
    if not ms >= 0:  # also refuses NaN
        return None
    return min(ms / 1000.0, 600.0)


def _is_envelope(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def _names_model(message: str, param: str | None, code: str | None) -> bool:
    """Whether an error is about the model (OpenAI ``model_not_found``; vLLM and SGLang
    answer "The model `x` does not exist.")."""
    if param == "model" or (code or "").startswith("model_not_found"):
        return True
    return "model" in message.lower() and any(w in message.lower() for w in ("not exist", "not found", "retired"))


def _error_fields(body: Any) -> tuple[str, str | None, str | None, str | None]:
    """``(message, type, param, code)`` from an OpenAI error body, tolerating junk."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = err.get("message")
        fields = [err.get(k) for k in ("type", "param", "code")]
        typed = [f if isinstance(f, str) else None for f in fields]
        return (message if isinstance(message, str) and message else "no message", typed[0], typed[1], typed[2])
    if isinstance(body, str) and body.strip():
        return body.strip()[:MAX_MESSAGE], None, None, None
    return "no message", None, None, None


def classify(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    operation: str,
    extra_keys: tuple[str, ...] = (),
) -> VendorError:
    """The vidgate error for a non-2xx upstream answer.

    :param operation: ``create``, ``remix``, ``extend``, ``edit`` or ``poll`` (a 404 while polling means the
        video is gone; on create it means the request named something unknown).
    :param extra_keys: metadata keys sent as body fields, so a complaint about one of
        them names ``metadata.<key>``.
    """
    message, type_, param, code = _error_fields(body)
    message = message[:MAX_MESSAGE]
    request_id = headers.get("x-request-id")
    vendor_code = code or type_ or status
    text = f"upstream HTTP {status}: {message}"
    kwargs: dict[str, Any] = {"vendor_code": vendor_code, "request_id": request_id}
    if status == 429:
        if "insufficient_quota" in (code, type_):
            return ChannelUnusable(text, **kwargs)
        return VendorRateLimited(text, retry_after=retry_after(headers), **kwargs)
    if status in (401, 403):
        return ChannelUnusable(text, **kwargs)
    if status >= 500 or status in (408, 409):
        # An error answer means no video was made, unless it came from a proxy that lost
        # the upstream's answer (502/504) or is an Idempotency-Key clash (409).
        return VendorUnavailable(text, maybe_received=status in (409, 502, 504), **kwargs)
    if status in (404, 410) and operation != "poll" and _names_model(message, param, code):
        # The upstream no longer serves this model: the core moves the task to another
        # channel serving it (and the lead's core part takes it off this channel).
        return ModelRetired(f"upstream HTTP {status}: the model is not served here: {message}", **kwargs)
    if operation == "poll":
        if status in (404, 410):
            return TaskFailed(
                f"the upstream no longer knows this video: {message}", code="vendor_task_missing", **kwargs
            )
        return VendorUnavailable(text, **kwargs)
    mapped = _PARAMS.get(param or "")
    if mapped is None and param in extra_keys:
        mapped = f"metadata.{param}"
    if operation == "remix" and status == 404:
        mapped = mapped or "video_id"
    if operation in ("remix", "extend", "edit") and (status == 405 or (status == 404 and not _is_envelope(body))):
        # No error envelope: the route itself is missing (vLLM-Omni and SGLang serve no
        # remix/extensions/edits), not the source video.
        path = DERIVED_PATHS[operation]
        return VendorRejected(
            f"this upstream does not serve POST {path} ({operation}); set the channel's options.operations",
            param="video_id" if operation == "remix" else "video",
            **kwargs,
        )
    if operation == "create" and status in (404, 405) and not _is_envelope(body):
        return ChannelUnusable(f"upstream HTTP {status} for POST /videos: check base_url (it includes /v1)", **kwargs)
    if operation in ("extend", "edit") and (status == 404 or param in ("video", "video[id]", "video.id")):
        mapped = "video"
    # 400/404/422 and other 4xx on create/remix: the request itself is wrong.
    return VendorRejected(message, param=mapped, **kwargs)


async def call(
    ctx: CallContext,
    method: str,
    path: str,
    *,
    operation: str,
    json_body: Any = None,
    data: aiohttp.FormData | None = None,
    extra_keys: tuple[str, ...] = (),
) -> tuple[dict[str, Any], Mapping[str, str]]:
    """One JSON call to ``{base_url}{path}``; returns ``(object, headers)`` or raises the
    classified :class:`VendorError`."""
    url = base_url(ctx.channel) + path
    headers = {**auth_headers(ctx.channel), "Accept": "application/json"}
    if operation == "create":
        # Harmless to OpenAI; a vidgate (or other) upstream uses it to drop duplicates.
        headers["Idempotency-Key"] = ctx.task_id
    with transport_errors("upstream", f"{operation} call failed"):
        async with ctx.http.request(
            method, url, headers=headers, json=json_body, data=data, timeout=ctx.timeout, allow_redirects=False
        ) as resp:
            raw = await read_capped(resp, MAX_JSON_BYTES + 1)
            status, resp_headers = resp.status, resp.headers
    try:
        body: Any = json.loads(raw) if raw and len(raw) <= MAX_JSON_BYTES else None
    except (ValueError, UnicodeDecodeError):
        body = raw[:MAX_MESSAGE].decode("utf-8", "replace")
    if not 200 <= status < 300:
        raise classify(status, body, resp_headers, operation=operation, extra_keys=extra_keys)
    if not isinstance(body, dict):
        raise VendorUnavailable(
            f"upstream {operation} answered HTTP {status} without a JSON object",
            request_id=resp_headers.get("x-request-id"),
        )
    return body, resp_headers


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, or its first ``cap`` bytes (``StreamReader.read(n)`` may stop early)."""
    data = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) >= cap:
            break
    return bytes(data[:cap])


def video_id(body: Mapping[str, Any], headers: Mapping[str, str], operation: str) -> str:
    """The ``id`` of a Video object, or ``VendorUnavailable`` for a malformed answer."""
    vid = body.get("id")
    if not isinstance(vid, str) or not vid or len(vid) > 256 or "/" in vid:
        raise VendorUnavailable(
            f"upstream {operation} answer has no usable video id", request_id=headers.get("x-request-id")
        )
    return vid
