"""The local vendor through the vidgate hooks: real renders, decoded with PyAV."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
import structlog

import vidgate_local
from vidgate import (
    CallContext,
    Channel,
    PollResult,
    RequestInvalid,
    Submission,
    TaskFailed,
    VendorJob,
)
from vidgate.errors import PluginLoadError
from vidgate.plugins import Plugins
from vidgate.request import parse_request
from vidgate_local import Local

CHANNEL = Channel(name="local", vendor="local")
MODEL = next(iter(vidgate_local.plugin.models))

FetchImage = Callable[[str], Awaitable[tuple[bytes, str]]]


def manager(plugin: Local = vidgate_local.plugin) -> Plugins:
    """The plugin loaded as the gateway loads it, called through the core's facade."""
    return Plugins.load(entry_points=False, extra={"local": plugin})


@pytest.fixture
def pm() -> Plugins:
    return manager()


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_ctx(http: aiohttp.ClientSession, tmp_path: Path) -> Callable[..., CallContext]:
    def make(task_id: str = "video_test1", fetch_image: FetchImage | None = None, request: Any = None) -> CallContext:
        return CallContext(
            request=request,
            channel=CHANNEL,
            http=http,
            task_id=task_id,
            log=structlog.get_logger(),
            workdir=tmp_path,
            timeout=aiohttp.ClientTimeout(total=10),
            fetch_image=fetch_image,
        )

    return make


def png(pixels: np.ndarray) -> bytes:
    """Encode an RGB or RGBA array as PNG bytes."""
    layout = "rgba" if pixels.shape[2] == 4 else "rgb24"
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = pixels.shape[1], pixels.shape[0], layout
    packets = codec.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=layout))
    return b"".join(bytes(p) for p in packets + codec.encode(None))


def test_picture(width: int, height: int) -> np.ndarray:
    """Smooth gradients and a block: survives H.264 well, and is far from any text frame."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 150)], axis=-1).astype(np.uint8)
    rgb[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = (250, 230, 40)
    return rgb


test_picture.__test__ = False  # type: ignore[attr-defined]


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def map_job(pm: Plugins, **body: Any) -> VendorJob:
    return map_with_request(pm, **body)[0]


def map_with_request(pm: Plugins, **body: Any) -> tuple[VendorJob, Any]:
    """The job and the request it came from (submit reads inline images from the request)."""
    request = parse_request({"model": "local-v1", **body})
    return pm.map_request("local", request, MODEL, CHANNEL), request


def problems(pm: Plugins, **body: Any) -> list[str | None]:
    request = parse_request({"model": "local-v1", "prompt": "a fox", **body})
    return [problem.param for problem in pm.validate("local", request, MODEL, CHANNEL)]


async def poll_until_done(pm: Plugins, handle: dict, ctx: CallContext) -> list[PollResult]:
    """Poll like the gateway's worker until the job ends; return every answer."""
    answers = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = await pm.poll("local", handle, ctx)
        answers.append(answer)
        if answer.status in ("completed", "failed"):
            return answers
        await asyncio.sleep(0.05)
    raise AssertionError(f"job did not finish; last answer {answers[-1]}")


async def fetch(pm: Plugins, handle: dict, result: dict, ctx: CallContext, variant: str = "video") -> Any:
    source = await pm.fetch_result("local", handle, result, variant, ctx)
    if source is None:
        return None
    assert source.content_type == "video/mp4"
    return b"".join([chunk async for chunk in source.chunks])


async def render(pm: Plugins, job: VendorJob, ctx: CallContext) -> tuple[list[PollResult], bytes]:
    submission = await pm.submit("local", job, ctx)
    answers = await poll_until_done(pm, submission.handle, ctx)
    assert answers[-1].status == "completed", answers[-1]
    return answers, await fetch(pm, submission.handle, answers[-1].result, ctx)


def decode(video: bytes) -> tuple[av.video.stream.VideoStream, float, list[np.ndarray]]:
    """The video stream, the container duration (s) and every frame as RGB."""
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return stream, container.duration / 1_000_000, frames


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- registration and requests ---------------------------------------------------------


def test_registers_the_local_vendor(pm: Plugins) -> None:
    (vendor,) = pm.vendors.values()
    assert vendor.name == "local"
    assert [m.name for m in vendor.models] == ["local-v1"]
    assert vendor.models[0].seconds == tuple(range(1, 21))
    assert vendor.models[0].default_seconds == 4
    assert (vendor.poll_interval, vendor.deadline) == (0.5, 600)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"seconds": 21}, ["seconds"]),
        ({"seconds": 20, "size": "1920x1080"}, []),
        ({"size": "1080x1920"}, []),
        ({"size": "1921x1080"}, ["size"]),
        ({"size": "1500x1500"}, ["size"]),
        ({"size": "63x100"}, ["size"]),
        ({"size": "100:1"}, ["size"]),
        ({"size": "21:9"}, []),
        ({"images": [data_url(png(test_picture(8, 8)))] * 2}, ["images"]),
        ({"metadata": {"fps": "30"}}, ["metadata.fps"]),
        ({"metadata": {"fps": 61}}, ["metadata.fps"]),
        ({"metadata": {"fps": True}}, ["metadata.fps"]),
        ({"metadata": {"background": "red"}}, ["metadata.background"]),
        ({"metadata": {"background": 0x203040}}, ["metadata.background"]),
        ({"metadata": {"fps": 60, "background": "#203040", "style": "anything"}}, []),
        ({"seconds": 30, "size": "10x10", "metadata": {"fps": 0}}, ["seconds", "size", "metadata.fps"]),
    ],
)
def test_validate_names_the_field(pm: Plugins, body: dict, expected: list[str]) -> None:
    assert problems(pm, **body) == expected


def test_other_vendors_are_left_alone(pm: Plugins) -> None:
    request = parse_request({"model": "local-v1", "prompt": "a fox", "seconds": 99})
    assert pm.validate("acme", request, MODEL, CHANNEL) == []
    with pytest.raises(PluginLoadError, match="no plugin maps requests for vendor 'acme'"):
        pm.map_request("acme", request, MODEL, CHANNEL)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (None, "1280x720"),
        ("16:9", "1280x720"),
        ("9:16", "720x1280"),
        ("1:1", "720x720"),
        ("21:9", "1680x720"),
        ("3:1", "1920x640"),
        ("641x361", "640x360"),
    ],
)
def test_map_request_resolves_size(pm: Plugins, size: str | None, expected: str) -> None:
    job = map_job(pm, prompt="a fox", **({"size": size} if size else {}))
    assert job.size == expected
    width, height = (int(n) for n in expected.split("x"))
    assert (job.payload["width"], job.payload["height"]) == (width, height)


def test_map_request_resolves_defaults_and_images(pm: Plugins) -> None:
    job = map_job(pm, prompt="a fox")
    assert job.seconds == 4
    assert job.payload == {
        "prompt": "a fox",
        "seconds": 4,
        "width": 1280,
        "height": 720,
        "fps": 24,
        "background": "#203040",
        "image": None,
    }
    picture = png(test_picture(8, 8))
    inline = map_job(pm, prompt="", image=data_url(picture), seconds="7", metadata={"fps": 30})
    assert (inline.seconds, inline.payload["seconds"], inline.payload["fps"]) == (7, 7, 30)
    # The bytes stay in the stored request; the job names the image (submit reads ctx.request).
    assert inline.payload["image"] == {"request_image": 0, "mime": "image/png"}
    remote = map_job(pm, image="https://example.com/cat.png")
    assert remote.payload["image"] == {"url": "https://example.com/cat.png", "param": "image"}


def test_map_request_refuses_what_validate_refuses(pm: Plugins) -> None:
    with pytest.raises(RequestInvalid) as caught:
        map_job(pm, prompt="a fox", seconds=25)
    assert caught.value.param == "seconds"


# --- rendering -------------------------------------------------------------------------


async def test_text_to_video(pm: Plugins, make_ctx: Callable[..., CallContext]) -> None:
    ctx = make_ctx()
    metadata = {"fps": 15, "background": "#402010"}
    job = map_job(pm, prompt="A red fox runs through fresh snow", seconds=2, size="320x180", metadata=metadata)
    submission = await pm.submit("local", job, ctx)
    assert submission == Submission(handle={"job": "video_test1"}, vendor_task_id="video_test1", poll_after=0.2)

    answers = await poll_until_done(pm, submission.handle, ctx)
    # The actual usage facts: what the renderer made.
    made = {"seconds": 2.0, "width": 320, "height": 180, "fps": 15, "frames": 30, "resolution": "180p"}
    assert answers[-1] == PollResult(
        status="completed", progress=100, result={"job": "video_test1", "artifacts": ["last_frame"]}, usage=made
    )
    progress = [a.progress for a in answers]
    assert progress == sorted(progress)
    assert {a.status for a in answers[:-1]} <= {"queued", "in_progress"}

    video = await fetch(pm, submission.handle, answers[-1].result, ctx)
    stream, duration, frames = decode(video)
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == (320, 180)
    assert len(frames) == 30
    assert duration == pytest.approx(2.0, abs=0.1)
    assert difference(frames[0], frames[-1]) > 5, "the background should move"
    assert await fetch(pm, submission.handle, answers[-1].result, ctx, variant="thumbnail") is None


async def test_image_to_video_starts_on_the_image(pm: Plugins, make_ctx: Callable[..., CallContext]) -> None:
    picture = test_picture(320, 180)
    image = data_url(png(picture))
    job, request = map_with_request(
        pm, prompt="the camera moves in on the yellow block", image=image, seconds=1, size="320x180"
    )
    _, video = await render(pm, job, make_ctx(request=request))

    stream, duration, frames = decode(video)
    assert (stream.width, stream.height, len(frames)) == (320, 180, 24)
    assert duration == pytest.approx(1.0, abs=0.1)
    assert difference(frames[0], picture) < 4, "the first frame must be the picture itself"
    assert difference(frames[-1], picture) > 2 * difference(frames[0], picture), "the picture should zoom and pan"


async def test_image_url_is_fetched_at_submit(pm: Plugins, make_ctx: Callable[..., CallContext]) -> None:
    # A 4:3 picture in a 16:9 video: scaled to cover, so the centre row survives.
    picture = test_picture(200, 150)
    fetched: list[str] = []

    async def fetch_image(url: str, param: str = "image") -> tuple[bytes, str]:
        fetched.append(url)
        return png(picture), "image/png"

    job = map_job(pm, prompt="", image="https://example.com/cat.png", seconds=1, size="160x90")
    _, video = await render(pm, job, make_ctx(fetch_image=fetch_image))

    assert fetched == ["https://example.com/cat.png"]
    _, _, frames = decode(video)
    # Cover: scale by 0.8 to 160x120, then keep the middle 90 rows.
    rows = ((np.arange(90) + 15 + 0.5) / 0.8).astype(int)
    columns = ((np.arange(160) + 0.5) / 0.8).astype(int)
    assert difference(frames[0], picture[rows][:, columns]) < 6


async def test_transparency_shows_the_background(pm: Plugins, make_ctx: Callable[..., CallContext]) -> None:
    picture = np.zeros((90, 160, 4), dtype=np.uint8)
    picture[:, 80:] = (0, 0, 255, 255)  # the left half is fully transparent
    job, request = map_with_request(
        pm, image=data_url(png(picture)), seconds=1, size="160x90", metadata={"background": "#ff0000"}
    )
    _, video = await render(pm, job, make_ctx(request=request))
    first = decode(video)[2][0]
    assert difference(first[:, 10:70], np.full((90, 60, 3), (255, 0, 0), dtype=np.uint8)) < 10
    assert difference(first[:, 90:150], np.full((90, 60, 3), (0, 0, 255), dtype=np.uint8)) < 10


async def test_broken_image_fails_the_task(pm: Plugins, make_ctx: Callable[..., CallContext]) -> None:
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # passes the gateway's sniffing, decodes to nothing
    job, request = map_with_request(pm, prompt="a fox", image=data_url(broken), seconds=1, size="160x90")
    ctx = make_ctx(request=request)
    submission = await pm.submit("local", job, ctx)
    answers = await poll_until_done(pm, submission.handle, ctx)
    assert answers[-1].status == "failed"
    assert answers[-1].error.code == "render_failed"
    assert "reference image could not be decoded" in answers[-1].error.message


# --- identity, crashes and recovery ----------------------------------------------------


async def test_unknown_job_is_not_found(pm: Plugins, make_ctx: Callable[..., CallContext]) -> None:
    with pytest.raises(TaskFailed) as caught:
        await pm.poll("local", {"job": "video_nope"}, make_ctx())
    assert caught.value.code == "not_found"
    with pytest.raises(TaskFailed):
        await pm.poll("local", {"job": "../../etc/passwd"}, make_ctx())


async def test_resubmitting_a_task_does_not_render_it_again(
    pm: Plugins, make_ctx: Callable[..., CallContext], tmp_path: Path
) -> None:
    ctx = make_ctx()
    job = map_job(pm, prompt="a fox", seconds=1, size="160x90")
    first, second = await asyncio.gather(*(pm.submit("local", job, ctx) for _ in range(2)))
    assert first == second
    answers = await poll_until_done(pm, first.handle, ctx)
    assert answers[-1].status == "completed"
    video = tmp_path / "jobs" / "video_test1.mp4"
    rendered_at = video.stat().st_mtime_ns

    again = await pm.submit("local", job, ctx)
    assert again == first
    assert (await pm.poll("local", again.handle, ctx)).status == "completed"
    await asyncio.sleep(0.3)
    assert video.stat().st_mtime_ns == rendered_at
    assert not list(video.parent.glob("*.part.mp4"))


async def test_render_lost_with_the_gateway_is_restarted(
    pm: Plugins, make_ctx: Callable[..., CallContext], tmp_path: Path
) -> None:
    ctx = make_ctx()
    job = map_job(pm, prompt="a fox", seconds=1, size="160x90")
    submission = await pm.submit("local", job, ctx)
    await poll_until_done(pm, submission.handle, ctx)
    # Leave the files as a gateway killed mid-render does: spec, progress, a partial file.
    jobs = tmp_path / "jobs"
    (jobs / "video_test1.mp4").unlink()
    (jobs / "video_test1.progress").write_text("37")
    (jobs / "video_test1.12345.part.mp4").write_bytes(b"\x00" * 100)

    restarted = manager(Local())  # a new process: nothing is rendering
    first = await restarted.poll("local", submission.handle, ctx)
    assert first.status == "in_progress"
    answers = await poll_until_done(restarted, submission.handle, ctx)
    assert answers[-1].status == "completed", answers[-1]
    stream, _, frames = decode(await fetch(restarted, submission.handle, answers[-1].result, ctx))
    assert (stream.width, stream.height, len(frames)) == (160, 90, 24)
    assert not list(jobs.glob("*.part.mp4"))


async def test_recover_finds_submitted_jobs_only(
    pm: Plugins, make_ctx: Callable[..., CallContext], tmp_path: Path
) -> None:
    job = map_job(pm, prompt="a fox", seconds=1, size="160x90")
    assert await pm.recover("local", job, make_ctx("video_never_sent")) is None

    ctx = make_ctx("video_sent")
    submission = await pm.submit("local", job, ctx)
    await poll_until_done(pm, submission.handle, ctx)
    video = tmp_path / "jobs" / "video_sent.mp4"
    video.unlink()  # as if the gateway died before the render finished

    restarted = manager(Local())
    found = await restarted.recover("local", job, ctx)
    assert found == submission
    answers = await poll_until_done(restarted, found.handle, ctx)
    assert answers[-1].status == "completed"
    assert video.exists()


async def test_killed_render_processes_fail_only_the_jobs_they_were_rendering(
    pm: Plugins, make_ctx: Callable[..., CallContext]
) -> None:
    long_job = map_job(pm, prompt="a fox", seconds=20, size="1280x720")
    running = [await pm.submit("local", long_job, make_ctx(f"video_long{i}")) for i in range(2)]
    waiting_ctx = make_ctx("video_waiting")  # both workers are busy: this one waits its turn
    waiting = await pm.submit("local", map_job(pm, prompt="a fox", seconds=1), waiting_ctx)
    for submission in running:
        ctx = make_ctx(submission.vendor_task_id)
        while (await pm.poll("local", submission.handle, ctx)).status == "queued":
            await asyncio.sleep(0.05)
    assert (await pm.poll("local", waiting.handle, waiting_ctx)).status == "queued"
    for worker in multiprocessing.active_children():  # the render workers, as the OOM killer would
        os.kill(worker.pid, signal.SIGKILL)

    for submission in running:
        answers = await poll_until_done(pm, submission.handle, make_ctx(submission.vendor_task_id))
        assert answers[-1].status == "failed"
        assert answers[-1].error.code == "render_failed"
        assert "render process died" in answers[-1].error.message
    # The job that had not started is started again, on a fresh pool.
    answers = await poll_until_done(pm, waiting.handle, waiting_ctx)
    assert answers[-1].status == "completed"


KILLED_GATEWAY = """
import asyncio, json, multiprocessing, os, pathlib, signal, sys
import aiohttp, structlog
import vidgate_local
from vidgate import CallContext, Channel
from vidgate.errors import PluginLoadError
from vidgate.plugins import Plugins
from vidgate.request import parse_request

async def main():
    plugin, channel = vidgate_local.plugin, Channel(name="local", vendor="local")
    request = parse_request({"model": "local-v1", "prompt": "a fox", "seconds": 20, "size": "1280x720"})
    job = plugin.map_request(request, next(iter(plugin.models)), channel)
    async with aiohttp.ClientSession() as http:
        ctx = CallContext(channel=channel, http=http, task_id="video_orphan", log=structlog.get_logger(),
                          workdir=pathlib.Path(sys.argv[1]), timeout=aiohttp.ClientTimeout(total=10))
        submission = await plugin.submit(job, ctx)
        while (await plugin.poll(submission.handle, ctx)).status == "queued":
            await asyncio.sleep(0.05)
        print(json.dumps([child.pid for child in multiprocessing.active_children()]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_render_processes_end_with_a_killed_gateway(tmp_path: Path) -> None:
    script = tmp_path / "gateway.py"
    script.write_text(KILLED_GATEWAY)
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    output, _ = await asyncio.wait_for(gateway.communicate(), 30)
    assert gateway.returncode == -signal.SIGKILL
    workers = json.loads(output.decode().strip().splitlines()[-1])
    assert workers, "the render should have been running"
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "orphaned render workers must exit"


# --- through a whole gateway -----------------------------------------------------------


async def test_through_the_gateway(vidgate_gateway: Callable[..., Any]) -> None:
    picture = test_picture(320, 180)
    body = {"model": "local-v1", "prompt": "a fox", "image": data_url(png(picture)), "seconds": 2, "size": "320x180"}
    async with vidgate_gateway() as gateway:  # no config: the embedded local channel
        key = await gateway.token()
        status, task = await gateway.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        assert (task["seconds"], task["size"]) == ("2", "320x180")
        done = await gateway.wait(task["id"], key, timeout=30)
        assert done["status"] == "completed", done
        status, video = await gateway.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200

    stream, duration, frames = decode(video)
    assert (stream.width, stream.height, len(frames)) == (320, 180, 48)
    assert duration == pytest.approx(2.0, abs=0.1)
    assert difference(frames[0], picture) < 4
