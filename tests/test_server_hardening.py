"""The server stays up against slow clients, big or hostile callbacks and clients that hang up.

Most tests run a real `vidgate serve` process: the limits live in how it starts uvicorn, and
its log file is what an operator would read.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from processes import GatewayProcess
from scripted_vendor import Scripted, scripted_config
from structlog.testing import capture_logs

from vidgate.testing import run_gateway

CALLBACK_LIMIT = 256 * 1024


def write_config(tmp_path: Path, **server: object) -> Path:
    lines = ["[server]", f'data_dir = "{tmp_path / "data"}"']
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in server.items()]
    lines += [
        "[store]",
        f'url = "sqlite:///{tmp_path / "data" / "vidgate.db"}"',
        "[media]",
        f'path = "{tmp_path / "data" / "media"}"',
        "[plugins]",
        'enabled = ["local", "kling"]',
        "[[channels]]",
        'name = "local"',
        'vendor = "local"',
        "[[channels]]",
        'name = "kling"',
        'vendor = "kling"',
        'base_url = "http://127.0.0.1:9"',
        'credentials = { access_key = "ak", secret_key = "sk" }',
    ]
    path = tmp_path / "vidgate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def serve(tmp_path):
    started: list[GatewayProcess] = []

    def start(preexec=None, **server: object) -> GatewayProcess:
        proc = GatewayProcess(tmp_path, write_config(tmp_path, **server))
        proc.preexec = preexec
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        proc.log.close()


def log_text(proc: GatewayProcess) -> str:
    proc.log.flush()
    return (proc.workdir / "gateway.log").read_text()


async def raw_request(port: int, head: bytes, body_chunks, *, read_timeout: float = 10) -> tuple[bytes, int]:
    """Send ``head`` and then the chunks, stopping when the server answers or hangs up.
    Returns what the server sent back (b"" if it reset the connection) and the body bytes sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(head)
        answer = asyncio.ensure_future(reader.read(65536))
        for chunk in body_chunks:
            if answer.done():
                break
            try:
                writer.write(chunk)
                await writer.drain()
            except (ConnectionError, OSError):
                break
            sent += len(chunk)
        try:
            return await asyncio.wait_for(answer, read_timeout), sent
        except ConnectionError:
            # Closing a socket with unread input sends a reset, which can overtake the answer.
            return b"", sent
    finally:
        writer.close()


def refused_early(result: tuple[bytes, int], status: bytes, total: int) -> bool:
    answer, sent = result
    return answer.startswith(b"HTTP/1.1 " + status) or (answer == b"" and sent < total // 2)


def chunked(total: int, size: int = 64 * 1024):
    piece = f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
    for _ in range(total // size):
        yield piece
    yield b"0\r\n\r\n"


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# -- callbacks (findings 8 and 17) ----------------------------------------------------------


async def test_callback_over_the_limit_is_413_before_reading_it_all(serve):
    gw = serve()
    big = 20 * 1024 * 1024
    # Declared length over the limit: refused from the headers.
    head = (
        f"POST /v1/callbacks/kling HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n"
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    result = await raw_request(gw.port, head, (b"x" * 65536 for _ in range(big // 65536)))
    assert refused_early(result, b"413", big), result[0][:200]
    # Chunked, no length at all: refused once the limit is passed, not at the end.
    head = (
        b"POST /v1/callbacks/kling HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n"
    )
    result = await raw_request(gw.port, head, chunked(big))
    assert refused_early(result, b"413", big), result[0][:200]
    # A length that lies (says small, sends more) cannot smuggle a big body either.
    head = b"POST /v1/callbacks/kling HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    result = await raw_request(gw.port, head, [b"{" * 100, b"x" * (4 * 1024 * 1024)])
    assert result[0].startswith(b"HTTP/1.1 400"), result[0][:200]
    # An unknown channel is answered before the body is read.
    head = (f"POST /v1/callbacks/nope HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n").encode()
    result = await raw_request(gw.port, head, (b"x" * 65536 for _ in range(big // 65536)))
    assert refused_early(result, b"404", big), result[0][:200]
    text = log_text(gw)
    assert "Traceback" not in text and "unhandled_error" not in text


async def test_many_concurrent_big_callbacks_keep_memory_small(serve):
    gw = serve()
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/healthz") as resp:
            assert resp.status == 200
    before = peak_rss_kib(gw.proc.pid)
    head = b"POST /v1/callbacks/kling HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    total = 20 * 1024 * 1024
    results = await asyncio.gather(*(raw_request(gw.port, head, chunked(total)) for _ in range(16)))
    assert all(refused_early(r, b"413", total) for r in results), {(a[:40], n) for a, n in results}
    grown = peak_rss_kib(gw.proc.pid) - before
    # 16 x 20 MiB would be >320 MiB if bodies were read whole; the limit keeps it to a few MiB.
    assert grown < 64 * 1024, f"peak RSS grew by {grown} KiB"


async def test_deeply_nested_kling_callback_is_a_quiet_400(serve):
    gw = serve()
    nested = b"[" * 100_000 + b"]" * 100_000
    obj = b'{"data":' * 25_000 + b"1" + b"}" * 25_000
    async with aiohttp.ClientSession() as http:
        for body in (nested, obj, b"not json"):
            async with http.post(gw.url + "/v1/callbacks/kling", data=body) as resp:
                assert resp.status == 400, (resp.status, await resp.text())
        async with http.post(gw.url + "/v1/callbacks/kling", json={"task_id": "123"}) as resp:
            assert resp.status == 200
    text = log_text(gw)
    assert "Traceback" not in text and "unhandled_error" not in text
    assert "callback_unparseable" in text


class RaisingCallbacks(Scripted):
    """A plugin whose callback parser blows up on whatever it is given."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def parse_callback(self, body, headers):
        raise self.exc


@pytest.mark.parametrize("exc", [RecursionError("deep"), ValueError("bad"), KeyError("task_id")])
async def test_a_plugin_that_raises_on_a_callback_gives_400_not_500(tmp_path, exc):
    with capture_logs() as logs:
        async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": RaisingCallbacks(exc)}) as gw:
            status, body = await gw.post("/v1/callbacks/main", data=b"[" * 1000)
    assert status == 400, body
    assert body == {"ok": False}
    [warning] = [e for e in logs if e["event"] == "callback_unparseable"]
    assert warning["log_level"] == "warning" and warning["error"] == type(exc).__name__
    assert not [e for e in logs if e["event"] == "unhandled_error"]


# -- slow clients (finding 9) ---------------------------------------------------------------


def _low_nofile() -> None:
    # A host whose default soft limit is low (many are 1024 or less): the gateway must raise it.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


async def test_healthz_answers_while_500_slow_clients_are_connected(serve):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} is too low for 500 client and 500 server sockets")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < 1200:  # this test process holds the 500 client sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096 if hard == resource.RLIM_INFINITY else min(4096, hard), hard))
    try:
        await _healthz_with_slow_clients(serve)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _healthz_with_slow_clients(serve):
    gw = serve(preexec=_low_nofile, header_timeout_seconds=60.0)
    started = time.monotonic()
    slow: list[socket.socket] = []
    try:
        for _ in range(500):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", gw.port))
            except BlockingIOError:
                pass
            slow.append(s)
        await asyncio.sleep(0.5)
        for s in slow:
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            except OSError:
                pass
        await asyncio.sleep(1.5)  # let the server accept them all (or run out of descriptors)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for _ in range(3):
                async with http.get(gw.url + "/healthz") as resp:
                    assert resp.status == 200
                for s in slow[::10]:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
    finally:
        for s in slow:
            s.close()
    assert time.monotonic() - started < 30
    text = log_text(gw)
    assert len(text) < 200_000, f"log grew to {len(text)} bytes"
    assert "Too many open files" not in text


async def test_slow_headers_are_dropped_after_the_header_timeout(serve):
    gw = serve(header_timeout_seconds=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    # The server hangs up (EOF) instead of holding the socket forever.
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()


async def test_a_request_head_over_max_header_bytes_is_431_and_closed(serve):
    gw = serve(max_header_bytes=4096)
    # Just under the limit: answered as usual.
    filler = "a" * 3800
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: {filler}\r\n\r\n".encode())
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 200")
    writer.close()
    # Complete, but too large (in one read): 431, then the connection is closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: {filler * 2}\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    writer.close()
    # One header that never ends, sent in pieces: refused once the limit is passed, not
    # buffered until the header timeout.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent = 0
    for _ in range(64):  # 64 KiB at most: far past the limit, far below the header timeout
        try:
            writer.write(b"a" * 1024)
            await writer.drain()
        except ConnectionError:
            break
        sent += 1024
        await asyncio.sleep(0.01)
        if reader.at_eof():
            break
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        answer = b""  # the server closed with our bytes unread: a reset may eat its 431
    assert answer in (b"",) or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert sent < 64 * 1024  # the server hung up before the client was done
    writer.close()
    # A kept-alive connection's second request is bounded too.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
    length = int(fields[b"content-length"])
    await reader.readexactly(length)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: {filler * 2}\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    writer.close()
    assert "Traceback" not in log_text(gw)


async def test_a_partial_body_is_408_after_the_body_read_timeout(serve):
    gw = serve(body_read_timeout_seconds=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b'POST /v1/callbacks/kling HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"task')
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    writer.close()


def test_accept_errors_are_logged_at_most_once_per_interval():
    from vidgate.logs import RateLimitFilter

    clock = [100.0]
    limiter = RateLimitFilter(interval=10.0, clock=lambda: clock[0])
    logger = logging.getLogger("test.ratelimit")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(limiter)
    logger.propagate = False
    try:
        for _ in range(1000):
            logger.error("socket.accept() out of system resource")
        clock[0] += 11
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(limiter)
    assert len(records) == 2
    assert "999 similar" in records[1]


# -- client disconnects (finding 21, first half) --------------------------------------------


async def test_client_disconnecting_mid_body_is_a_quiet_info_line(serve):
    gw = serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /v1/callbacks/kling HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"task_id": "'
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    deadline = time.monotonic() + 10
    while "client_disconnected" not in log_text(gw) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    text = log_text(gw)
    assert "client_disconnected" in text
    assert "Traceback" not in text and "unhandled_error" not in text


@pytest.mark.parametrize(
    "key",
    [
        "max_callback_bytes",
        "body_read_timeout_seconds",
        "header_timeout_seconds",
        "keep_alive_timeout_seconds",
        "limit_concurrency",
        "backlog",
        "max_header_bytes",
    ],
)
def test_server_limits_must_be_positive(key):
    from vidgate.config import parse_config
    from vidgate.errors import ConfigError

    assert getattr(parse_config({"server": {key: 5}}).server, key) == 5
    with pytest.raises(ConfigError, match=f"server.{key}: must be positive"):
        parse_config({"server": {key: 0}})
