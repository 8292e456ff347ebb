"""The official Luma Agents SDK (``luma_agents``) pointed at the fake Agents API: the fake
answers the SDK's own request and response shapes, failure shapes and error classes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vidgate_luma.fake import FakeLumaAgents

luma_agents = pytest.importorskip("luma_agents")

IMG = "https://images.example/cat.png"


def client(fake: FakeLumaAgents, key: str | None = None) -> Any:
    return luma_agents.Luma(auth_token=key or fake.secret, base_url=fake.url, max_retries=0)


def until_done(sdk: Any, gid: str) -> tuple[list[str], Any]:
    states, got = [], None
    for _ in range(5):
        got = sdk.generations.get(gid)
        states.append(got.state)
        if got.state in ("completed", "failed"):
            break
    return states, got


async def test_sdk_creates_and_gets_text_image_and_edit_generations():
    fake = FakeLumaAgents()
    async with fake.serve():
        sdk = client(fake)

        def run() -> tuple[Any, ...]:
            t2v = sdk.generations.create(
                model="ray-3.2",
                type="video",
                prompt="a misty greenhouse",
                aspect_ratio="16:9",
                video={"resolution": "720p", "duration": "10s"},
            )
            i2v = sdk.generations.create(
                model="ray-3.2",
                type="video",
                prompt="the cat turns",
                aspect_ratio="9:16",
                video={"duration": "5s", "start_frame": {"url": IMG}, "end_frame": {"url": IMG + "?last"}},
            )
            states, done = until_done(sdk, t2v.id)
            until_done(sdk, i2v.id)
            edit = sdk.generations.create(
                model="ray-3.2",
                type="video_edit",
                prompt="make it night",
                source={"generation_id": t2v.id},
                video={"resolution": "720p", "edit": {"strength": "flex_2"}},
            )
            return t2v, i2v, states, done, edit, until_done(sdk, edit.id)[1]

        t2v, i2v, states, done, edit, edited = await asyncio.to_thread(run)
    assert (t2v.state, t2v.type, t2v.model, t2v.output) == ("queued", "video", "ray-3.2", None)
    assert states == ["processing", "completed"]
    assert done.failure_code is None and done.output[0].type == "video"
    assert done.output[0].url == fake.result_url(fake.jobs[t2v.id])
    assert fake.jobs[t2v.id].seconds == 10 and fake.jobs[i2v.id].data["image"] == IMG
    assert edited.state == "completed" and edited.type == "video_edit"
    assert fake.jobs[edit.id].data["source"] == t2v.id and fake.jobs[edit.id].seconds == 10
    first = fake.creates()[0]
    assert first.headers["authorization"] == f"Bearer {fake.secret}"
    assert first.json == {
        "model": "ray-3.2",
        "type": "video",
        "prompt": "a misty greenhouse",
        "aspect_ratio": "16:9",
        "video": {"resolution": "720p", "duration": "10s"},
    }


async def test_sdk_reads_failures_with_their_codes():
    fake = FakeLumaAgents()
    fake.fail_next("content_moderated", "The prompt violated the content guidelines.")
    fake.fail_next("budget_exhausted", "Ran out of funds mid-generation.")
    async with fake.serve():
        sdk = client(fake)

        def run() -> list[Any]:
            out = []
            for prompt in ("a fox", "a bear"):
                gen = sdk.generations.create(model="ray-3.2", type="video", prompt=prompt)
                out.append(until_done(sdk, gen.id)[1])
            return out

        moderated, broke = await asyncio.to_thread(run)
    assert (moderated.state, moderated.failure_code) == ("failed", "content_moderated")
    assert moderated.failure_reason == "The prompt violated the content guidelines." and moderated.output is None
    assert (broke.failure_code, broke.failure_reason) == ("budget_exhausted", "Ran out of funds mid-generation.")


@pytest.mark.parametrize(
    ("kwargs", "error", "detail"),
    [
        ({"video": {"duration": "7s"}}, "BadRequestError", "video.duration"),
        ({"video": {"resolution": "4k"}}, "BadRequestError", "video.resolution"),
        ({"aspect_ratio": "3:1"}, "BadRequestError", "aspect_ratio"),
        ({"video": {"duration": "10s", "loop": True}}, "UnprocessableEntityError", "loop"),
        ({"video": {"hdr": True, "resolution": "360p"}}, "UnprocessableEntityError", "hdr"),
        (
            {"video": {"start_frame": {"url": IMG}, "keyframes": [{"url": IMG}], "keyframe_indexes": [0]}},
            "UnprocessableEntityError",
            "exclusive",
        ),
        ({"source": {"generation_id": "nope"}, "type": "video_edit"}, "NotFoundError", "generation not found"),
    ],
)
async def test_sdk_sees_refusals_as_its_error_classes(kwargs, error, detail):
    fake = FakeLumaAgents()
    async with fake.serve():
        sdk = client(fake)
        body = {"model": "ray-3.2", "type": "video", "prompt": "x", **kwargs}
        with pytest.raises(getattr(luma_agents, error)) as raised:
            await asyncio.to_thread(lambda: sdk.generations.create(**body))
    assert detail in raised.value.body["detail"]
    assert fake.jobs == {}


async def test_sdk_auth_balance_rate_limit_and_unknown_generation():
    fake = FakeLumaAgents()
    async with fake.serve():
        sdk = client(fake)
        with pytest.raises(luma_agents.AuthenticationError):
            await asyncio.to_thread(lambda: client(fake, "luma-api-wrong").generations.get("x"))
        with pytest.raises(luma_agents.NotFoundError):
            await asyncio.to_thread(sdk.generations.get, "00000000-0000-0000-0000-000000000000")
        fake.inject("create", "429")
        with pytest.raises(luma_agents.RateLimitError) as limited:
            await asyncio.to_thread(lambda: sdk.generations.create(model="ray-3.2", type="video", prompt="x"))
        assert limited.value.response.headers["retry-after"] == "0"
        fake.balance_empty = True
        with pytest.raises(luma_agents.APIStatusError) as broke:
            await asyncio.to_thread(lambda: sdk.generations.create(model="ray-3.2", type="video", prompt="x"))
    assert broke.value.status_code == 402 and broke.value.body == {"detail": "Insufficient balance"}
