"""Upstream servers that misbehave on purpose, for the fault-injection tests.

* :class:`FaultyUpstream` wraps any ASGI app (a plugin's fake vendor) and injects one
  scripted fault per matching request: a slow reply, a reply that never comes, an HTTP
  error status (with or without ``retry-after``), a malformed JSON body, a 404 or a body
  cut off after its ``Content-Length`` was promised.
* :func:`silent_server` accepts TCP connections and never answers a byte.
* :func:`refused_port` is a port on 127.0.0.1 where nothing listens.

Every fault that fires is counted in :attr:`FaultyUpstream.injected`, so the tests can
report how many faults they injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import attrs


@attrs.define
class Fault:
    """One scripted fault. ``kind``: ``slow`` (delay ``seconds`` then answer normally),
    ``hang`` (never answer; waits until the client gives up), ``status`` (answer
    ``status`` with a JSON error and ``headers``), ``echo_auth`` (answer ``status`` with
    an error message quoting the request's Authorization header), ``malformed`` (200 with a broken JSON
    body), ``cut`` (promise the inner body's length, send half of it, drop the
    connection)."""

    kind: str
    status: int = 500
    seconds: float = 0.0
    headers: dict[str, str] = attrs.field(factory=dict)


def route_of(method: str, path: str) -> str:
    """The OpenAI Videos API operation a request is: create, retrieve or content."""
    if method == "POST" and path.rstrip("/").endswith("/videos"):
        return "create"
    if method == "GET" and path.endswith("/content"):
        return "content"
    if method == "GET" and "/videos/" in path:
        return "retrieve"
    return "other"


class FaultyUpstream:
    """ASGI middleware injecting queued faults per route (``create``/``retrieve``/``content``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.queues: dict[str, deque[Fault]] = {}
        self.injected: list[tuple[str, str]] = []  # (route, kind) of every fault that fired
        self.hanging = 0  # requests currently held open by a ``hang`` fault

    def add(self, route: str, fault: Fault, times: int = 1) -> None:
        for _ in range(times):
            self.queues.setdefault(route, deque()).append(fault)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        route = route_of(scope["method"], scope["path"])
        queue = self.queues.get(route)
        if not queue:
            await self.inner(scope, receive, send)
            return
        fault = queue.popleft()
        self.injected.append((route, fault.kind))
        if fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
            await self.inner(scope, receive, send)
        elif fault.kind == "hang":
            self.hanging += 1
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            finally:
                self.hanging -= 1
        elif fault.kind == "status":
            body = b'{"error": {"message": "injected fault", "type": "server_error", "param": null, "code": null}}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += [(k.encode(), v.encode()) for k, v in fault.headers.items()]
            await send({"type": "http.response.start", "status": fault.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif fault.kind == "echo_auth":
            # A careless vendor that quotes the caller's credentials back in its error.
            auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            body = json.dumps(
                {
                    "error": {
                        "message": f"Invalid request for key {auth}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_key",
                    }
                }
            ).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": fault.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif fault.kind == "malformed":
            body = b'{"id": "video_x", "status": "in_prog'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif fault.kind == "cut":
            await self._cut(scope, receive, send)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(f"unknown fault {fault.kind}")

    async def _cut(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the inner app, keep its headers (with the full Content-Length), send half
        the body, then return without finishing: the server drops the connection."""
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                body.extend(message.get("body", b""))

        await self.inner(scope, receive, capture)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
        await send({"type": "http.response.body", "body": bytes(body[: len(body) // 2]), "more_body": True})
        # Returning here, mid-response, makes uvicorn close the connection.


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server on 127.0.0.1 that accepts, reads and never answers. Yields
    ``(url, accepted)`` where ``accepted`` counts connections per accept."""
    accepted: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        for w in writers:
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, read, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
