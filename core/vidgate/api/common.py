"""Helpers shared by the endpoint modules."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import APIError, invalid
from ..gateway import Gateway, request_fingerprint
from ..request import Image, VideoRequest, parse_request
from ..store import TaskRecord, TokenRecord
from ..wire import video_object

MAX_JSON_DEPTH = 64


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def token(request: Request) -> TokenRecord:
    return await gateway(request).authenticate(request.headers.get("authorization"))


def too_large(limit: int) -> APIError:
    # Connection: close, as the rest of the body is never read.
    return APIError(
        f"The request body is larger than {limit} bytes.", 413, "invalid_request_error", None, "request_too_large",
        retryable=False, headers={"connection": "close"},
    )


def body_timeout(seconds: float) -> APIError:
    return APIError(
        f"The request body did not arrive within {seconds:g} seconds.", 408, "invalid_request_error", None,
        "request_timeout", retryable=True, headers={"connection": "close"},
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


async def read_json(request: Request) -> Any:
    body = await read_body(request)
    try:
        # Bodies with inline images run to tens of MB: decode them off the event loop.
        data = loads_strict(body) if len(body) < 65536 else await asyncio.to_thread(loads_strict, body)
    except NonFiniteNumber as exc:
        raise invalid(f"The request body is not valid JSON: {exc} (NaN and Infinity are not allowed).", None,
                      "invalid_json") from None
    except ValueError:
        raise invalid("The request body is not valid JSON (UTF-8, no lone surrogates).", None, "invalid_json") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise invalid("The request body is nested too deeply.", None, "invalid_json")
    return data


async def unified_request(
    request: Request, body: Any, uploads: list[Image] | None = None
) -> tuple[VideoRequest, str]:
    """Apply the unified rules and fingerprint the body (for Idempotency-Key), in a thread:
    both decode or hash whole inline images."""
    max_metadata = gateway(request).config.server.max_metadata_bytes

    def work() -> tuple[VideoRequest, str]:
        unified = parse_request(body, uploads=uploads or (), max_metadata_bytes=max_metadata)
        return unified, request_fingerprint(body)

    return await asyncio.to_thread(work)


def content_url(request: Request, task: TaskRecord) -> str:
    base = gateway(request).config.server.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/v1/videos/{task.id}/content"


def task_json(request: Request, task: TaskRecord) -> dict[str, Any]:
    return video_object(task, content_url(request, task))


def task_response(request: Request, task: TaskRecord, *, poll_hint: bool = False) -> JSONResponse:
    headers = {}
    if poll_hint and not task.finished:
        gw = gateway(request)
        channel = gw.dispatcher.channels.get(task.channel)
        interval = gw.poll_interval(channel) if channel else 5.0
        # Ask SDK pollers to come back when a change is plausible, not every second.
        headers["openai-poll-after-ms"] = str(int(max(interval, 1.0) * 1000))
    return JSONResponse(task_json(request, task), headers=headers)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 255:
        raise invalid("Idempotency-Key must be 1 to 255 characters.", "Idempotency-Key")
    return key
