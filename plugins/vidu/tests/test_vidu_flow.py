"""End-to-end tests: the whole gateway over HTTP against the fake Vidu server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vidgate import Channel
from vidgate.testing import RunningGateway, run_gateway, tiny_mp4, tiny_png
from vidgate_vidu import plugin
from vidgate_vidu.fake import FakeVidu

KEY = "vda_fake_vidu_key_0123"
MODELS = ("viduq2", "viduq1", "vidu2.0", "vidu1.5")


def png_url(w: int = 640, h: int = 360) -> str:
    return "data:image/png;base64," + base64.b64encode(tiny_png(w, h)).decode()


def channel(name: str, url: str, key: str = KEY, **extra: Any) -> dict[str, Any]:
    options = {"poll_interval": 0.05, **extra.pop("options", {})}
    return {
        "name": name,
        "vendor": "vidu",
        "base_url": url,
        "credentials": {"api_key": key},
        "options": options,
        **extra,
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["vidu"]},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2, "allow_image_networks": ["127.0.0.0/8"]},
        "worker": {"max_backoff_seconds": 0.1, **extra.pop("worker", {})},
        "models": {m: {"price_per_second": 1.0} for m in MODELS} | extra.pop("models", {}),
        **extra,
    }


@contextlib.asynccontextmanager
async def env(
    tmp_path: Any, fake: FakeVidu | None = None, **extra: Any
) -> AsyncIterator[tuple[RunningGateway, FakeVidu]]:
    fake = fake or FakeVidu()
    async with fake.serve():
        options = extra.pop("options", {})
        async with run_gateway(config(channel("a", fake.url, options=options), **extra), tmp_path) as gw:
            yield gw, fake


async def ledger(gw: RunningGateway, task_id: str) -> list[tuple[str, int]]:
    rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task_id)
    return [(r["kind"], r["amount"]) for r in rows]


async def test_text_to_video_wire_shape_and_credits_billing(tmp_path):
    prices = {"viduq2": {"price": "0.5 * credits"}}
    async with env(tmp_path, models=prices) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={
                "model": "viduq2",
                "prompt": "a red fox in snow",
                "seconds": 8,
                "size": "9:16",
                "metadata": {"movement_amplitude": "large", "bgm": True, "seed": 42, "resolution": "1080p"},
            },
        )
        assert status == 200, task
        assert task["seconds"] == "8" and task["size"] == "1080x1920"
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == tiny_mp4()
        status, thumb = await gw.get(f"/v1/videos/{task['id']}/content?variant=thumbnail", key, raw=True)
        assert status == 200 and thumb == tiny_png(64, 36)  # Vidu's cover_url, not the gateway's own
        # The fake bills 8 s x 5 credits at 1080p = 40 credits; price 0.5/credit.
        assert sum(a for _, a in await ledger(gw, task["id"])) == 20_000_000
    (create,) = fake.creates()
    assert create.path == "/ent/v2/text2video"
    assert create.headers["authorization"] == f"Token {KEY}"
    assert create.json == {
        "model": "viduq2",
        "prompt": "a red fox in snow",
        "duration": 8,
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "movement_amplitude": "large",
        "bgm": True,
        "seed": 42,
        "payload": task["id"],
    }
    (job,) = fake.jobs.values()
    assert fake.recorded("GET", f"/ent/v2/tasks/{job.id}/creations")


@pytest.mark.parametrize(
    ("model", "images", "mode"),
    [
        ("viduq2", {"image": png_url()}, "img2video"),
        ("vidu2.0", {"images": [png_url(), png_url()]}, "start-end2video"),
        ("viduq1", {"input_reference": [png_url(512, 512), png_url(512, 512)]}, "reference2video"),
    ],
)
async def test_image_modes_complete(tmp_path, model, images, mode):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": model, "prompt": "the picture comes alive", **images}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == tiny_mp4()
    (create,) = fake.creates()
    assert create.path == f"/ent/v2/{mode}"
    sent = [
        *([images["image"]] if "image" in images else []),
        *images.get("images", []),
        *images.get("input_reference", []),
    ]
    assert create.json["images"] == sent
    assert ("aspect_ratio" in create.json) == (mode == "reference2video")
    expected = {"viduq2": (5, "720p"), "vidu2.0": (4, "360p"), "viduq1": (5, "1080p")}[model]
    assert (create.json["duration"], create.json["resolution"]) == expected


IMPOSSIBLE = [
    ({"model": "viduq1", "seconds": 4}, "seconds"),
    ({"model": "vidu2.0", "seconds": 8, "image": png_url(), "size": "1920x1080"}, "size"),
    (
        {"model": "vidu2.0", "seconds": 8, "image": png_url(), "metadata": {"resolution": "1080p"}},
        "metadata.resolution",
    ),
    ({"model": "viduq2", "seconds": 10, "metadata": {"bgm": True}}, "metadata.bgm"),
    ({"model": "viduq2", "metadata": {"movement_amplitude": "huge"}}, "metadata.movement_amplitude"),
    ({"model": "viduq2", "size": "21:9"}, "size"),
    ({"model": "vidu2.0"}, "image"),
    ({"model": "viduq2", "images": [png_url(), png_url(), png_url()]}, "images"),
    ({"model": "viduq2", "image": png_url(), "input_reference": [png_url()]}, "image"),
    ({"model": "viduq2", "metadata": {"payload": "x"}}, "metadata.payload"),
    ({"model": "viduq2", "metadata": {"seed": "7"}}, "metadata.seed"),
]


async def test_impossible_parameters_are_400s_naming_the_field_with_no_vendor_call(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        for body, param in IMPOSSIBLE:
            status, err = await gw.post("/v1/video/generations", key, json={"prompt": "p", **body})
            assert status == 400, (body, err)
            assert err["error"]["param"] == param, (body, err)
    assert fake.creates() == []


async def test_output_filtered_fails_content_filtered_and_refunds(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "viduq2", "prompt": "oops [filtered]"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "content_filtered", done
        assert "CreationPolicyViolation" in done["error"]["message"]
        rows = await ledger(gw, task["id"])
        assert sorted(k for k, _ in rows) == ["charge", "refund"] and sum(a for _, a in rows) == 0, rows


async def test_other_failures_are_vendor_failed_with_the_err_code(tmp_path):
    async with env(tmp_path) as (gw, _):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "viduq2", "prompt": "doomed [fail]"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "vendor_failed", done
        assert "SystemError" in done["error"]["message"]


async def test_rate_limit_is_retried_and_the_task_completes(tmp_path):
    fake = FakeVidu()
    fake.fail_creates("TooManyRequests", times=2)
    async with env(tmp_path, fake) as (gw, _):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "viduq2", "prompt": "patience"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.status for r in fake.creates()] == [429, 429, 200]


@pytest.mark.parametrize("broken", ["bad-key", "CreditInsufficient"])
async def test_bad_key_or_no_credits_moves_the_task_to_a_second_channel(tmp_path, broken):
    first, second = FakeVidu(), FakeVidu()
    if broken == "CreditInsufficient":
        first.fail_creates("CreditInsufficient", message="credit insufficient")
    async with first.serve(), second.serve():
        bad_key = "vda_wrong" if broken == "bad-key" else KEY
        cfg = config(channel("vidu-a", first.url, bad_key, priority=10), channel("vidu-b", second.url, priority=0))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "viduq2", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            attempts = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
            assert attempts == [("vidu-a", "channel_error"), ("vidu-b", "submitted")], attempts
    assert [r.status for r in first.creates()] == [401 if broken == "bad-key" else 403]


async def test_cancel_while_queued_is_confirmed_and_fully_refunded(tmp_path):
    async with env(tmp_path, options={"poll_interval": 30}) as (gw, fake):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "viduq2", "prompt": "never mind"})
        for _ in range(200):
            if fake.jobs:
                break
            await asyncio.sleep(0.02)
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        done = await gw.wait(task["id"], key)
        assert done["status"] == "cancelled", done
        assert sum(a for _, a in await ledger(gw, task["id"])) == 0
    (job,) = fake.jobs.values()
    (cancel,) = fake.recorded("POST", f"/ent/v2/tasks/{job.id}/cancel")
    assert cancel.status == 200 and cancel.json == {"id": job.id} and job.state == "cancelled"


async def test_a_task_vidu_no_longer_knows_fails_after_the_grace_period(tmp_path):
    async with env(tmp_path, worker={"not_found_grace_seconds": 0.4}) as (gw, fake):
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "viduq2", "prompt": "lost [hold]"})
        await gw.wait(task["id"], key, until=("in_progress",))
        fake.jobs.clear()
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "vendor_task_lost", done


def test_callbacks_are_hints_naming_the_task():
    ch = Channel("c", "vidu")
    assert plugin.parse_callback(json.dumps({"id": "8001", "state": "success"}).encode(), {}, ch) == "8001"
    assert plugin.parse_callback(json.dumps({"task_id": 8002}).encode(), {}, ch) == "8002"
    assert plugin.parse_callback(b"[[[", {}, ch) is None
    assert plugin.parse_callback(json.dumps({"state": "success"}).encode(), {}, ch) is None


async def test_region_option_and_explicit_base_url(tmp_path):
    from vidgate_vidu.client import base_url

    class Ctx:
        def __init__(self, base: str, options: dict[str, Any]) -> None:
            self.channel = Channel("c", "vidu", base_url=base, options=options)

    assert base_url(Ctx("https://api.vidu.cn", {"region": "intl"})) == "https://api.vidu.com"  # type: ignore[arg-type]
    assert base_url(Ctx("https://proxy.example", {"region": "intl"})) == "https://proxy.example"  # type: ignore[arg-type]
    assert base_url(Ctx("https://api.vidu.cn", {})) == "https://api.vidu.cn"  # type: ignore[arg-type]
