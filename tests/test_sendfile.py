"""`vidgate serve` sends whole local media files with sendfile (the pathsend extension its
uvicorn protocol adds); these drive a real server over raw sockets to check the framing."""

import asyncio
import os
import socket
import struct
import time
from pathlib import Path

import aiohttp
import pytest
from processes import GatewayProcess

pytestmark = pytest.mark.slow

# Far beyond the socket buffers, so a response spans many sendfile calls and a client can
# leave in the middle of one.
GROWN = 24 * 1024 * 1024


@pytest.fixture
def server(tmp_path):
    s = GatewayProcess(tmp_path)
    s.start()
    yield s
    s.stop()
    s.log.close()


async def completed_video(server: GatewayProcess) -> tuple[str, Path, bytes]:
    """A finished local render, its stored file grown to ``GROWN`` bytes."""
    headers = {"Authorization": f"Bearer {server.dev_token}"}
    body = {"model": "local-v1", "prompt": "a lighthouse", "seconds": 1, "size": "160x90"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/v1/videos", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            task_id = (await r.json())["id"]
        deadline = time.monotonic() + 120
        while True:
            async with http.get(f"{server.url}/v1/videos/{task_id}", headers=headers) as r:
                task = await r.json()
            if task["status"] == "completed":
                break
            assert task["status"] not in ("failed", "cancelled") and time.monotonic() < deadline, task
            await asyncio.sleep(0.2)
    [path] = server.workdir.glob(f"**/media/{task_id}/video")
    with path.open("ab") as f:
        f.write(bytes(range(256)) * ((GROWN - path.stat().st_size) // 256))
    return task_id, path, path.read_bytes()


def request(task_id: str, key: str, method: str = "GET", **headers: str) -> bytes:
    lines = [f"{method} /v1/videos/{task_id}/content HTTP/1.1", "Host: gw", f"Authorization: Bearer {key}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    fields = dict(line.split(": ", 1) for line in header_lines)
    fields = {k.lower(): v for k, v in fields.items()}
    assert "transfer-encoding" not in fields
    length = 0 if head_only else int(fields["content-length"])
    body = await asyncio.wait_for(reader.readexactly(length), 60)
    return int(status_line.split()[1]), fields, body


def fds_on(pid: int, path: Path) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd) == str(path)
        except OSError:
            pass  # closed meanwhile
    return count


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_whole_file_head_range_and_close_on_one_connection(server):
    task_id, _, video = await completed_video(server)
    key = server.dev_token
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        # Pipelined: the second request waits in h11 until the file is sent.
        writer.write(request(task_id, key) + request(task_id, key))
        for _ in range(2):
            status, fields, body = await read_response(reader)
            assert status == 200 and int(fields["content-length"]) == len(video)
            assert body == video
        # HEAD sends no body: the next answer starts right after its headers.
        writer.write(request(task_id, key, "HEAD") + request(task_id, key, Range="bytes=1000-1999"))
        status, fields, _ = await read_response(reader, head_only=True)
        assert status == 200 and int(fields["content-length"]) == len(video)
        status, fields, body = await read_response(reader)
        assert status == 206 and body == video[1000:2000]
        assert fields["content-range"] == f"bytes 1000-1999/{len(video)}"
        # If-Range that no longer matches: the whole file again, not the range.
        writer.write(request(task_id, key, Range="bytes=0-9", If_Range='"stale"'))
        status, _, body = await read_response(reader)
        assert status == 200 and body == video
        # Connection: close is honoured after the file.
        writer.write(request(task_id, key, Connection="close"))
        status, fields, body = await read_response(reader)
        assert status == 200 and body == video and fields["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    text = (server.workdir / "gateway.log").read_text()
    assert "Traceback" not in text and "Exception in ASGI" not in text


async def test_a_client_that_leaves_half_way_costs_nothing(server):
    task_id, path, video = await completed_video(server)
    pid = server.proc.pid
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request(task_id, server.dev_token))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    got = 0
    while got < len(video) // 2:
        got += len(await asyncio.wait_for(reader.read(1 << 20), 30))
    assert fds_on(pid, path) == 1  # the server is mid-file
    # Leave with a reset, as a killed client does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    deadline = time.monotonic() + 10
    while fds_on(pid, path) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert fds_on(pid, path) == 0, "the media file stayed open"
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as r:
            assert r.status == 200
        # And the next download is whole.
        async with http.get(
            f"{server.url}/v1/videos/{task_id}/content", headers={"Authorization": f"Bearer {server.dev_token}"}
        ) as r:
            assert r.status == 200 and await r.read() == video
    text = (server.workdir / "gateway.log").read_text()
    assert "Traceback" not in text and "Exception in ASGI" not in text


async def test_concurrent_downloads_do_not_buffer_the_file(server):
    task_id, _, video = await completed_video(server)
    pid = server.proc.pid
    before = peak_rss_kib(pid)

    async def download(http: aiohttp.ClientSession) -> int:
        total = 0
        async with http.get(
            f"{server.url}/v1/videos/{task_id}/content", headers={"Authorization": f"Bearer {server.dev_token}"}
        ) as r:
            assert r.status == 200
            async for chunk in r.content.iter_chunked(1 << 20):
                total += len(chunk)
        return total

    async with aiohttp.ClientSession() as http:
        assert await asyncio.gather(*(download(http) for _ in range(4))) == [len(video)] * 4
    grown = peak_rss_kib(pid) - before
    # The bound is 20 MiB per concurrent download; a buffered 24 MiB file would pass it.
    assert grown < 4 * 20 * 1024, f"peak RSS grew by {grown} KiB"
