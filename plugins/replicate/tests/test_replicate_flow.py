"""End-to-end tests: the whole gateway over HTTP against the fake Replicate."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from vidgate.errors import ConfigError
from vidgate.testing import RunningGateway, run_gateway, serve_app, tiny_png
from vidgate_replicate import plugin
from vidgate_replicate.fake import FakeReplicate

PNG = tiny_png(64, 64)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
PRICED = ("seedance-1-pro", "kling-v2.1", "hailuo-02", "my-seedance", "seedance-pinned")


def channel(name: str, fake: FakeReplicate, **extra: Any) -> dict[str, Any]:
    options = {"poll_interval": 0.05, **extra.pop("options", {})}
    return {
        "name": name,
        "vendor": "replicate",
        "base_url": fake.url,
        "credentials": {"api_key": fake.secret, **extra.pop("credentials", {})},
        "options": options,
        **extra,
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "plugins": {"enabled": []},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {m: {"price_per_second": 1.0} for m in PRICED},
    }
    cfg.update(extra)
    return cfg


@contextlib.asynccontextmanager
async def env(
    tmp_path, fake: FakeReplicate | None = None, **channel_extra: Any
) -> AsyncIterator[tuple[RunningGateway, FakeReplicate]]:
    fake = fake or FakeReplicate()
    async with fake.serve():
        cfg = config(channel("a", fake, **channel_extra))
        async with run_gateway(cfg, tmp_path, extra_plugins={"replicate": plugin}) as gw:
            yield gw, fake


async def submit(gw: RunningGateway, key: str, **body: Any) -> tuple[int, Any]:
    return await gw.post("/v1/video/generations", key, json={"model": "seedance-1-pro", **body})


async def test_text_to_video_wire_shape_and_usage(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="a red fox", seconds=10, size="854x480")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert done["seconds"] == "10" and done["size"] == "854x480"
        assert done["usage"]["compute_seconds"] == 12.5  # metrics.predict_time
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == fake.result_bytes(next(iter(fake.jobs.values())))
        (create,) = fake.creates()
        assert create.path == "/v1/models/bytedance/seedance-1-pro/predictions"
        assert create.headers["authorization"] == f"Bearer {fake.secret}"
        assert "prefer" not in create.headers  # the worker polls; no held connection
        assert create.json == {
            "input": {"prompt": "a red fox", "duration": 10, "aspect_ratio": "16:9", "resolution": "480p"}
        }
        (pid,) = fake.jobs
        assert {r.path for r in fake.recorded("GET", re.compile("^/v1/predictions/"))} == {f"/v1/predictions/{pid}"}


async def test_image_to_video_with_first_and_last_frame(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        last = tiny_png(80, 80)
        images = [DATA_URL, "data:image/png;base64," + base64.b64encode(last).decode()]
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": "kling-v2.1", "prompt": "it moves", "images": images}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        (create,) = fake.creates()
        assert create.path == "/v1/models/kwaivgi/kling-v2.1/predictions"
        inp = create.json["input"]
        assert inp["start_image"] == DATA_URL and base64.b64decode(inp["end_image"].split(",")[1]) == last
        assert inp["duration"] == 5 and "aspect_ratio" not in inp
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert content == fake.result_bytes(next(iter(fake.jobs.values())))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seconds": 7}, "seconds"),
        ({"size": "2:1"}, "size"),
        ({"size": "1280x720"}, "size"),  # seedance on Replicate: 480p or 1080p
        ({"metadata": {"resolution": "720p"}}, "metadata.resolution"),
        ({"model": "kling-v2.1"}, "image"),  # image to video only
        ({"model": "hailuo-02", "size": "16:9"}, "size"),  # no aspect ratio input
    ],
)
async def test_impossible_parameters_are_400_without_a_vendor_call(tmp_path, body, param):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, err = await submit(gw, key, prompt="nope", **body)
        assert status == 400 and err["error"]["param"] == param, err
        assert fake.requests == []


async def test_vendor_422_is_a_400_naming_the_input(tmp_path):
    async with env(tmp_path, model_map={"my-seedance": "bytedance/seedance-1-pro"}) as (gw, fake):
        key = await gw.token()
        status, err = await gw.post(
            "/v1/video/generations", key, json={"model": "my-seedance", "prompt": "x", "seconds": 7}
        )
        assert status == 400 and err["error"]["param"] == "seconds", err  # Replicate named input.duration
        assert "must be one of" in err["error"]["message"] and fake.creates()[0].status == 422


async def test_vendor_failure_fails_with_reason_and_refunds(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="doomed [fail]")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and "could not render" in done["error"]["message"], done
        rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task["id"])
        assert sum(r["amount"] for r in rows) == 0 and {r["kind"] for r in rows} == {"charge", "refund"}, rows


async def test_rate_limit_is_retried_and_completes(tmp_path):
    async with env(tmp_path) as (gw, fake):
        fake.inject("create", "429", times=2)
        key = await gw.token()
        status, task = await submit(gw, key, prompt="patience")
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert [r.status for r in fake.creates()] == [429, 429, 201]


async def test_bad_key_fails_over_to_a_second_channel(tmp_path):
    fake = FakeReplicate()
    async with fake.serve():
        bad = channel("bad", fake, priority=10)
        bad["credentials"] = {"api_key": "r8_wrong_key_0000"}
        cfg = config(bad, channel("good", fake))
        async with run_gateway(cfg, tmp_path, extra_plugins={"replicate": plugin}) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, prompt="two accounts")
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert [r.status for r in fake.creates()] == [401, 201]


async def test_cancel_mid_way(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="a long one [hold]")
        await gw.wait(task["id"], key, until=("in_progress",))
        (pid,) = fake.jobs
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        assert (await gw.wait(task["id"], key))["status"] == "cancelled"
        (post,) = fake.recorded("POST", f"/v1/predictions/{pid}/cancel")
        assert post.status == 200 and fake.jobs[pid].data["canceled"]


async def test_canceled_and_aborted_from_the_vendor(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        _, one = await submit(gw, key, prompt="console cancel [hold]")
        _, two = await submit(gw, key, prompt="deadline [hold]")
        await gw.wait(two["id"], key, until=("in_progress",))
        jobs = {j.prompt: j for j in fake.jobs.values()}
        jobs["console cancel [hold]"].data["canceled"] = True
        fake.set_state(jobs["deadline [hold]"], "failed")  # then make it read "aborted"
        fake.status_words = {**fake.status_words, "failed": "aborted"}
        assert (await gw.wait(one["id"], key))["status"] == "cancelled"
        done = await gw.wait(two["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "vendor_aborted", done


async def test_version_and_config_only_models(tmp_path):
    from vidgate_replicate.fake import MODELS

    version = MODELS["bytedance/seedance-1-pro"].version
    options = {"models": {"my-seedance": {"model": "bytedance/seedance-1-pro", "durations": [5, 10]}}}
    model_map = {"seedance-pinned": f"bytedance/seedance-1-pro:{version}"}
    async with env(tmp_path, options=options, model_map=model_map) as (gw, fake):
        key = await gw.token()
        for name in ("my-seedance", "seedance-pinned"):
            status, task = await gw.post("/v1/video/generations", key, json={"model": name, "prompt": name})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
        first, second = fake.creates()
        assert first.path == "/v1/models/bytedance/seedance-1-pro/predictions"
        assert first.json["input"] == {"prompt": "my-seedance", "duration": 5}
        assert second.path == "/v1/predictions" and second.json == {
            "version": version,
            "input": {"prompt": "seedance-pinned"},
        }
        status, err = await gw.post(
            "/v1/video/generations", key, json={"model": "my-seedance", "prompt": "x", "seconds": 6}
        )
        assert status == 400 and err["error"]["param"] == "seconds"


async def test_a_bad_config_model_stops_the_gateway_naming_the_key(tmp_path):
    fake = FakeReplicate()
    cfg = config(
        channel("a", fake, options={"models": {"x": {"model": "a/b", "durations": [5], "default_duration": 6}}})
    )
    with pytest.raises(ConfigError) as info:
        async with run_gateway(cfg, tmp_path, extra_plugins={"replicate": plugin}):
            pass
    assert "channels[0].options.models.x.default_duration" in str(info.value)


@contextlib.asynccontextmanager
async def webhook_env(
    tmp_path,
) -> AsyncIterator[tuple[RunningGateway, FakeReplicate, list[tuple[str, bytes, dict[str, str]]]]]:
    received: list[tuple[str, bytes, dict[str, str]]] = []

    async def receiver(request):
        received.append((request.url.path, await request.body(), dict(request.headers)))
        return JSONResponse({"ok": True})

    relay = Starlette(routes=[Route("/{path:path}", receiver, methods=["POST"])])
    fake = FakeReplicate()
    async with fake.serve(), serve_app(relay) as public:
        ch = channel("a", fake, options={"poll_interval": 60}, credentials={"webhook_secret": fake.webhook_secret})
        async with run_gateway(
            config(ch, server={"public_url": public.url}), tmp_path, extra_plugins={"replicate": plugin}
        ) as gw:
            yield gw, fake, received


async def _relayed(received: list[Any]) -> tuple[str, bytes, dict[str, str]]:
    for _ in range(250):
        if received:
            return received[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError("the fake sent no webhook")


def _webhook_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("webhook-")} | {"Content-Type": "application/json"}


async def test_signed_webhook_makes_the_task_due_at_once(tmp_path):
    async with webhook_env(tmp_path) as (gw, fake, received):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="hooked")
        assert status == 200, task
        (create,) = fake.creates()
        assert create.json["webhook"].endswith("/v1/callbacks/a")
        assert create.json["webhook_events_filter"] == ["start", "completed"]
        fake.set_state(next(iter(fake.jobs.values())), "succeeded")
        path, body, headers = await _relayed(received)
        started = time.monotonic()
        status, _ = await gw.post(path, data=body, headers=_webhook_headers(headers))
        assert status == 200
        done = await gw.wait(task["id"], key, timeout=10)
        assert done["status"] == "completed" and time.monotonic() - started < 10  # the poll interval is 60 s
        assert len(fake.recorded("GET", re.compile("^/v1/predictions/"))) == 1


async def test_forged_webhook_is_refused_and_polls_nothing(tmp_path):
    async with webhook_env(tmp_path) as (gw, fake, received):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="forged")
        job = next(iter(fake.jobs.values()))
        fake.set_state(job, "succeeded")
        path, body, headers = await _relayed(received)
        forged = dict(headers)
        forged["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        status, _ = await gw.post(path, data=body, headers=_webhook_headers(forged))
        assert status == 401
        other = fake.send_signed_webhook(path, job, secret="whsec_" + base64.b64encode(b"k" * 32).decode())
        status, _ = await gw.post(path, data=other["body"].encode(), headers=_webhook_headers(other))
        assert status == 401
        await asyncio.sleep(0.3)  # many worker ticks: a wrongly accepted hint would have polled
        assert fake.recorded("GET", re.compile("^/v1/predictions/")) == []
        _, shown = await gw.get(f"/v1/video/generations/{task['id']}", key)
        assert shown["status"] == "queued"
        assert json.loads(body)["id"] == job.id
