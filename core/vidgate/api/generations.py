"""The unified endpoints: ``POST /v1/video/generations``, ``GET .../{task_id}`` and
``POST .../{task_id}/cancel``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import events
from .common import (
    created_response,
    gateway,
    idempotency_key,
    read_json,
    task_response,
    token,
    unified_request,
    webhook_url,
)


async def create(request: Request) -> Response:
    caller = await token(request)
    body = await read_json(request)
    hook = webhook_url(body)
    unified, fingerprint = await unified_request(request, body)
    task = await gateway(request).submit(
        caller, unified, idempotency_key=idempotency_key(request), fingerprint=fingerprint, webhook_url=hook
    )
    return await created_response(request, task)


async def retrieve(request: Request) -> Response:
    caller = await token(request)
    task = await gateway(request).task_for(caller, request.path_params["task_id"])
    return task_response(request, task, poll_hint=True)


async def cancel(request: Request) -> Response:
    caller = await token(request)
    task = await gateway(request).cancel(caller, request.path_params["task_id"])
    return task_response(request, task)


routes = [
    Route("/v1/video/generations", create, methods=["POST"]),
    Route("/v1/video/generations/{task_id}", retrieve, methods=["GET"]),
    Route("/v1/video/generations/{task_id}/events", events.stream("task_id"), methods=["GET"]),
    Route("/v1/video/generations/{task_id}/cancel", cancel, methods=["POST"]),
]
