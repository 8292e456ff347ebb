"""End-to-end: the whole gateway over HTTP, the luma plugin, and the fake Dream Machine API
(``options.surface = "dream-machine"``; the Agents surface is in test_luma_agents_flow.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from vidgate.testing import RunningGateway, run_gateway
from vidgate_luma.fake import FakeLuma

IMG = "https://images.example/cat.png"


def channel(fake: FakeLuma, name: str = "luma-a", key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "luma",
        "base_url": fake.url,
        "credentials": {"api_key": key or fake.secret},
        "options": {"poll_interval": 0.05, "surface": "dream-machine"},
        **extra,
    }


@contextlib.asynccontextmanager
async def env(
    tmp_path: Any, fake: FakeLuma | None = None, channels: Callable[[FakeLuma], list[dict[str, Any]]] | None = None
) -> AsyncIterator[tuple[RunningGateway, FakeLuma, str]]:
    from vidgate_luma import plugin

    fake = fake or FakeLuma()
    async with fake.serve():
        cfg = {
            "plugins": {"enabled": []},
            "channels": channels(fake) if channels else [channel(fake)],
            "network": {"max_retry_after_seconds": 0.2},
            "worker": {"max_backoff_seconds": 0.1},
            "models": {m: {"price_per_second": 0.1} for m in ("ray-2", "ray-flash-2", "ray-1-6")},
        }
        async with run_gateway(cfg, tmp_path, extra_plugins={"luma": plugin}) as gw:
            yield gw, fake, await gw.token("t", quota=100)


async def ledger_sum(gw: RunningGateway, task_id: str) -> int:
    rows = await gw.gateway.store.db.fetchall("SELECT amount FROM ledger WHERE task_id = ?", task_id)
    return sum(r["amount"] for r in rows)


async def test_text_and_keyframe_image_to_video(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, t2v = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "ray-2", "prompt": "a fox", "seconds": 9, "size": "1920x1080", "metadata": {"loop": True}},
        )
        _, i2v = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "ray-flash-2", "prompt": "waves", "images": [IMG, IMG + "?last"], "size": "9:16"},
        )
        for task in (t2v, i2v):
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            job = next(j for j in fake.jobs.values() if j.prompt == task["prompt"])
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            assert status == 200 and body == fake.result_bytes(job)
        assert (await gw.wait(t2v["id"], key))["size"] == "1920x1080"
        assert (await gw.wait(i2v["id"], key))["size"] == "720x1280"
    t, i = fake.creates()
    assert t.path == "/generations/video"
    assert t.json == {
        "loop": True,
        "model": "ray-2",
        "aspect_ratio": "16:9",
        "prompt": "a fox",
        "resolution": "1080p",
        "duration": "9s",
    }
    assert i.json["keyframes"] == {
        "frame0": {"type": "image", "url": IMG},
        "frame1": {"type": "image", "url": IMG + "?last"},
    }
    assert i.json["aspect_ratio"] == "9:16" and i.json["duration"] == "5s"
    assert t.headers["authorization"] == f"Bearer {fake.secret}"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "ray-2", "prompt": "x", "seconds": 10}, "seconds"),
        ({"model": "ray-2", "prompt": "x", "size": "1000x1000"}, "size"),
        ({"model": "ray-2", "prompt": "x", "size": "2:1"}, "size"),
        ({"model": "ray-2", "prompt": "x", "image": "data:image/png;base64,iVBORw0KGgo="}, "image"),
        ({"model": "ray-2", "prompt": "x", "metadata": {"loop": "yes"}}, "metadata.loop"),
        ({"model": "ray-2", "prompt": "x", "metadata": {"keyframes": {}}}, "metadata.keyframes"),
        ({"model": "ray-1-6", "prompt": "x", "seconds": 9}, "seconds"),
        ({"model": "ray-1-6", "prompt": "x", "metadata": {"resolution": "4k"}}, "metadata.resolution"),
    ],
)
async def test_impossible_parameters_are_400_without_a_vendor_call(tmp_path, body, param):
    async with env(tmp_path) as (gw, fake, key):
        status, answer = await gw.post("/v1/video/generations", key, json=body)
    assert status == 400 and answer["error"]["param"] == param, answer
    assert fake.requests == []


async def test_vendor_failure_fails_with_its_reason_and_refunds(tmp_path):
    fake = FakeLuma()
    fake.fail_next("The prompt did not pass moderation.")
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-2", "prompt": "a fox"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed"
        assert done["error"] == {"code": "content_filtered", "message": "The prompt did not pass moderation."}
        assert await ledger_sum(gw, task["id"]) == 0


async def test_rate_limited_create_is_retried_and_completes(tmp_path):
    fake = FakeLuma()
    fake.inject("create", "429", times=2)
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-2", "prompt": "patience"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.status for r in fake.creates()] == [429, 429, 201]


async def test_bad_key_fails_over_to_the_second_channel(tmp_path):
    def both(fake: FakeLuma) -> list[dict[str, Any]]:
        return [channel(fake, "luma-bad", key="luma-revoked", priority=10), channel(fake, "luma-good")]

    async with env(tmp_path, None, both) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-2", "prompt": "a fox"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.status for r in fake.creates()] == [401, 201]


async def test_cancel_mid_way_deletes_and_ends_cancelled(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-2", "prompt": "long [hold]"})
        await gw.wait(task["id"], key, until=("in_progress",))
        status, answer = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 200, answer
        assert (await gw.wait(task["id"], key))["status"] == "cancelled"
        [job] = fake.jobs.values()
    [delete] = fake.recorded("DELETE")
    assert delete.path == f"/generations/{job.id}" and delete.status == 204 and job.id in fake.deleted


async def test_extend_is_a_generation_keyframe_of_the_source(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, source = await gw.post("/v1/video/generations", key, json={"model": "ray-2", "prompt": "a road"})
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        [source_job] = fake.jobs.values()
        status, ext = await gw.post(
            "/v1/videos/extensions", key, json={"prompt": "and on", "seconds": "9", "video": {"id": source["id"]}}
        )
        assert status == 200, ext
        done = await gw.wait(ext["id"], key)
        assert done["status"] == "completed" and done["seconds"] == "9", done
    ext_create = fake.creates()[-1]
    assert ext_create.json["keyframes"] == {"frame0": {"type": "generation", "id": source_job.id}}
    assert ext_create.json["duration"] == "9s"


async def test_callback_url_is_sent_and_callbacks_are_hints(tmp_path):
    fake = FakeLuma(polls_to_finish=2)
    async with fake.serve():
        cfg = {
            "plugins": {"enabled": []},
            "server": {"public_url": "http://127.0.0.1:1"},
            "channels": [channel(fake)],
            "models": {"ray-2": {"price_per_second": 0.1}},
        }
        from vidgate_luma import plugin

        async with run_gateway(cfg, tmp_path, extra_plugins={"luma": plugin}) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "ray-2", "prompt": "a fox"})
            [create] = fake.creates()
            assert create.json["callback_url"].startswith("http://127.0.0.1:1/v1/callbacks/")
            [job] = fake.jobs.values()
            status, answer = await gw.post("/v1/callbacks/luma-a", json=fake.generation(job))
            assert status == 200, answer
            status, bad = await gw.post("/v1/callbacks/luma-a", data=b"not json")
            assert status == 400, bad


async def test_21_9_sizes_map_to_luma_s_21_9(tmp_path):
    """``Size`` reduces 21:9 to 7:3; both spellings (and 1680x720) are Luma's 21:9."""
    async with env(tmp_path) as (gw, fake, key):
        for size in ("21:9", "1680x720", "9:21"):
            status, task = await gw.post(
                "/v1/video/generations", key, json={"model": "ray-2", "prompt": size, "size": size}
            )
            assert status == 200, task
    assert [r.json["aspect_ratio"] for r in fake.creates()] == ["21:9", "21:9", "9:21"]


@pytest.mark.parametrize(
    ("base_url", "options", "surface"),
    [
        ("", {}, "agents"),  # a channel with only an api_key: the Agents API since December 2026
        ("https://api.lumalabs.ai/dream-machine/v1", {}, "dream-machine"),  # written for the old default
        ("https://relay.example/luma", {}, "agents"),
        ("https://relay.example/luma", {"surface": "dream-machine"}, "dream-machine"),
        ("https://api.lumalabs.ai/dream-machine/v1", {"surface": "Agents"}, "agents"),
    ],
)
def test_the_surface_of_a_channel(base_url, options, surface):
    from vidgate import Channel
    from vidgate_luma.client import base_url as base_of
    from vidgate_luma.client import surface_of

    ch = Channel("c", "luma", base_url=base_url, credentials={"api_key": "k"}, options=options)
    assert surface_of(ch) == surface
    expected = base_url or "https://agents.lumalabs.ai/v1"
    assert base_of(ch, surface) == expected
