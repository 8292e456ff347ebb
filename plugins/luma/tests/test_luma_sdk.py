"""The official Luma Dream Machine SDK (``lumaai``) pointed at the fake."""

from __future__ import annotations

import asyncio

import pytest

from vidgate_luma.fake import FakeLuma

lumaai = pytest.importorskip("lumaai")


async def test_sdk_create_get_delete():
    fake = FakeLuma()
    async with fake.serve():
        client = lumaai.LumaAI(auth_token=fake.secret, base_url=fake.url, max_retries=0)

        def run() -> tuple[list[str], str, str]:
            gen = client.generations.create(
                model="ray-2",
                prompt="a fox",
                aspect_ratio="16:9",
                duration="5s",
                resolution="720p",
                keyframes={"frame0": {"type": "image", "url": "https://images.example/cat.png"}},
            )
            states = []
            for _ in range(4):
                got = client.generations.get(gen.id)
                states.append(got.state)
                if got.state == "completed":
                    video = got.assets.video
                    break
            client.generations.delete(gen.id)
            return states, video, gen.id

        states, video, gen_id = await asyncio.to_thread(run)
        with pytest.raises(lumaai.NotFoundError):
            await asyncio.to_thread(client.generations.get, gen_id)
        with pytest.raises(lumaai.AuthenticationError):
            bad = lumaai.LumaAI(auth_token="wrong", base_url=fake.url, max_retries=0)
            await asyncio.to_thread(bad.generations.get, gen_id)
        with pytest.raises(lumaai.BadRequestError):
            await asyncio.to_thread(client.generations.create, model="ray-2", prompt="x", duration="7s")
    assert states[-1] == "completed" and video == fake.result_url(fake.jobs[gen_id])
    assert fake.creates()[0].path == "/generations/video"
