"""The Starlette application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect

from ..errors import APIError
from ..gateway import Gateway
from . import console, generations, metrics, misc, openapi, videos
from .errors import api_error, client_disconnected, http_error, unexpected_error
from .middleware import RequestContext


def create_app(gateway: Gateway, *, run_worker: bool = True, close_gateway: bool = False) -> Starlette:
    """Build the ASGI app around a started :class:`Gateway`.

    With ``run_worker`` the poll worker runs in the same process (``vidgate serve``).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from ..worker import Worker

        stop = asyncio.Event()
        runner = None
        if run_worker and gateway.config.worker.enabled:
            runner = asyncio.create_task(Worker(gateway).run(stop))
        try:
            yield
        finally:
            stop.set()
            if runner is not None:
                await runner
            if close_gateway:
                await gateway.close()

    app = Starlette(
        routes=[*generations.routes, *videos.routes, *misc.routes, *metrics.routes, *openapi.routes, *console.routes],
        middleware=[Middleware(RequestContext)],
        exception_handlers={
            APIError: api_error,
            HTTPException: http_error,
            ClientDisconnect: client_disconnected,
            Exception: unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
