"""End-to-end: the whole gateway over HTTP against the fake Ark server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from vidgate.testing import RunningGateway, run_gateway, tiny_mp4, tiny_png
from vidgate_seedance import plugin
from vidgate_seedance.fake import TASKS, FakeArk

PNG = "data:image/png;base64," + base64.b64encode(tiny_png(320, 180)).decode()


def channel(name: str, fake: FakeArk, *, key: str | None = None, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "seedance",
        "base_url": fake.api_url,
        "credentials": {"api_key": key or fake.secret},
        "options": {"poll_interval": 0.05, "list_qps": 1000, "platform": fake.platform, **options},
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "plugins": {"enabled": []},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2, "allow_image_networks": ["127.0.0.0/8"]},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {m.name: {"price": "0.000001 * tokens"} for m in plugin.models},
    }
    cfg.update(extra)
    return cfg


@contextlib.asynccontextmanager
async def env(
    tmp_path: Any, fake: FakeArk | None = None, **options: Any
) -> AsyncIterator[tuple[RunningGateway, FakeArk]]:
    fake = fake or FakeArk()
    async with fake.serve():
        async with run_gateway(
            config(channel("a", fake, **options)), tmp_path, extra_plugins={"seedance": plugin}
        ) as gw:
            yield gw, fake


async def ledger(gw: RunningGateway, task_id: str) -> list[tuple[str, int]]:
    rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task_id)
    return [(r["kind"], r["amount"]) for r in rows]


async def test_text_to_video_wire_shape_tokens_billed(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        body = {"model": "seedance-1.0-pro", "prompt": "a fox", "seconds": 5, "size": "1280x720"}
        body["metadata"] = {"seed": 42, "watermark": False, "camera_fixed": True}
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == tiny_mp4()
        (create,) = fake.creates()
        assert create.headers["authorization"] == f"Bearer {fake.secret}"
        assert create.json == {
            "model": "dreamina-seedance-1-0-pro-250528",
            "content": [{"type": "text", "text": "a fox"}],
            "resolution": "720p",
            "ratio": "16:9",
            "duration": 5,
            "seed": 42,
            "watermark": False,
            "camera_fixed": True,
        }
        # 5 s x 1280 x 720 x 24 / 1024 = 108,000 tokens, billed at 0.000001 each.
        assert done["usage"]["tokens"] == 108000, done["usage"]
        charged = sum(a for _, a in await ledger(gw, task["id"]))
        assert charged == 108000  # micro-units: 0.108


async def test_image_to_video_first_last_frame_and_last_frame_artifact(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        body = {
            "model": "seedance-1.0-lite",
            "prompt": "from day to night",
            "images": [PNG, PNG],
            "seconds": 6,
            "metadata": {"return_last_frame": True},
        }
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        (create,) = fake.creates()
        assert create.json["model"] == "dreamina-seedance-1-0-lite-i2v-250428"
        roles = [(i["type"], i.get("role")) for i in create.json["content"]]
        assert roles == [("text", None), ("image_url", "first_frame"), ("image_url", "last_frame")]
        assert create.json["content"][1]["image_url"]["url"] == PNG
        assert create.json["ratio"] == "16:9" and create.json["duration"] == 6
        status, frame = await gw.get(f"/v1/videos/{task['id']}/content?variant=last_frame", key, raw=True)
        job = next(iter(fake.jobs.values()))
        assert status == 200 and frame == fake.last_frame_bytes(job)


async def test_reference_images_video_audio_on_2_0(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        refs = [PNG, "https://cdn.example/clip.mp4", "https://cdn.example/voice.mp3"]
        body = {"model": "seedance-2.0", "prompt": "dance", "input_reference": refs, "seconds": 4}
        body["metadata"] = {"generate_audio": True}
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        (create,) = fake.creates()
        items = create.json["content"][1:]
        assert [(i["type"], i["role"]) for i in items] == [
            ("image_url", "reference_image"),
            ("video_url", "reference_video"),
            ("audio_url", "reference_audio"),
        ]
        assert items[1]["video_url"]["url"] == refs[1] and create.json["generate_audio"] is True


async def test_impossible_parameters_are_400_naming_the_field_without_a_vendor_call(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        cases = [
            ({"model": "seedance-2.0", "prompt": "x", "seconds": 20}, "seconds"),
            ({"model": "seedance-1.0-lite", "prompt": "x", "size": "3840x2160"}, "size"),
            ({"model": "seedance-2.0", "prompt": "x", "metadata": {"service_tier": "flex"}}, "metadata.service_tier"),
            (
                {"model": "seedance-1.0-pro", "prompt": "x", "metadata": {"generate_audio": True}},
                "metadata.generate_audio",
            ),
            ({"model": "seedance-1.0-pro", "prompt": "x", "metadata": {"priority": 12}}, "metadata.priority"),
            ({"model": "seedance-1.0-pro", "prompt": "x", "metadata": {"duration": 5}}, "metadata.duration"),
            (
                {"model": "seedance-1.0-pro", "prompt": "x", "input_reference": "https://a.example/v.mp4"},
                "input_reference",
            ),
        ]
        for body, param in cases:
            status, answer = await gw.post("/v1/video/generations", key, json=body)
            assert status == 400 and answer["error"]["param"] == param, (body, answer)
        assert fake.requests == []


async def test_output_filtered_fails_content_filtered_and_refunds(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "x [filtered]"}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "content_filtered", done
        rows = await ledger(gw, task["id"])
        assert sum(a for _, a in rows) == 0 and len(rows) == 2, rows


async def test_input_filtered_is_a_400(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        body = {"model": "seedance-2.0", "prompt": "x [input-filtered]"}
        status, answer = await gw.post("/v1/video/generations", key, json=body)
        assert status == 400 and "sensitive" in answer["error"]["message"], answer


async def test_rate_limited_create_is_retried_and_completes(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        fake.inject("create", "429", times=2)
        status, task = await gw.post("/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "wait"})
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert [r.status for r in fake.creates()] == [429, 429, 200]


async def test_bad_key_moves_the_task_to_the_second_channel(tmp_path):
    fake = FakeArk()
    async with fake.serve():
        cfg = config(
            {**channel("bad", fake, key="sk-wrong-key-000"), "priority": 10},
            channel("good", fake),
        )
        async with run_gateway(cfg, tmp_path, extra_plugins={"seedance": plugin}) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "x"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            statuses = [(r.headers["authorization"][-4:], r.status) for r in fake.creates()]
            assert statuses == [("-000", 401), (fake.secret[-4:], 200)], statuses
            attempts = await gw.gateway.store.attempts(task["id"])
            assert [a.channel for a in attempts if a.channel][-1] == "good"


async def test_volcengine_platform_uses_doubao_ids(tmp_path):
    async with env(tmp_path, FakeArk(platform="volcengine")) as (gw, fake):
        key = await gw.token()
        for model, image in (("seedance-1.0-lite", False), ("seedance-1.0-lite", True), ("seedance-2.0-fast", False)):
            body: dict[str, Any] = {"model": model, "prompt": f"{model} {image}"}
            if image:
                body["image"] = PNG
            status, task = await gw.post("/v1/video/generations", key, json=body)
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert [r.json["model"] for r in fake.creates()] == [
            "doubao-seedance-1-0-lite-t2v-250428",
            "doubao-seedance-1-0-lite-i2v-250428",
            "doubao-seedance-2-0-fast-260128",
        ]


def test_platform_default_base_urls():
    from vidgate import Channel
    from vidgate_seedance.client import base_url

    class Ctx:
        def __init__(self, channel: Channel) -> None:
            self.channel = channel

    byteplus = Channel("b", "seedance", base_url=plugin.default_base_url or "")
    volc = Channel("v", "seedance", base_url=plugin.default_base_url or "", options={"platform": "volcengine"})
    assert base_url(Ctx(byteplus)) == "https://ark.ap-southeast.bytepluses.com/api/v3"  # type: ignore[arg-type]
    assert base_url(Ctx(volc)) == "https://ark.cn-beijing.volces.com/api/v3"  # type: ignore[arg-type]
    assert plugin.validate_channel(Channel("x", "seedance", credentials={"api_key": "k"}, options={"platform": "aws"}))


async def test_model_map_overrides_the_model_id(tmp_path):
    fake = FakeArk()
    async with fake.serve():
        ch = {**channel("a", fake), "model_map": {"seedance-2.0": "ep-20261202-abcde"}}
        async with run_gateway(config(ch), tmp_path, extra_plugins={"seedance": plugin}) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "x"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert fake.creates()[0].json["model"] == "ep-20261202-abcde"


async def test_cancel_of_a_queued_task_is_cancelled_with_a_full_refund(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "x [queued]"}
        )
        assert status == 200, task
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        done = await gw.wait(task["id"], key)
        assert done["status"] == "cancelled", done
        (delete,) = fake.recorded("DELETE")
        assert delete.status == 200 and next(iter(fake.jobs.values())).state == "cancelled"
        rows = await ledger(gw, task["id"])
        assert sum(a for _, a in rows) == 0 and len(rows) == 2, rows


async def test_cancel_of_a_running_task_is_refused_without_delete(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "x [hold]"})
        await gw.wait(task["id"], key, until=("in_progress",))
        while next(iter(fake.jobs.values())).state != "running":
            await asyncio.sleep(0.02)
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        assert (await gw.wait(task["id"], key))["status"] == "cancelled"
        # A DELETE would have been refused (running) or deleted the record (finished).
        assert fake.recorded("DELETE") == []
        attempts = await gw.gateway.store.attempts(task["id"])
        assert any("cancel_refused" in (a.outcome or "") for a in attempts), attempts


async def test_fifty_in_flight_tasks_poll_with_few_list_calls(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(quota=10**6)
        bodies = [{"model": "seedance-2.0-fast", "prompt": f"member {i} [hold]"} for i in range(50)]
        answers = await asyncio.gather(*(gw.post("/v1/video/generations", key, json=b) for b in bodies))
        assert all(s == 200 for s, _ in answers), answers
        for _ in range(500):
            if len(fake.jobs) == 50 and all(j.polls >= 1 for j in fake.jobs.values()):
                break
            await asyncio.sleep(0.02)
        singles = len([r for r in fake.recorded("GET") if r.path.startswith(TASKS + "/")])
        # Count the list calls over a few poll intervals while all 50 are in flight.
        start, before = asyncio.get_running_loop().time(), len(fake.list_calls())
        await asyncio.sleep(0.3)  # 6 poll intervals of 0.05 s
        during = len(fake.list_calls()) - before
        elapsed = asyncio.get_running_loop().time() - start
        assert during <= 3 * (elapsed / 0.05) + 3, (during, elapsed)
        ids = fake.list_calls()[-1].query["filter.task_ids"].split(",")
        assert len(ids) >= 25, len(ids)  # one call carries (nearly) every in-flight task
        fake.release()
        for _, task in answers:
            assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert len([r for r in fake.recorded("GET") if r.path.startswith(TASKS + "/")]) == singles


async def test_list_calls_are_spaced_to_list_qps(tmp_path):
    async with env(tmp_path, FakeArk(list_qps=10), list_qps=10) as (gw, fake):
        key = await gw.token()
        bodies = [{"model": "seedance-2.0", "prompt": f"paced {i}"} for i in range(3)]
        answers = await asyncio.gather(*(gw.post("/v1/video/generations", key, json=b) for b in bodies))
        for _, task in answers:
            assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert fake.list_calls() and all(r.status == 200 for r in fake.list_calls())


async def test_draft_then_its_final_render(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        body = {"model": "seedance-2.0", "prompt": "a paper boat", "seconds": 6, "metadata": {"draft": True}}
        body["metadata"]["resolution"] = "480p"
        status, draft = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, draft
        assert (await gw.wait(draft["id"], key))["status"] == "completed"
        status, other = await gw.post(f"/v1/videos/{draft['id']}/remix", key, json={"prompt": "something else"})
        assert status == 400 and other["error"]["param"] == "prompt", other
        status, final = await gw.post(f"/v1/videos/{draft['id']}/remix", key, json={"prompt": "a paper boat"})
        assert status == 200, final
        done = await gw.wait(final["id"], key)
        assert done["status"] == "completed" and done["remixed_from_video_id"] == draft["id"], done
        first, *_, last = fake.creates()
        draft_id = json.loads(fake.requests[0].body)  # the draft's create
        assert first.json["draft"] is True and draft_id["draft"] is True
        assert last.json["content"] == [{"type": "draft_task", "draft_task": {"id": next(iter(fake.jobs))}}]
        assert "draft" not in last.json and last.json["model"] == first.json["model"]
        final_job = fake.jobs[list(fake.jobs)[-1]]
        assert final_job.data["draft_task_id"] == next(iter(fake.jobs)) and final_job.seconds == 6


async def test_remix_of_a_non_draft_is_refused(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "boat"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        status, answer = await gw.post(f"/v1/videos/{task['id']}/remix", key, json={"prompt": "boat"})
        assert status == 400 and answer["error"]["param"] == "video_id", answer
        assert len(fake.creates()) == 1


async def test_callback_is_a_hint(tmp_path):
    fake = FakeArk(polls_to_finish=50)
    async with fake.serve():
        cfg = config(channel("a", fake, poll_interval=30))
        cfg["server"] = {"public_url": "http://127.0.0.1:9"}
        async with run_gateway(cfg, tmp_path, extra_plugins={"seedance": plugin}) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "seedance-2.0", "prompt": "cb"})
            assert status == 200, task
            (create,) = fake.creates()
            callback = create.json["callback_url"]
            assert callback.startswith("http://127.0.0.1:9/")
            job = next(iter(fake.jobs.values()))
            fake.set_state(job, "succeeded")
            path = callback.removeprefix("http://127.0.0.1:9")
            status, _ = await gw.request("POST", path, None, json=fake.task_object(job))
            assert status == 200
            done = await gw.wait(task["id"], key, timeout=10)
            assert done["status"] == "completed", done
