"""End-to-end tests: the whole gateway over HTTP against the fake DashScope server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vidgate.testing import RunningGateway, run_gateway, tiny_mp4, tiny_png
from vidgate_dashscope.fake import FakeDashScope

KEY = "sk-fake-dashscope-0123"
MODELS = ("wan2.6-t2v", "wan2.6-i2v", "wan3.0-video", "happyhorse-1.1-t2v", "happyhorse-1.1-i2v")


def png_url(w: int = 640, h: int = 360) -> str:
    return "data:image/png;base64," + base64.b64encode(tiny_png(w, h)).decode()


def channel(name: str, url: str, key: str = KEY, **extra: Any) -> dict[str, Any]:
    options = {"poll_interval": 0.05, **extra.pop("options", {})}
    return {
        "name": name,
        "vendor": "dashscope",
        "base_url": url,
        "credentials": {"api_key": key},
        "options": options,
        **extra,
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["dashscope"]},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2, "allow_image_networks": ["127.0.0.0/8"]},
        "worker": {"max_backoff_seconds": 0.1, **extra.pop("worker", {})},
        "models": {m: {"price_per_second": 1.0} for m in MODELS},
        **extra,
    }


@contextlib.asynccontextmanager
async def env(
    tmp_path: Any, fake: FakeDashScope | None = None, **extra: Any
) -> AsyncIterator[tuple[RunningGateway, FakeDashScope]]:
    fake = fake or FakeDashScope()
    async with fake.serve():
        options = extra.pop("options", {})
        async with run_gateway(config(channel("a", fake.url, options=options), **extra), tmp_path) as gw:
            yield gw, fake


async def ledger(gw: RunningGateway, task_id: str) -> list[tuple[str, int]]:
    rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task_id)
    return [(r["kind"], r["amount"]) for r in rows]


async def test_text_to_video_sends_the_async_header_and_bills_the_vendors_usage(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={
                "model": "wan2.6-t2v",
                "prompt": "a red fox in snow",
                "seconds": 10,
                "size": "720x1280",
                "metadata": {"seed": 42, "shot_type": "multi", "negative_prompt": "blur", "watermark": False},
            },
        )
        assert status == 200, task
        assert task["seconds"] == "10" and task["size"] == "720x1280"
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == tiny_mp4()
        assert [k for k, _ in await ledger(gw, task["id"])] == ["charge"]
    (create,) = fake.creates()
    assert create.headers["x-dashscope-async"] == "enable"
    assert create.headers["authorization"] == f"Bearer {KEY}"
    assert create.json == {
        "model": "wan2.6-t2v",
        "input": {"prompt": "a red fox in snow", "negative_prompt": "blur"},
        "parameters": {"size": "720*1280", "duration": 10, "seed": 42, "shot_type": "multi", "watermark": False},
    }
    polls = fake.recorded("GET", "/api/v1/tasks/" + next(iter(fake.jobs)))
    assert polls and all("x-dashscope-async" not in r.headers for r in polls)


@pytest.mark.parametrize(
    ("model", "field"),
    [("wan2.6-i2v", "img_url"), ("happyhorse-1.1-i2v", "media"), ("wan3.0-video", "media")],
)
async def test_image_to_video_completes_with_the_first_frame(tmp_path, model, field):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        body = {"model": model, "prompt": "the picture comes alive", "image": png_url(640, 360), "size": "1280x720"}
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        assert task["size"] == "1280x720", task  # 16:9 image, 720P tier
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == tiny_mp4()
    (create,) = fake.creates()
    sent = create.json
    assert sent["parameters"] == {"resolution": "720P", "duration": 5}  # no ratio with a first frame
    if field == "img_url":
        assert sent["input"]["img_url"] == body["image"]
    else:
        assert sent["input"]["media"] == [{"type": "first_frame", "url": body["image"]}]
    (job,) = fake.jobs.values()
    assert job.size == "1280x720"


async def test_wan3_first_and_last_frame(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        first, last = png_url(360, 640), png_url(360, 640)
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "wan3.0-video", "prompt": "turn around", "images": [first, last]},
        )
        assert status == 200, task
        assert task["size"] == "1080x1920"
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    (create,) = fake.creates()
    assert create.json["input"]["media"] == [{"type": "first_frame", "url": first}, {"type": "last_frame", "url": last}]


async def test_happyhorse_text_to_video_uses_resolution_and_ratio(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "happyhorse-1.1-t2v", "prompt": "horses", "size": "9:16", "seconds": 12},
        )
        assert status == 200, task
        assert task["size"] == "1080x1920" and task["seconds"] == "12"
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    (create,) = fake.creates()
    assert create.json["parameters"] == {"resolution": "1080P", "ratio": "9:16", "duration": 12}


IMPOSSIBLE = [
    ({"model": "wan2.6-t2v", "seconds": 16}, "seconds"),
    ({"model": "happyhorse-1.1-t2v", "seconds": 2}, "seconds"),
    ({"model": "wan2.6-t2v", "size": "1000x1000"}, "size"),
    ({"model": "happyhorse-1.1-t2v", "size": "21:9"}, "size"),
    ({"model": "wan2.6-i2v", "image": png_url(), "size": "16:9"}, "size"),
    ({"model": "wan2.6-t2v", "metadata": {"shot_type": "many"}}, "metadata.shot_type"),
    ({"model": "wan2.6-t2v", "metadata": {"shot_type": "multi", "prompt_extend": False}}, "metadata.shot_type"),
    ({"model": "happyhorse-1.1-t2v", "metadata": {"negative_prompt": "blur"}}, "metadata.negative_prompt"),
    ({"model": "wan2.6-t2v", "metadata": {"seed": -1}}, "metadata.seed"),
    ({"model": "wan2.6-t2v", "metadata": {"model": "wan3.0-video"}}, "metadata.model"),
    ({"model": "wan2.6-t2v", "image": png_url()}, "image"),
    ({"model": "wan2.6-i2v", "images": [png_url(), png_url()]}, "images"),
    ({"model": "happyhorse-1.1-i2v"}, "image"),
]


async def test_impossible_parameters_are_400s_naming_the_field_with_no_vendor_call(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        for body, param in IMPOSSIBLE:
            status, err = await gw.post("/v1/video/generations", key, json={"prompt": "p", **body})
            assert status == 400, (body, err)
            assert err["error"]["param"] == param, (body, err)
    assert fake.creates() == []


async def test_the_charge_settles_to_the_seconds_dashscope_bills(tmp_path):
    fake = FakeDashScope()
    fake.billed_seconds = 8
    async with env(tmp_path, fake) as (gw, _):
        key = await gw.token()
        _, task = await gw.post(
            "/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "p", "seconds": 10}
        )
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        rows = await ledger(gw, task["id"])
        assert sum(a for _, a in rows) == 8_000_000, rows


async def test_output_filtered_fails_content_filtered_and_refunds(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "oops [filtered]"}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "content_filtered", done
        assert "inappropriate" in done["error"]["message"]
        rows = await ledger(gw, task["id"])
        assert sorted(k for k, _ in rows) == ["charge", "refund"] and sum(a for _, a in rows) == 0, rows


async def test_other_failures_are_vendor_failed(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "doomed [fail]"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "vendor_failed", done


async def test_rate_limit_is_retried_and_the_task_completes(tmp_path):
    fake = FakeDashScope()
    fake.fail_creates("Throttling.RateQuota", times=2, message="Requests rate limit exceeded, please try again later.")
    async with env(tmp_path, fake) as (gw, _):
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "patience"})
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.status for r in fake.creates()] == [429, 429, 200]


async def test_an_error_envelope_with_http_200_is_still_an_error(tmp_path):
    fake = FakeDashScope()
    fake.fail_creates("Throttling.RateQuota", message="Requests rate limit exceeded", status=200)
    async with env(tmp_path, fake) as (gw, _):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "p"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [(r.status, r.code) for r in fake.creates()] == [(200, "Throttling.RateQuota"), (200, None)]
    assert len(fake.jobs) == 1


@pytest.mark.parametrize("broken", ["bad-key", "Arrearage"])
async def test_bad_key_or_no_balance_moves_the_task_to_a_second_channel(tmp_path, broken):
    first, second = FakeDashScope(), FakeDashScope()
    if broken == "Arrearage":
        first.fail_creates("Arrearage", message="Access denied, please make sure your account is in good standing.")
    async with first.serve(), second.serve():
        bad_key = "sk-wrong" if broken == "bad-key" else KEY
        cfg = config(channel("ds-a", first.url, bad_key, priority=10), channel("ds-b", second.url, priority=0))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            attempts = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
            assert attempts == [("ds-a", "channel_error"), ("ds-b", "submitted")], attempts
    assert [r.status for r in first.creates()] == [401 if broken == "bad-key" else 400]
    assert [r.status for r in second.creates()] == [200]


async def test_a_task_the_vendor_forgot_fails_after_the_grace_period(tmp_path):
    grace = 0.6
    async with env(tmp_path, worker={"not_found_grace_seconds": grace}) as (gw, fake):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "lost [hold]"})
        await gw.wait(task["id"], key, until=("in_progress",))
        (job,) = fake.jobs.values()
        fake.forget(job)
        polls_before = len(fake.recorded("GET", f"/api/v1/tasks/{job.id}"))
        forgotten = asyncio.get_running_loop().time()
        done = await gw.wait(task["id"], key)
        waited = asyncio.get_running_loop().time() - forgotten
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "vendor_task_lost", done
        assert "no longer knows" in done["error"]["message"] and "UNKNOWN" in done["error"]["message"]
        rows = await ledger(gw, task["id"])
        assert sum(a for _, a in rows) == 0, rows
    unknown_polls = len(fake.recorded("GET", f"/api/v1/tasks/{job.id}")) - polls_before
    # While within the grace the UNKNOWN answers were tolerated, not fatal.
    assert unknown_polls >= 2, unknown_polls
    assert waited < grace + 5


async def test_cancel_while_pending_is_confirmed_and_fully_refunded(tmp_path):
    # A long poll interval keeps the task PENDING at DashScope when the cancel arrives.
    async with env(tmp_path, options={"poll_interval": 30}) as (gw, fake):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "wan2.6-t2v", "prompt": "never mind"})
        for _ in range(200):
            if fake.jobs:
                break
            await asyncio.sleep(0.02)
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        done = await gw.wait(task["id"], key)
        assert done["status"] == "cancelled", done
        rows = await ledger(gw, task["id"])
        assert sum(a for _, a in rows) == 0, rows
    (job,) = fake.jobs.values()
    (cancel,) = fake.recorded("POST", f"/api/v1/tasks/{job.id}/cancel")
    assert cancel.status == 200 and job.state == "cancelled"


async def test_region_option_picks_the_beijing_host(tmp_path):
    from vidgate_dashscope.client import base_url

    class Ctx:
        def __init__(self, base: str, options: dict[str, Any]) -> None:
            from vidgate import Channel

            self.channel = Channel("c", "dashscope", base_url=base, options=options)

    assert (
        base_url(Ctx("https://dashscope-intl.aliyuncs.com", {"region": "beijing"})) == "https://dashscope.aliyuncs.com"
    )  # type: ignore[arg-type]
    assert base_url(Ctx("https://ws1.ap-southeast-1.maas.aliyuncs.com", {"region": "cn"})).startswith("https://ws1.")  # type: ignore[arg-type]
    assert base_url(Ctx("https://dashscope-intl.aliyuncs.com", {})) == "https://dashscope-intl.aliyuncs.com"  # type: ignore[arg-type]


async def test_an_unknown_region_is_a_config_error(tmp_path):
    from vidgate.errors import ConfigError

    cfg = config({**channel("a", "http://127.0.0.1:1"), "options": {"region": "mars"}})
    with pytest.raises(ConfigError, match="options.region"):
        async with run_gateway(cfg, tmp_path):
            pass


async def test_wan3_reference_images_and_videos_go_up_as_reference_media(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        ref = png_url(512, 512)
        body = {
            "model": "wan3.0-video",
            "prompt": "Image 1 dances in Video 1",
            "size": "1:1",
            "input_reference": [ref, "https://cdn.example.com/clip.mp4"],
        }
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        assert task["size"] == "1440x1440"
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        status, err = await gw.post(
            "/v1/video/generations", key, json={**body, "image": png_url(), "input_reference": [ref]}
        )
        assert status == 400 and err["error"]["param"] == "input_reference[0]", err
    (create,) = fake.creates()
    assert create.json["input"]["media"] == [
        {"type": "reference_image", "url": ref},
        {"type": "reference_video", "url": "https://cdn.example.com/clip.mp4"},
    ]
    assert create.json["parameters"]["ratio"] == "1:1"
