"""End-to-end: the whole gateway over HTTP against the fake MiniMax server (V1 and V2)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vidgate.testing import RunningGateway, run_gateway, serve_app, tiny_mp4, tiny_png
from vidgate_minimax import plugin
from vidgate_minimax.fake import FakeMiniMax

KEY = "mm-test-key-0123456789"
PNG = "data:image/png;base64," + base64.b64encode(tiny_png(640, 360)).decode()
PORTRAIT = "data:image/png;base64," + base64.b64encode(tiny_png(360, 640)).decode()
MODELS = (
    "MiniMax-Hailuo-2.3",
    "MiniMax-Hailuo-2.3-Fast",
    "MiniMax-Hailuo-02",
    "S2V-01",
    "MiniMax-H3",
    "MiniMax-H3-Max",
)


def channel(name: str, url: str, key: str = KEY, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "minimax",
        "base_url": url,
        "credentials": {"api_key": key},
        "options": {"poll_interval": 0.05},
        **extra,
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "plugins": {"enabled": []},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2, "allow_image_networks": ["127.0.0.0/8"]},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {m: {"price_per_second": 1.0} for m in MODELS},
        **extra,
    }


@contextlib.asynccontextmanager
async def env(tmp_path: Any, fake: FakeMiniMax | None = None, **cfg: Any) -> AsyncIterator[tuple[Any, FakeMiniMax]]:
    fake = fake or FakeMiniMax(secret=KEY)
    async with fake.serve():
        async with run_gateway(
            config(channel("a", fake.url), **cfg), tmp_path, extra_plugins={"minimax": plugin}
        ) as gw:
            yield gw, fake


def creates(fake: FakeMiniMax, api: str = "v1") -> list[Any]:
    return fake.recorded("POST", f"/{api}/video_generation")


async def submit(gw: RunningGateway, key: str, **body: Any) -> tuple[int, Any]:
    return await gw.post("/v1/video/generations", key, json={"prompt": "a fox", **body})


async def ledger(gw: RunningGateway, task_id: str) -> dict[str, int]:
    rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task_id)
    return {r["kind"]: r["amount"] for r in rows}


async def test_v1_text_to_video_wire_shape_and_file_retrieve(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        meta = {"prompt_optimizer": False, "fast_pretreatment": True, "watermark": True}
        status, task = await submit(gw, key, model="MiniMax-Hailuo-2.3", seconds=10, metadata=meta)
        assert status == 200, task
        assert (task["seconds"], task["size"]) == ("10", "1366x768")
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == tiny_mp4()
        (create,) = creates(fake)
        assert create.headers["authorization"] == f"Bearer {KEY}"
        assert create.json == {
            "model": "MiniMax-Hailuo-2.3",
            "prompt": "a fox",
            "duration": 10,
            "resolution": "768P",
            "prompt_optimizer": False,
            "fast_pretreatment": True,
            "aigc_watermark": True,
        }
        queries = fake.recorded("GET", "/v1/query/video_generation")
        assert queries and all(q.query == {"task_id": create_task_id(fake)} for q in queries)
        (retrieve,) = fake.recorded("GET", "/v1/files/retrieve")
        assert retrieve.query == {"file_id": create_task_id(fake)}
        (download,) = fake.recorded("GET", re.compile("^/_fake/results/"))
        assert "authorization" not in download.headers  # the download_url needs no key


def create_task_id(fake: FakeMiniMax) -> str:
    (job,) = fake.jobs.values()
    return job.id


async def test_v1_first_and_last_frame_on_hailuo_02(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, model="MiniMax-Hailuo-02", images=[PORTRAIT, PNG], size="512x912")
        assert status == 200, task
        assert task["size"] == "512x910"  # the first frame's shape at 512P
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        (create,) = creates(fake)
        assert create.json["first_frame_image"] == PORTRAIT and create.json["last_frame_image"] == PNG
        assert create.json["resolution"] == "512P"


async def test_v1_image_only_model_and_subject_reference(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, body = await submit(gw, key, model="MiniMax-Hailuo-2.3-Fast")
        assert status == 400 and body["error"]["param"] == "image", body
        status, task = await submit(gw, key, model="MiniMax-Hailuo-2.3-Fast", image=PNG)
        assert status == 200, task
        status, s2v = await submit(gw, key, model="S2V-01", image=PNG)
        assert status == 200, s2v
        for t in (task, s2v):
            assert (await gw.wait(t["id"], key))["status"] == "completed"
        fast, subject = creates(fake)
        assert fast.json["first_frame_image"] == PNG and "subject_reference" not in fast.json
        assert subject.json["subject_reference"] == [{"type": "character", "image": [PNG]}]
        assert "first_frame_image" not in subject.json


IMPOSSIBLE = [
    ({"model": "MiniMax-Hailuo-2.3", "seconds": 10, "size": "1920x1080"}, "seconds"),
    ({"model": "MiniMax-Hailuo-2.3", "seconds": 5}, "seconds"),
    ({"model": "MiniMax-Hailuo-2.3", "size": "720x1280"}, "size"),
    ({"model": "MiniMax-Hailuo-2.3", "size": "9:16"}, "size"),
    ({"model": "MiniMax-Hailuo-2.3", "metadata": {"resolution": "512P"}}, "metadata.resolution"),
    ({"model": "MiniMax-Hailuo-2.3", "metadata": {"prompt_optimizer": "yes"}}, "metadata.prompt_optimizer"),
    ({"model": "MiniMax-Hailuo-2.3", "metadata": {"duration": 10}}, "metadata.duration"),
    ({"model": "MiniMax-Hailuo-2.3", "metadata": {"first_frame_image": PNG}}, "metadata.first_frame_image"),
    ({"model": "MiniMax-Hailuo-2.3", "images": [PNG, PNG]}, "images[1]"),
    ({"model": "MiniMax-H3", "seconds": 6}, "seconds"),
    ({"model": "MiniMax-H3", "size": "5:4"}, "size"),
    ({"model": "MiniMax-H3", "metadata": {"fast_pretreatment": True}}, "metadata.fast_pretreatment"),
    ({"model": "MiniMax-H3", "metadata": {"extra": "x"}}, "metadata.extra"),
    ({"model": "MiniMax-H3", "metadata": {"content": []}}, "metadata.content"),
    ({"model": "MiniMax-H3", "images": [PNG, PNG, PNG]}, "images[2]"),
]


async def test_impossible_parameters_are_400_naming_the_field_without_a_vendor_call(tmp_path):
    # One gateway for every case: each case is a fresh request, and none may reach MiniMax.
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        for body, param in IMPOSSIBLE:
            status, answer = await submit(gw, key, **body)
            assert status == 400 and answer["error"]["param"] == param, (body, answer)
        assert fake.requests == []


@pytest.mark.parametrize("model", ["MiniMax-Hailuo-2.3", "MiniMax-H3"])
async def test_output_filtered_fails_content_filtered_and_is_refunded(tmp_path, model):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token(name="payer", quota=100)
        status, task = await submit(gw, key, model=model, prompt="a scene [filtered]")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "content_filtered", done
        assert "sensitive" in done["error"]["message"]
        rows = await ledger(gw, task["id"])
        assert rows["charge"] > 0 and rows["charge"] + rows["refund"] == 0, rows
        assert (await gw.gateway.store.token("payer")).used == 0


@pytest.mark.parametrize(("code", "api", "model"), [(1002, "v1", "MiniMax-Hailuo-2.3"), (1002, "v2", "MiniMax-H3")])
async def test_rate_limit_is_retried_and_completes(tmp_path, code, api, model):
    async with env(tmp_path) as (gw, fake):
        fake.refuse(code, "rate limit exceeded", times=2)
        key = await gw.token()
        status, task = await submit(gw, key, model=model)
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert [c.code or 0 for c in creates(fake, api)] == [code, code, 0]
        attempts = await gw.gateway.store.attempts(task["id"])
        assert [a.outcome for a in attempts] == ["rate_limited", "rate_limited", "submitted"]


@pytest.mark.parametrize("model", ["MiniMax-Hailuo-2.3", "MiniMax-H3"])
async def test_bad_key_moves_the_task_to_a_second_channel(tmp_path, model):
    fake_a, fake_b = FakeMiniMax(secret=KEY), FakeMiniMax(secret=KEY)
    async with fake_a.serve(), fake_b.serve():
        cfg = config(channel("a", fake_a.url, key="wrong-key", priority=10), channel("b", fake_b.url, priority=1))
        async with run_gateway(cfg, tmp_path, extra_plugins={"minimax": plugin}) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, model=model)
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            api = "v2" if model == "MiniMax-H3" else "v1"
            assert len(creates(fake_a, api)) == 1 and fake_a.jobs == {}  # refused, not retried there
            assert len(fake_b.jobs) == 1
            attempts = await gw.gateway.store.attempts(task["id"])
            assert [(a.channel, a.outcome) for a in attempts] == [("a", "channel_error"), ("b", "submitted")]
            # The channel is out of rotation: the next task goes straight to b.
            status, second = await submit(gw, key, model=model, prompt="second")
            assert status == 200 and len(creates(fake_a, api)) == 1


async def test_no_balance_fails_over_and_sensitive_input_is_400(tmp_path):
    fake_a, fake_b = FakeMiniMax(secret=KEY), FakeMiniMax(secret=KEY)
    async with fake_a.serve(), fake_b.serve():
        cfg = config(channel("a", fake_a.url, priority=10), channel("b", fake_b.url, priority=1))
        async with run_gateway(cfg, tmp_path, extra_plugins={"minimax": plugin}) as gw:
            key = await gw.token()
            fake_a.refuse(1008, "insufficient balance")
            status, task = await submit(gw, key, model="MiniMax-Hailuo-02")
            assert status == 200 and len(fake_b.jobs) == 1, task
            attempts = await gw.gateway.store.attempts(task["id"])
            assert "1008" in attempts[0].detail
            fake_b.refuse(1026, "input new_sensitive")
            status, body = await submit(gw, key, model="MiniMax-Hailuo-02", prompt="other")
            assert status == 400 and "sensitive" in body["error"]["message"], body
            assert len(creates(fake_b)) == 2  # refused once, never tried again


async def test_v2_wire_shape_frames_references_and_metadata(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        refs = [PNG, "https://cdn.example.com/ref.mp4", "https://cdn.example.com/voice.mp3"]
        body = {"model": "MiniMax-H3-Max", "seconds": 10, "size": "9:16", "images": [PORTRAIT], "input_reference": refs}
        status, task = await submit(gw, key, **body, metadata={"watermark": False, "extra": {"seed": 7}})
        assert status == 200, task
        assert (task["seconds"], task["size"]) == ("10", "768x1366")
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        (create,) = creates(fake, "v2")
        assert create.json == {
            "model": "MiniMax-H3-Max",
            "resolution": "768P",
            "duration": 10,
            "ratio": "9:16",
            "aigc_watermark": False,
            "extra": {"seed": 7},
            "content": [
                {"type": "text", "text": "a fox"},
                {"type": "image_url", "role": "first_frame", "image_url": {"url": PORTRAIT}},
                {"type": "image_url", "role": "reference_image", "image_url": {"url": PNG}},
                {"type": "video_url", "role": "reference_video", "video_url": {"url": refs[1]}},
                {"type": "audio_url", "role": "reference_audio", "audio_url": {"url": refs[2]}},
            ],
        }
        assert fake.recorded("GET", re.compile("^/v2/query/video_generation"))
        assert not fake.recorded("GET", re.compile("^/v1/"))  # nothing of V1 for an H3 task


async def test_v2_usage_seconds_settle_the_charge(tmp_path):
    fake = FakeMiniMax(secret=KEY)
    async with env(tmp_path, fake) as (gw, _):
        key = await gw.token()
        status, task = await submit(gw, key, model="MiniMax-H3", prompt="short one [hold]")
        assert status == 200, task
        await gw.wait(task["id"], key, until=("in_progress",))
        (job,) = fake.jobs.values()
        job.seconds = 4  # MiniMax reports output_seconds 4 for a 5 s request
        fake.release()
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        rows = await ledger(gw, task["id"])
        assert rows["charge"] == 5_000_000 and rows["settle"] == -1_000_000, rows


async def test_v2_cancel_deletes_and_refunds_v1_cancel_is_refused(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        _, v2 = await submit(gw, key, model="MiniMax-H3", prompt="long [hold]")
        _, v1 = await submit(gw, key, model="MiniMax-Hailuo-2.3", prompt="older [hold]")
        for t in (v2, v1):
            await gw.wait(t["id"], key, until=("in_progress",))
            status, answer = await gw.post(f"/v1/video/generations/{t['id']}/cancel", key)
            assert status == 200, answer
            assert (await gw.wait(t["id"], key))["status"] == "cancelled"
        (delete,) = fake.recorded("DELETE", re.compile("^/v2/video_generation/"))
        v2_job = next(j for j in fake.jobs.values() if "model" in j.data)
        assert delete.path.endswith(v2_job.id) and v2_job.state == "cancelled"
        assert sum((await ledger(gw, v2["id"])).values()) == 0  # confirmed before finishing: full refund
        attempts = [a.outcome for a in await gw.gateway.store.attempts(v1["id"])]
        assert "cancel_refused" in attempts


async def test_v2_tasks_are_batch_polled_through_the_list(tmp_path):
    async with env(tmp_path, FakeMiniMax(secret=KEY, polls_to_finish=3)) as (gw, fake):
        key = await gw.token()
        tasks = [(await submit(gw, key, model="MiniMax-H3", prompt=f"clip {i}"))[1] for i in range(6)]
        for t in tasks:
            assert (await gw.wait(t["id"], key))["status"] == "completed"
        lists = fake.recorded("GET", "/v2/query/video_generation")
        singles = fake.recorded("GET", re.compile("^/v2/query/video_generation/"))
        assert lists and lists[0].query == {"page_size": "50", "page_num": "1"}
        assert len(singles) < len(tasks), (len(lists), len(singles))


async def test_base_url_with_v1_suffix_is_stripped(tmp_path):
    fake = FakeMiniMax(secret=KEY)
    async with fake.serve():
        cfg = config(channel("a", fake.url + "/v1"))
        async with run_gateway(cfg, tmp_path, extra_plugins={"minimax": plugin}) as gw:
            key = await gw.token()
            _, task = await submit(gw, key, model="MiniMax-H3")
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert [r.path for r in creates(fake, "v2")] == ["/v2/video_generation"]


@pytest.mark.parametrize("model", ["MiniMax-Hailuo-2.3", "MiniMax-H3"])
async def test_public_url_channel_completes_the_challenge_and_callbacks_poll(tmp_path, model):
    """MiniMax POSTs {"challenge"} to callback_url and wants it echoed; the relay stands
    in for the operator's public URL and forwards to the gateway's callback route."""
    target: dict[str, str] = {}

    async def relay(request: Request) -> Response:
        path = request.url.path.removeprefix("/public")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                target["url"] + path, data=await request.body(), headers={"Content-Type": "application/json"}
            ) as resp,
        ):
            return Response(await resp.read(), status_code=resp.status, media_type="application/json")

    fake = FakeMiniMax(secret=KEY, polls_to_finish=1)
    async with fake.serve(), serve_app(Starlette(routes=[Route("/{p:path}", relay, methods=["POST"])])) as public:
        ch = channel("a", fake.url, options={"poll_interval": 60})
        cfg = config(ch, server={"public_url": public.url + "/public"})
        async with run_gateway(cfg, tmp_path, extra_plugins={"minimax": plugin}) as gw:
            target["url"] = gw.url
            key = await gw.token()
            status, task = await submit(gw, key, model=model)
            assert status == 200, task
            (create,) = creates(fake, "v2" if model == "MiniMax-H3" else "v1")
            assert create.json["callback_url"] == f"{public.url}/public/v1/callbacks/a"
            for _ in range(200):
                if fake.callbacks_sent:
                    break
                await asyncio.sleep(0.02)
            ((url, challenge, answer),) = fake.callbacks_sent
            assert answer == challenge and set(challenge) == {"challenge"}  # echoed: verified
            (job,) = fake.jobs.values()
            assert job.callback_url == url
            fake.set_state(job, "succeeded")  # MiniMax calls back; the gateway polls at once
            done = await gw.wait(task["id"], key, timeout=10)
            assert done["status"] == "completed"  # long before the 60 s poll interval
            for _ in range(200):
                if len(fake.callbacks_sent) == 2:
                    break
                await asyncio.sleep(0.02)
            assert fake.callbacks_sent[1][1]["task_id"] == job.id and fake.callbacks_sent[1][2] == 200
