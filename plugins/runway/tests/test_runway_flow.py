"""End-to-end: the whole gateway over HTTP, the runway plugin, and the fake Runway API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from vidgate.testing import RunningGateway, run_gateway, tiny_png
from vidgate_runway import API_VERSION
from vidgate_runway.fake import FakeRunway

PNG = "data:image/png;base64," + base64.b64encode(tiny_png(64, 64)).decode()


def channel(fake: FakeRunway, name: str = "rw-a", key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "runway",
        "base_url": fake.url,
        "credentials": {"api_key": key or fake.secret},
        "options": {"poll_interval": 0.05, **extra.pop("options", {})},
        **extra,
    }


def config(*channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": {"enabled": []},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {m: {"price_per_second": 0.1} for m in ("gen4.5", "gen4_turbo", "veo3.1", "aleph2")},
    }


@contextlib.asynccontextmanager
async def env(
    tmp_path: Any, fake: FakeRunway | None = None, channels: Callable[[FakeRunway], list[dict[str, Any]]] | None = None
) -> AsyncIterator[tuple[RunningGateway, FakeRunway, str]]:
    from vidgate_runway import plugin

    fake = fake or FakeRunway()
    async with fake.serve():
        chans = channels(fake) if channels else [channel(fake)]
        async with run_gateway(config(*chans), tmp_path, extra_plugins={"runway": plugin}) as gw:
            yield gw, fake, await gw.token("t", quota=100)


def assert_versioned(fake: FakeRunway) -> None:
    api = [r for r in fake.requests if r.path.startswith("/v1/")]
    assert api, "no Runway API call was made"
    assert all(r.headers.get("x-runway-version") == API_VERSION for r in api), [
        (r.method, r.path, r.headers.get("x-runway-version")) for r in api
    ]


async def ledger_sum(gw: RunningGateway, task_id: str) -> int:
    rows = await gw.gateway.store.db.fetchall("SELECT amount FROM ledger WHERE task_id = ?", task_id)
    return sum(r["amount"] for r in rows)


async def test_text_and_image_to_video_wire_shape_and_bytes(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        status, t2v = await gw.post(
            "/v1/video/generations", key, json={"model": "gen4.5", "prompt": "a fox", "seconds": 6, "size": "9:16"}
        )
        assert status == 200, t2v
        status, i2v = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "veo3.1", "prompt": "waves", "images": [PNG, PNG], "seconds": 4},
        )
        assert status == 200, i2v
        for task in (t2v, i2v):
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            job = next(j for j in fake.jobs.values() if j.prompt == task["prompt"])
            assert status == 200 and body == fake.result_bytes(job)
        assert (await gw.wait(t2v["id"], key))["size"] == "720x1280"
    [t, i] = fake.creates()
    assert t.path == "/v1/text_to_video"
    assert t.json == {"model": "gen4.5", "promptText": "a fox", "duration": 6, "ratio": "720:1280"}
    assert i.path == "/v1/image_to_video"
    assert i.json["ratio"] == "1280:720" and i.json["duration"] == 4
    assert [p["position"] for p in i.json["promptImage"]] == ["first", "last"]
    assert i.json["promptImage"][0]["uri"].startswith("data:image/png;base64,")
    assert t.headers["authorization"] == f"Bearer {fake.secret}"
    assert_versioned(fake)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gen4.5", "prompt": "x", "seconds": 12}, "seconds"),
        ({"model": "gen4_turbo", "prompt": "no image"}, "image"),
        ({"model": "gen4.5", "prompt": "x", "size": "1104x832"}, "size"),  # image-only ratio
        ({"model": "gen4.5", "prompt": "x", "images": [PNG, PNG]}, "images[1]"),  # no last frame
        ({"model": "gen4.5", "prompt": "x", "metadata": {"outputFormat": "prores"}}, "metadata.outputFormat"),
        ({"model": "gen4.5", "prompt": "x", "metadata": {"ratio": "960:960"}}, "metadata.ratio"),
        ({"model": "gen4.5", "prompt": "x", "metadata": {"audio": True}}, "metadata.audio"),
        ({"model": "gen4.5", "prompt": "é" * 1001}, "prompt"),
        ({"model": "aleph2", "prompt": "make it night"}, "input_reference"),
    ],
)
async def test_impossible_parameters_are_400_without_a_vendor_call(tmp_path, body, param):
    async with env(tmp_path) as (gw, fake, key):
        status, answer = await gw.post("/v1/video/generations", key, json=body)
    assert status == 400, answer
    assert answer["error"]["param"] == param, answer
    assert fake.requests == []


async def test_vendor_failure_fails_with_its_reason_and_refunds(tmp_path):
    fake = FakeRunway()
    fake.fail_next("SAFETY.OUTPUT.VIDEO", "The output was flagged by content moderation.")
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "a fox"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed"
        assert done["error"] == {"code": "content_filtered", "message": "The output was flagged by content moderation."}
        assert await ledger_sum(gw, task["id"]) == 0
        _, other = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "plain [fail]"})
        done = await gw.wait(other["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "vendor_failed", done
        assert await ledger_sum(gw, other["id"]) == 0


async def test_rate_limited_create_is_retried_and_completes(tmp_path):
    fake = FakeRunway()
    fake.inject("create", "429", times=2)
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "patience"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.status for r in fake.creates()] == [429, 429, 200]
    assert_versioned(fake)


async def test_bad_key_fails_over_to_the_second_channel(tmp_path):
    def both(fake: FakeRunway) -> list[dict[str, Any]]:
        return [channel(fake, "rw-bad", key="key_revoked", priority=10), channel(fake, "rw-good")]

    async with env(tmp_path, None, both) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "a fox"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        attempts = await gw.gateway.store.attempts(task["id"])
    assert [r.status for r in fake.creates()] == [401, 200]
    assert any("rw-good" in str(a) for a in attempts)


async def test_cancel_mid_way_ends_cancelled_with_delete(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "long [hold]"})
        await gw.wait(task["id"], key, until=("in_progress",))
        status, answer = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 200, answer
        done = await gw.wait(task["id"], key)
        assert done["status"] == "cancelled"
        [job] = fake.jobs.values()
        assert job.state == "cancelled"
    [delete] = fake.recorded("DELETE")
    assert delete.path == f"/v1/tasks/{job.id}" and delete.status == 204
    assert_versioned(fake)


async def test_cancel_of_a_finished_task_does_not_delete_it(tmp_path):
    from vidgate_runway import plugin

    fake = FakeRunway(polls_to_finish=1)
    async with fake.serve():
        job = fake.new_job("done", seconds=5)
        fake.set_state(job, "succeeded")
        ctx = _ctx(fake)
        import aiohttp

        async with aiohttp.ClientSession() as http:
            ctx.http = http
            result = await plugin.cancel({"id": job.id}, ctx)
    assert result.outcome.value == "finished"
    assert fake.recorded("DELETE") == [] and job.id not in fake.deleted


async def test_throttled_is_queued_then_completes(tmp_path):
    fake = FakeRunway()
    fake.throttle = True
    async with env(tmp_path, fake) as (gw, fake, key):
        _, task = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "busy [hold]"})
        job = None
        while job is None or job.polls < 3:
            await asyncio.sleep(0.02)
            job = next(iter(fake.jobs.values()), None)
        status, now = await gw.get(f"/v1/videos/{task['id']}", key)
        assert now["status"] == "queued", now
        fake.release()
        assert (await gw.wait(task["id"], key))["status"] == "completed"


async def test_api_version_option_reaches_every_call(tmp_path):
    def odd(fake: FakeRunway) -> list[dict[str, Any]]:
        return [channel(fake, options={"api_version": "2031-01-01"})]

    async with env(tmp_path, None, odd) as (gw, fake, key):
        status, answer = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "a fox"})
    assert status == 400 and "Unsupported API version" in answer["error"]["message"], answer
    assert [r.headers["x-runway-version"] for r in fake.creates()] == ["2031-01-01"]


async def test_aleph2_edit_of_a_completed_task(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, source = await gw.post(
            "/v1/video/generations", key, json={"model": "gen4.5", "prompt": "a street", "seconds": 8}
        )
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        [source_job] = fake.jobs.values()
        status, edit = await gw.post(
            "/v1/videos/edits", key, json={"prompt": "make it night", "video": {"id": source["id"]}}
        )
        assert status == 200, edit
        done = await gw.wait(edit["id"], key)
        assert done["status"] == "completed", done
        assert done["derived_from"] == {"video_id": source["id"], "operation": "edit"}
        assert done["seconds"] == "8" and done["size"] == "1280x720"
        status, body = await gw.get(f"/v1/videos/{edit['id']}/content", key, raw=True)
        assert status == 200 and body[4:8] == b"ftyp"
    [v2v] = fake.creates("video_to_video")
    assert v2v.json == {
        "model": "aleph2",
        "promptText": "make it night",
        "ratio": "1280:720",
        "videoUri": fake.result_url(source_job),
    }
    edit_job = next(j for j in fake.jobs.values() if j.id != source_job.id)
    assert edit_job.data["source"] == source_job.id
    assert_versioned(fake)


async def test_aleph2_edit_sends_the_stored_video_when_runway_deleted_the_source(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        _, source = await gw.post("/v1/video/generations", key, json={"model": "gen4.5", "prompt": "a street"})
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        [source_job] = fake.jobs.values()
        fake.deleted.add(source_job.id)
        _, edit = await gw.post("/v1/videos/edits", key, json={"prompt": "snow", "video": {"id": source["id"]}})
        assert (await gw.wait(edit["id"], key))["status"] == "completed"
    [v2v] = fake.creates("video_to_video")
    assert v2v.json["videoUri"] == "data:video/mp4;base64," + base64.b64encode(fake.result_bytes(source_job)).decode()


def _ctx(fake: FakeRunway) -> Any:
    import aiohttp
    import structlog

    from vidgate import CallContext, Channel

    return CallContext(
        channel=Channel("c", "runway", base_url=fake.url, credentials={"api_key": fake.secret}),
        http=None,  # type: ignore[arg-type]
        task_id="video_x",
        log=structlog.get_logger(),
        workdir=None,  # type: ignore[arg-type]
        timeout=aiohttp.ClientTimeout(total=5),
    )


async def test_aleph2_with_an_input_video_url(tmp_path):
    async with env(tmp_path) as (gw, fake, key):
        body = {"model": "aleph2", "prompt": "rain", "input_reference": "https://cdn.example/clip.mp4", "seconds": 6}
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed" and done["seconds"] == "6", done
        status, missing = await gw.post("/v1/video/generations", key, json={**body, "seconds": None})
        assert status == 400 and missing["error"]["param"] == "seconds", missing
    [v2v] = fake.creates("video_to_video")
    assert v2v.json == {"model": "aleph2", "videoUri": "https://cdn.example/clip.mp4", "promptText": "rain"}
