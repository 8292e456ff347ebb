"""Server-Sent Events of one task: ``GET /v1/videos/{id}/events`` and
``GET /v1/video/generations/{id}/events``.

The current state is sent first, then one event per status or progress change, and the
stream closes after the terminal event. Each event's ``id`` is a number that only grows
with the task (status rank and progress), so a client reconnecting with
``Last-Event-ID`` gets only what it has not seen -- on any replica, with nothing stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from .common import gateway, token

_STEP = 101  # progress runs 0-100, so status rank * 101 + progress never goes back
_RANK = {"queued": 0, "in_progress": 1}


def sequence(task: dict[str, Any]) -> int:
    """The event id of a task state: grows with every status or progress change."""
    return _RANK.get(task["status"], 2) * _STEP + int(task["progress"])


def _resume_point(request: Request) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else -1


def stream(param: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        caller = await token(request)
        gw = gateway(request)
        task = await gw.task_for(caller, request.path_params[param])
        base = gw.config.server.public_url or str(request.base_url)
        last = _resume_point(request)

        async def events() -> AsyncIterator[ServerSentEvent]:
            nonlocal task, last
            changed: asyncio.Future[bool] | None = None
            try:
                while True:
                    obj = gw.render_task(task, base)
                    seq = sequence(obj)
                    if seq > last:
                        same_status = last >= 0 and last // _STEP == seq // _STEP
                        kind = "video.progress" if same_status else f"video.{obj['status']}"
                        yield ServerSentEvent(json.dumps(obj, separators=(",", ":")), event=kind, id=str(seq))
                        last = seq
                    if task.finished:
                        return
                    if changed is not None:
                        await changed
                    # Wait for the next change from before re-reading the task, so one that
                    # commits between the read and the wait still wakes this stream.
                    changed = asyncio.ensure_future(gw.notifier.wait(task.id, gw.config.server.events_poll_seconds))
                    await asyncio.sleep(0)  # let the waiter register
                    task = await gw.store.get_task(task.id) or task
            finally:
                if changed is not None:
                    changed.cancel()

        response: Response = EventSourceResponse(events(), ping=gw.config.server.events_keepalive_seconds)
        return response

    return endpoint
