"""How ``vidgate serve`` runs uvicorn so that slow or numerous clients cannot take it down.

Production deployments still belong behind a reverse proxy (``docs/operators.md``); these
limits keep a directly exposed gateway answering.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

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


def gateway_protocol(header_timeout_seconds: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol (llhttp, in C: a request head costs a fraction of what
    pure-Python h11 costs) with three additions.

    * A connection whose first request head has not arrived within
      ``header_timeout_seconds`` is closed: uvicorn itself waits for headers forever
      (slowloris). Later requests on a kept-alive connection are bounded by
      ``timeout_keep_alive``.
    * A request head (request line and headers) larger than ``max_header_bytes`` is
      answered 431 and the connection closed: llhttp, unlike h11, sets no bound of its own,
      and would buffer a header without end.
    * The ASGI ``http.response.pathsend`` extension, which uvicorn does not offer:
      Starlette's FileResponse then sends a whole local file (a 200, not a Range) as one
      message, and the file goes to the socket with ``loop.sendfile`` (``os.sendfile``,
      zero-copy) instead of a thread hop, a Python buffer and an ASGI message per chunk.
    """

    class GatewayHttpTools(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.app = self._offer_pathsend(self.app)
            # Bytes of the request head read so far; None once the head is complete.
            self._head_bytes: int | None = 0
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_timer = self.loop.call_later(header_timeout_seconds, self._head_timeout)
            # Native sendfile needs asyncio's own loop and a plain socket; over TLS (or
            # uvloop) Starlette's chunked reads are the better path, so it is not offered.
            self._sendfile = self.scheme == "http" and isinstance(self.loop, asyncio.BaseEventLoop)

        def _head_timeout(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_bytes is None and (self.cycle is None or self.cycle.response_complete):
                self._head_bytes = 0  # the next request (kept alive or pipelined)
            super().data_received(data)
            if self._head_bytes is not None and self.parser is not None and not self.transport.is_closing():
                # Still inside a head after this read: llhttp holds what it has not yet
                # handed over, so bound it by what was read.
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    self._refuse_head()

        def on_headers_complete(self) -> None:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            self._head_bytes = None
            if size > max_header_bytes:
                self._refuse_head()
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def _refuse_head(self) -> None:
            self._head_bytes = None
            # llhttp may go on with this read's body: there is no request to give it to.
            self._refused = True
            message = b"Request header fields too large."
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message)
            )
            self.transport.close()

        def _offer_pathsend(self, app: Any) -> Any:
            async def app_with_pathsend(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http" or not self._sendfile:
                    await app(scope, receive, send)
                    return
                # This request's cycle: ``send`` is its bound method (``self.cycle`` may
                # already be a pipelined request's, parsed before this task ran).
                cycle = getattr(send, "__self__", None)
                if not isinstance(cycle, RequestResponseCycle):
                    await app(scope, receive, send)
                    return

                async def send_or_sendfile(message: Any) -> None:
                    if message["type"] == "http.response.pathsend":
                        await self._send_file(cycle, send, message["path"])
                    else:
                        await send(message)

                scope = {**scope, "extensions": {**scope.get("extensions", {}), "http.response.pathsend": {}}}
                await app(scope, receive, send_or_sendfile)

            return app_with_pathsend

        async def _send_file(self, cycle: RequestResponseCycle, send: Any, path: str) -> None:
            if not cycle.response_started or cycle.response_complete:
                raise RuntimeError("'http.response.pathsend' must follow 'http.response.start' and end the response.")
            if cycle.scope["method"] != "HEAD" and not cycle.disconnected:
                file = await asyncio.to_thread(open, path, "rb")
                try:
                    if not await self._sendfile_body(cycle, file):
                        return
                finally:
                    file.close()
            # uvicorn's own send ends the response (the chunked terminator, keep-alive or
            # close, the next pipelined request); for HEAD it sends no body at all.
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def _sendfile_body(self, cycle: RequestResponseCycle, file: Any) -> bool:
            """Send ``file`` as the response body; False if the client went away."""
            size = os.fstat(file.fileno()).st_size
            # The head is written (uvicorn's send of http.response.start); the body is
            # framed as that head says: chunked, or counted against Content-Length.
            if not cycle.chunked_encoding and size != cycle.expected_content_length:
                raise RuntimeError(f"{file.name} is {size} bytes, Content-Length said {cycle.expected_content_length}")
            try:
                if size:
                    if cycle.chunked_encoding:
                        self.transport.write(b"%x\r\n" % size)
                    if self.transport.is_closing():
                        raise ConnectionError("the client closed the connection")
                    # Waits for the head to drain, then follows the socket's own
                    # backpressure: no buffer of ours grows with the file.
                    sent = await self.loop.sendfile(self.transport, file, 0, size)
                    if sent != size:
                        raise RuntimeError(f"{file.name} changed size while it was sent")
                    if cycle.chunked_encoding:
                        self.transport.write(b"\r\n")
                cycle.expected_content_length = 0
            except OSError:
                # A client that leaves mid-file is no error of ours: drop the connection
                # quietly, as uvicorn does for a disconnected client's later sends.
                cycle.disconnected = True
                self.transport.close()
                return False
            except BaseException:
                self.transport.close()
                raise
            return True

    return GatewayHttpTools


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
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        http=gateway_protocol(server.header_timeout_seconds, server.max_header_bytes),
        # Beyond this many open connections new requests get a quick 503 instead of
        # exhausting descriptors or memory.
        limit_concurrency=limit,
        backlog=server.backlog,
        # uvicorn annotates int but only hands it to loop.call_later, which takes fractions.
        timeout_keep_alive=server.keep_alive_timeout_seconds,  # type: ignore[arg-type]
    )
