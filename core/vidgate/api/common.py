"""Helpers shared by the endpoint modules."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import APIError, invalid
from ..gateway import Gateway
from ..request import Image, VideoRequest, parse_request
from ..store import TaskRecord, TokenRecord
from ..submitting import request_fingerprint
from ..wire import video_object

MAX_JSON_DEPTH = 64


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def token(request: Request) -> TokenRecord:
    return await gateway(request).authenticate(request.headers.get("authorization"))


def too_large(limit: int) -> APIError:
    # Connection: close, as the rest of the body is never read.
    return APIError(
        f"The request body is larger than {limit} bytes.",
        413,
        "invalid_request_error",
        None,
        "request_too_large",
        retryable=False,
        headers={"connection": "close"},
    )


def body_timeout(seconds: float) -> APIError:
    return APIError(
        f"The request body did not arrive within {seconds:g} seconds.",
        408,
        "invalid_request_error",
        None,
        "request_timeout",
        retryable=True,
        headers={"connection": "close"},
    )


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """Read the body, refusing more than ``limit`` (default ``[server] max_body_bytes``)
    as soon as it is exceeded, whatever Content-Length says, and a body that does not
    arrive within ``[server] body_read_timeout_seconds`` (408)."""
    server = gateway(request).config.server
    if limit is None:
        limit = server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(server.body_read_timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise body_timeout(server.body_read_timeout_seconds) from None
    # One copy at the end (a growing bytearray copies on every resize, then once more).
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class NonFiniteNumber(ValueError):
    """``NaN``, ``Infinity`` or a number too large for a float: Python's json reads them,
    but they are not JSON, and forwarding them gives vendors invalid JSON."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{text[:40]} does not fit a finite number")
    return value


def loads_strict(raw: bytes | str) -> Any:
    """``json.loads`` that also refuses lone surrogates (``"\\ud800"``) and non-finite
    numbers (``NaN``, ``Infinity``, ``1e999``): Python accepts them, but they are not text
    or JSON that any store, log or vendor can take. Raises ValueError (NonFiniteNumber for
    the numbers). Every JSON request body and JSON form field is read with it."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    return data


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


#: Bodies up to this size are decoded, parsed and fingerprinted on the event loop (tens of
#: microseconds); larger ones (inline images run to tens of MB) in a thread.
INLINE_BODY_BYTES = 65536


async def read_json(request: Request) -> Any:
    body = await read_body(request)
    request.state.body_bytes = len(body)
    try:
        data = loads_strict(body) if len(body) < INLINE_BODY_BYTES else await asyncio.to_thread(loads_strict, body)
    except NonFiniteNumber as exc:
        raise invalid(
            f"The request body is not valid JSON: {exc} (NaN and Infinity are not allowed).", None, "invalid_json"
        ) from None
    except ValueError:
        raise invalid("The request body is not valid JSON (UTF-8, no lone surrogates).", None, "invalid_json") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise invalid("The request body is nested too deeply.", None, "invalid_json")
    return data


async def unified_request(request: Request, body: Any, uploads: list[Image] | None = None) -> tuple[VideoRequest, str]:
    """Apply the unified rules and fingerprint the body (for Idempotency-Key): in a thread
    unless the body is a small JSON one (read by :func:`read_json`), as both decode or
    hash whole inline images."""
    max_metadata = gateway(request).config.server.max_metadata_bytes

    def work() -> tuple[VideoRequest, str]:
        unified = parse_request(body, uploads=uploads or (), max_metadata_bytes=max_metadata)
        return unified, request_fingerprint(body)

    if not uploads and getattr(request.state, "body_bytes", INLINE_BODY_BYTES) < INLINE_BODY_BYTES:
        return work()
    return await asyncio.to_thread(work)


def content_url(request: Request, task: TaskRecord) -> str:
    return gateway(request).content_url(task, gateway(request).config.server.public_url or str(request.base_url))


def task_json(request: Request, task: TaskRecord) -> dict[str, Any]:
    # Only a completed task shows its URL: the base URL is worked out for those alone.
    return video_object(task, content_url(request, task) if task.status == "completed" else None)


class FastJSONResponse(JSONResponse):
    """A JSONResponse rendered by orjson: the same compact UTF-8 JSON as Starlette's
    ``json.dumps``, in a tenth of the time, for the answers clients poll for."""

    def render(self, content: Any) -> bytes:
        body: bytes = orjson.dumps(content)
        return body


def task_response(request: Request, task: TaskRecord, *, poll_hint: bool = False) -> JSONResponse:
    headers = {}
    if poll_hint and not task.finished:
        gw = gateway(request)
        channel = gw.dispatcher.channels.get(task.channel)
        interval = gw.poll_interval(channel) if channel else 5.0
        # Ask SDK pollers to come back when a change is plausible, not every second.
        headers["openai-poll-after-ms"] = str(int(max(interval, 1.0) * 1000))
    return FastJSONResponse(task_json(request, task), headers=headers)


MAX_WAIT_SECONDS = 60


def prefer_wait(request: Request) -> int | None:
    """Seconds asked for with ``Prefer: wait`` (60) or ``wait=N`` (at most 60), else None.

    Preferences that do not parse are ignored, as RFC 7240 asks.
    """
    header = request.headers.get("prefer")
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value:
            return MAX_WAIT_SECONDS
        if value.isascii() and value.isdigit() and len(value) <= 6:
            return min(int(value), MAX_WAIT_SECONDS)
    return None


def webhook_url(body: Any) -> str | None:
    """The body's ``webhook_url`` (None when absent or null); checked by the gateway."""
    if not isinstance(body, dict) or body.get("webhook_url") is None:
        return None
    value = body["webhook_url"]
    if not isinstance(value, str):
        raise invalid("webhook_url must be a string (an http(s) URL).", "webhook_url")
    return value


async def created_response(request: Request, task: TaskRecord) -> JSONResponse:
    """Answer a create; with ``Prefer: wait`` hold the answer until the task is finished
    or the time is up. The task runs on its own: a client that leaves loses nothing."""
    wait = prefer_wait(request)
    if wait is None:
        return task_response(request, task)
    gw = gateway(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not task.finished:
        left = deadline - loop.time()
        if left <= 0:
            break
        await gw.notifier.wait(task.id, min(left, gw.config.server.events_poll_seconds))
        task = await gw.store.get_task(task.id) or task
    response = task_response(request, task)
    response.headers["Preference-Applied"] = f"wait={wait}"
    return response


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255:
        raise invalid("Idempotency-Key must be 1 to 255 characters.", "Idempotency-Key")
    return key
