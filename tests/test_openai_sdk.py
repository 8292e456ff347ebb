"""The official openai SDK, pointed at vidgate, must just work (``client.videos.*``).

One gateway serves two vendors: ``local`` (real H.264 renders with PyAV, a few seconds
each, so only a handful are made) and the in-process ``scripted`` vendor (instant, for
the many tasks that pagination needs). The same scenario runs with ``OpenAI`` (in a
thread, since it blocks) and with ``AsyncOpenAI`` (directly in the loop).
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import av
import openai
import pytest
from scripted_vendor import Scripted

from vidgate.testing import run_gateway

pytest.importorskip("vidgate_local", reason="the local vendor plugin is not installed")

# SDK 3.x marks every videos.* method deprecated (OpenAI shut Sora down); not our concern.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def png(width: int = 64, height: int = 36, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A small valid PNG, built by hand (no Pillow here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def config() -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["local"]},
        "channels": [
            {"name": "local", "vendor": "local", "options": {"poll_interval": 0.1}},
            {"name": "scripted", "vendor": "scripted"},
        ],
    }


class Sdk:
    """Run the same calls through the sync client (in a thread) or the async one."""

    def __init__(self, client: openai.OpenAI | openai.AsyncOpenAI) -> None:
        self.client = client
        self.is_async = isinstance(client, openai.AsyncOpenAI)

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn = self.client.videos
        for part in method.split("."):
            fn = getattr(fn, part)
        if self.is_async:
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def list_all(self, **kwargs: Any) -> list[Any]:
        """Auto-paginate ``videos.list`` the way user code does."""
        if self.is_async:
            return [v async for v in self.client.videos.list(**kwargs)]
        return await asyncio.to_thread(lambda: list(self.client.videos.list(**kwargs)))

    async def write_content(self, video_id: str, target: Path, **kwargs: Any) -> None:
        content = await self("download_content", video_id, **kwargs)
        # The binary wrapper is the same (already read) object for both clients.
        await asyncio.to_thread(content.write_to_file, target)

    async def close(self) -> None:
        if self.is_async:
            await self.client.close()
        else:
            self.client.close()


def make_client(kind: str, gw_url: str, key: str, **kwargs: Any) -> Sdk:
    cls = openai.AsyncOpenAI if kind == "async" else openai.OpenAI
    return Sdk(cls(base_url=gw_url + "/v1", api_key=key, **kwargs))


def check_mp4(path: Path, width: int, height: int, seconds: float) -> None:
    assert path.read_bytes()[4:8] == b"ftyp"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(video=0))
    assert (frames[0].width, frames[0].height) == (width, height)
    fps = float(stream.average_rate or 24)
    assert abs(len(frames) / fps - seconds) < 0.5, (len(frames), fps)


def check_image(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
    return frame.width, frame.height


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_openai_sdk_videos(tmp_path, kind):
    scripted = Scripted()
    async with run_gateway(config(), tmp_path, extra_plugins={"scripted": scripted}) as gw:
        key = await gw.token("alice")
        other_key = await gw.token("bob")
        sdk = make_client(kind, gw.url, key, max_retries=0)
        try:
            # -- create (multipart: current SDKs always send it), retrieve, poll --------
            video = await sdk("create", model="local-v1", prompt="a red fox in snow", seconds="4", size="1280x720")
            assert isinstance(video, openai.types.Video)
            assert video.id.startswith("video_") and video.object == "video"
            assert video.model == "local-v1" and video.status in ("queued", "in_progress")
            assert video.seconds == "4" and video.size == "1280x720" and video.prompt == "a red fox in snow"
            assert video.error is None and video.completed_at is None

            same = await sdk("retrieve", video.id)
            assert same.id == video.id and same.created_at == video.created_at
            done = await sdk("poll", video.id, poll_interval_ms=100)
            assert done.status == "completed", done.error
            assert done.progress == 100 and done.completed_at and done.expires_at

            # -- download the video and the gateway-made thumbnail -------------------
            target = tmp_path / f"{kind}.mp4"
            await sdk.write_content(video.id, target)
            await asyncio.to_thread(check_mp4, target, 1280, 720, 4)
            thumb = await sdk("download_content", video.id, variant="thumbnail")
            width, height = check_image(thumb.content)
            assert width > 0 and abs(width / height - 16 / 9) < 0.05

            # -- image-to-video with an uploaded input_reference, via create_and_poll --
            ref = await sdk(
                "create_and_poll",
                model="local-v1",
                prompt="animate it",
                seconds="1",
                size="640x360",
                input_reference=("ref.png", png(), "image/png"),
                poll_interval_ms=100,
                # Multipart flattens this to metadata[fps]=8: vendor options still arrive typed.
                extra_body={"metadata": {"fps": 8}},
            )
            assert ref.status == "completed", ref.error
            target = tmp_path / f"{kind}-ref.mp4"
            await sdk.write_content(ref.id, target)
            await asyncio.to_thread(check_mp4, target, 640, 360, 1)
            with av.open(str(target)) as container:
                assert container.streams.video[0].average_rate == 8
                first = next(container.decode(video=0)).to_ndarray(format="rgb24")
            # The reference image (solid red) is what the renderer animates.
            r, g, b = (int(c) for c in first[180, 320])
            assert r > 150 and g < 100 and b < 100, (r, g, b)

            # -- remix where the model cannot: 400 naming the reason -------------------
            plain = await sdk("create_and_poll", model="scripted-2", prompt="a dog", poll_interval_ms=50)
            with pytest.raises(openai.BadRequestError) as bad:
                await sdk("remix", plain.id, prompt="now at night")
            assert bad.value.code == "remix_not_supported" and bad.value.param == "video_id"

            # -- remix where it can --------------------------------------------------
            source = await sdk("create_and_poll", model="scripted-1", prompt="a cat", poll_interval_ms=50)
            remixed = await sdk("remix", source.id, prompt="a cat, in the rain")
            assert remixed.remixed_from_video_id == source.id and remixed.id != source.id
            assert scripted.submitted[-1][1]["remix"].startswith("s-")

            # -- list: auto-pagination over more tasks than one page -----------------
            for i in range(9):
                await sdk("create", model="scripted-1", prompt=f"clip {i}")
            mine = {video.id, ref.id, source.id, remixed.id, plain.id}
            newest_first = await sdk.list_all(limit=3)
            ids = [v.id for v in newest_first]
            assert len(ids) == len(set(ids)) == 14
            assert mine <= set(ids)
            created = [v.created_at for v in newest_first]
            assert created == sorted(created, reverse=True)
            oldest_first = await sdk.list_all(limit=5, order="asc")
            assert [v.id for v in oldest_first] == ids[::-1]
            page = await sdk("list", limit=4)
            assert page.has_more is True and page.last_id == page.data[-1].id and len(page.data) == 4

            # -- delete -------------------------------------------------------------
            deleted = await sdk("delete", source.id)
            assert (deleted.id, deleted.object, deleted.deleted) == (source.id, "video.deleted", True)
            with pytest.raises(openai.NotFoundError):
                await sdk("retrieve", source.id)
            with pytest.raises(openai.NotFoundError):
                await sdk("download_content", source.id)
            assert not (gw.gateway.media.root / source.id).exists()
            assert len(await sdk.list_all(limit=100)) == 13

            # -- conflicts: unfinished tasks -----------------------------------------
            scripted.polls_to_finish = 10_000
            pending = await sdk("create", model="scripted-1", prompt="slow")
            with pytest.raises(openai.ConflictError) as conflict:
                await sdk("delete", pending.id)
            assert conflict.value.response.headers["x-should-retry"] == "false"
            with pytest.raises(openai.ConflictError) as conflict:
                await sdk("download_content", pending.id)
            assert conflict.value.code == "video_not_ready"
            raw = await sdk("with_raw_response.retrieve", pending.id)
            assert int(raw.headers["openai-poll-after-ms"]) >= 100

            # -- errors the SDK maps to its exception classes ------------------------
            with pytest.raises(openai.BadRequestError) as bad:
                await sdk("create", model="local-v1", prompt="x", size="huge")
            assert bad.value.param == "size" and bad.value.type == "invalid_request_error"
            with pytest.raises(openai.BadRequestError) as bad:
                await sdk("create", model="no-such-model", prompt="x")
            assert bad.value.param == "model" and bad.value.code == "model_not_found"
            with pytest.raises(openai.BadRequestError) as bad:
                await sdk(
                    "create", model="local-v1", prompt="x", seconds="4", input_reference=("a.png", b"nope", "image/png")
                )
            assert bad.value.param == "input_reference"
            with pytest.raises(openai.NotFoundError) as absent:  # local makes no spritesheet
                await sdk("download_content", video.id, variant="spritesheet")
            assert absent.value.param == "variant"
        finally:
            await sdk.close()

        wrong = make_client(kind, gw.url, "sk-not-a-vidgate-key", max_retries=0)
        try:
            with pytest.raises(openai.AuthenticationError) as auth:
                await wrong("retrieve", video.id)
            assert auth.value.code == "invalid_api_key"
        finally:
            await wrong.close()

        other = make_client(kind, gw.url, other_key, max_retries=0)
        try:
            for call in (("retrieve", video.id), ("download_content", video.id), ("delete", video.id)):
                with pytest.raises(openai.NotFoundError):
                    await other(*call)
            with pytest.raises(openai.NotFoundError):
                await other("remix", remixed.id, prompt="steal")
            assert await other.list_all() == []
        finally:
            await other.close()
