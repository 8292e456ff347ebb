"""The embedded default, driven like a new user would: `vidgate serve` with no config."""

import asyncio
import base64
import struct
import time
import zlib

import aiohttp
import av
import numpy as np
import pytest
from processes import GatewayProcess

pytestmark = pytest.mark.slow


def png(width: int, height: int, pixels: np.ndarray) -> bytes:
    """Encode an RGB array as PNG with the standard library only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture
def server(tmp_path):
    s = GatewayProcess(tmp_path)
    s.start()
    yield s
    s.stop()


async def poll_until_done(http, url, headers, task_id, seen, timeout=120):
    deadline = time.monotonic() + timeout
    paths = [f"/v1/video/generations/{task_id}", f"/v1/videos/{task_id}"]
    i = 0
    while time.monotonic() < deadline:
        async with http.get(url + paths[i % 2], headers=headers) as r:
            assert r.status == 200
            task = await r.json()
        seen.append(task["progress"])
        if task["status"] in ("completed", "failed"):
            return task
        i += 1
        await asyncio.sleep(0.2)
    raise AssertionError("task did not finish")


async def test_text_to_video_end_to_end(server):
    key = server.dev_token
    assert (server.workdir / "vidgate-data" / "dev-token").read_text().strip() == key
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "local-v1", "prompt": "a red fox running through snow", "seconds": 4, "size": "640x360"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/v1/video/generations", json=body, headers=headers) as r:
            assert r.status == 200
            task = await r.json()
        assert task["id"] == task["task_id"] and task["object"] == "video"
        assert task["status"] in ("queued", "in_progress")
        seen: list[int] = []
        done = await poll_until_done(http, server.url, headers, task["id"], seen)
        assert done["status"] == "completed", done
        assert seen == sorted(seen) and seen[-1] == 100 and len(set(seen)) > 2  # real, rising progress
        async with http.get(server.url + f"/v1/videos/{task['id']}/content", headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
            video = await r.read()
        async with http.get(
            server.url + f"/v1/videos/{task['id']}/content", headers={**headers, "Range": "bytes=100-199"}
        ) as r:
            assert r.status == 206
            assert await r.read() == video[100:200]
    out = server.workdir / "out.mp4"
    out.write_bytes(video)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
        assert abs(float(container.duration / av.time_base) - 4.0) < 0.25


async def test_image_to_video_first_frame_is_the_picture(server):
    headers = {"Authorization": f"Bearer {server.dev_token}"}
    pixels = np.zeros((180, 320, 3), dtype=np.uint8)
    pixels[:, :160] = (220, 30, 30)
    pixels[:, 160:] = (30, 30, 220)
    pixels[60:120, 120:200] = (240, 240, 40)
    image = base64.b64encode(png(320, 180, pixels)).decode()
    body = {"model": "local-v1", "prompt": "the picture comes alive", "seconds": 2, "size": "320x180", "image": image}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/v1/video/generations", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            task = await r.json()
        done = await poll_until_done(http, server.url, headers, task["id"], [])
        assert done["status"] == "completed", done
        async with http.get(server.url + f"/v1/videos/{task['id']}/content", headers=headers) as r:
            video = await r.read()
    out = server.workdir / "i2v.mp4"
    out.write_bytes(video)
    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert first.shape == (180, 320, 3)
    assert np.abs(first - pixels.astype(int)).mean() < 12  # H.264 is lossy; the picture is there


async def test_kill_9_while_rendering_then_restart(server):
    headers = {"Authorization": f"Bearer {server.dev_token}"}
    body = {"model": "local-v1", "prompt": "survive a crash", "seconds": 8, "size": "1280x720"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/v1/video/generations", json=body, headers=headers) as r:
            task = await r.json()
        # wait until it is really rendering
        for _ in range(200):
            async with http.get(server.url + f"/v1/videos/{task['id']}", headers=headers) as r:
                state = await r.json()
            if state["status"] == "in_progress" and state["progress"] > 0:
                break
            await asyncio.sleep(0.05)
        assert state["status"] == "in_progress" and state["progress"] < 100, state
        server.kill9()
        server.start()
        done = await poll_until_done(http, server.url, headers, task["id"], [], timeout=180)
    assert done["status"] == "completed", done
    assert done["seconds"] == "8"


def test_cli_submit_waits_and_downloads(server):
    import subprocess
    import sys

    out = server.workdir / "cli.mp4"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidgate.cli",
            "submit",
            "a lighthouse at dusk",
            "-m",
            "local-v1",
            "--seconds",
            "1",
            "--size",
            "320x180",
            "--wait",
            "-o",
            str(out),
            "--url",
            server.url,
            "--key",
            server.dev_token,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("video_")  # the task id, for scripts
    assert "completed: 1s 320x180" in done.stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidgate.cli",
            "submit",
            "x",
            "-m",
            "nope",
            "--url",
            server.url,
            "--key",
            server.dev_token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "does not exist" in bad.stderr
