"""How ``vidgate serve`` runs uvicorn so that slow or numerous clients cannot take it down.

Production deployments still belong behind a reverse proxy (``docs/operators.md``); these
limits keep a directly exposed gateway answering.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServerConfig


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every client is a descriptor, and
    the usual soft default (1024) is far below what one process can serve.
    Returns the (soft, hard) limits in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite soft limit for descriptors; a million is plenty.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, hard
    return target, hard


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose first request head has not
    arrived within ``seconds``: uvicorn itself waits for headers forever (slowloris).
    Later requests on a kept-alive connection are bounded by ``timeout_keep_alive``."""

    class HeaderTimeoutH11(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_timer = self.loop.call_later(seconds, self._head_timeout)

        def _head_timeout(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutH11


def uvicorn_config(app: Any, server: ServerConfig, host: str, port: int) -> Any:
    """The uvicorn Config for ``app`` with the ``[server]`` connection limits."""
    import uvicorn

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = server.limit_concurrency
    if soft != resource.RLIM_INFINITY:
        # Keep descriptors for the store, vendor calls and media files: a full table makes
        # accept() fail, which no client-facing limit can answer.
        limit = max(1, min(limit, soft - 128))
    return uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
        timeout_graceful_shutdown=10,
        http=header_timeout_protocol(server.header_timeout_seconds),
        # Beyond this many open connections new requests get a quick 503 instead of
        # exhausting descriptors or memory.
        limit_concurrency=limit,
        backlog=server.backlog,
        timeout_keep_alive=server.keep_alive_timeout_seconds,
        h11_max_incomplete_event_size=server.max_header_bytes,
    )
