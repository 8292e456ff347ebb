"""End-to-end tests: the whole gateway over HTTP against the fake fal queue."""

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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from vidgate.errors import ConfigError
from vidgate.testing import RunningGateway, run_gateway, serve_app, tiny_png
from vidgate_fal import plugin
from vidgate_fal.fake import FakeFal

KLING_T2V = "/fal-ai/kling-video/v2.1/master/text-to-video"
PNG = tiny_png(64, 64)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def channel(name: str, fake: FakeFal, **extra: Any) -> dict[str, Any]:
    options = {"poll_interval": 0.05, **extra.pop("options", {})}
    return {
        "name": name,
        "vendor": "fal",
        "base_url": fake.url,
        "credentials": {"api_key": fake.secret},
        "options": options,
        **extra,
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "plugins": {"enabled": []},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2, "allow_image_networks": ["127.0.0.0/8"]},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {m: {"price_per_second": 1.0} for m in ("kling-2.1-master", "seedance-1-pro", "pika-2.2")},
    }
    cfg.update(extra)
    return cfg


@contextlib.asynccontextmanager
async def env(
    tmp_path, fake: FakeFal | None = None, **channel_extra: Any
) -> AsyncIterator[tuple[RunningGateway, FakeFal]]:
    fake = fake or FakeFal()
    async with fake.serve():
        async with run_gateway(
            config(channel("a", fake, **channel_extra)), tmp_path, extra_plugins={"fal": plugin}
        ) as gw:
            yield gw, fake


async def submit(gw: RunningGateway, key: str, **body: Any) -> tuple[int, Any]:
    return await gw.post("/v1/video/generations", key, json={"model": "kling-2.1-master", **body})


async def test_text_to_video_wire_shape(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="a red fox", seconds=10, size="9:16")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert done["seconds"] == "10" and done["size"] == "1080x1920"
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and content == fake.result_bytes(next(iter(fake.jobs.values())))

        (create,) = fake.creates()
        assert create.path == KLING_T2V and create.headers["authorization"] == f"Key {fake.secret}"
        assert create.json == {"prompt": "a red fox", "duration": "10", "aspect_ratio": "9:16"}
        (rid,) = fake.jobs
        # Status and result live under the app's owner/name root, not its subpath.
        polls = fake.recorded("GET", re.compile("/requests/"))
        assert {r.path for r in polls} == {
            f"/fal-ai/kling-video/requests/{rid}/status",
            f"/fal-ai/kling-video/requests/{rid}",
        }
        assert all(r.headers["authorization"] == f"Key {fake.secret}" for r in polls)


async def test_image_to_video_with_last_frame(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        last = tiny_png(80, 80)
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={
                "model": "seedance-1-pro",
                "prompt": "the picture moves",
                "images": [DATA_URL, "data:image/png;base64," + base64.b64encode(last).decode()],
                "size": "1280x720",
            },
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        (create,) = fake.creates()
        assert create.path == "/fal-ai/bytedance/seedance/v1/pro/image-to-video"
        body = create.json
        assert body["image_url"] == DATA_URL and base64.b64decode(body["end_image_url"].split(",")[1]) == last
        assert body["resolution"] == "720p" and body["duration"] == "5" and body["aspect_ratio"] == "16:9"
        assert done["size"] == "1280x720"
        status, content = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert content == fake.result_bytes(next(iter(fake.jobs.values())))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seconds": 7}, "seconds"),
        ({"size": "4:3"}, "size"),
        ({"size": "3840x2160", "model": "seedance-1-pro"}, "size"),
        ({"metadata": {"duration": "10"}}, "metadata.duration"),
        ({"images": [DATA_URL, DATA_URL]}, "images[1]"),  # kling master has no last frame
        ({"image": DATA_URL, "model": "kling-2.1-master", "size": "9:16", "seconds": 15}, "seconds"),
    ],
)
async def test_impossible_parameters_are_400_without_a_vendor_call(tmp_path, body, param):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, err = await submit(gw, key, prompt="nope", **body)
        assert status == 400 and err["error"]["param"] == param, err
        assert fake.requests == []


@pytest.mark.parametrize("error_in_status", [True, False])
async def test_vendor_failure_fails_with_reason_and_refunds(tmp_path, error_in_status):
    async with env(tmp_path, FakeFal(error_in_status=error_in_status)) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="doomed [fail]")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed", done
        assert "could not render" in done["error"]["message"], done
        rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task["id"])
        assert sum(r["amount"] for r in rows) == 0 and {r["kind"] for r in rows} == {"charge", "refund"}, rows


async def test_vendor_422_is_a_400_naming_the_field(tmp_path):
    # A model_map-only app uses fal's generic mapping; the app's own rules answer.
    async with env(tmp_path, model_map={"pika-2.2": "fal-ai/pika/v2.2/text-to-video"}) as (gw, fake):
        key = await gw.token()
        status, err = await gw.post(
            "/v1/video/generations", key, json={"model": "pika-2.2", "prompt": "x", "seconds": 10}
        )
        # The generic mapping sends "10", the app wants 10: its 422 names the input, the 400 the client's field.
        assert status == 400 and err["error"]["param"] == "seconds", err
        assert fake.creates()[0].status == 422


async def test_rate_limit_is_retried_and_completes(tmp_path):
    async with env(tmp_path) as (gw, fake):
        fake.inject("create", "429", times=2)
        key = await gw.token()
        status, task = await submit(gw, key, prompt="patience")
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert [r.status for r in fake.creates()] == [429, 429, 200]


async def test_bad_key_fails_over_to_a_second_channel(tmp_path):
    fake = FakeFal()
    async with fake.serve():
        bad = channel("bad", fake, priority=10, credentials={"api_key": "wrong-key-000000"})
        good = channel("good", fake)
        async with run_gateway(config(bad, good), tmp_path, extra_plugins={"fal": plugin}) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, prompt="two accounts")
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert [r.status for r in fake.creates()] == [401, 200]
            assert [a.channel for a in await gw.gateway.store.attempts(task["id"]) if a.channel][-1] == "good"


async def test_cancel_mid_way(tmp_path):
    async with env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="a long one [hold]")
        await gw.wait(task["id"], key, until=("in_progress",))
        (rid,) = fake.jobs
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        done = await gw.wait(task["id"], key)
        assert done["status"] == "cancelled", done
        (put,) = fake.recorded("PUT")
        assert put.path == f"/fal-ai/kling-video/requests/{rid}/cancel" and put.status == 202
        assert fake.jobs[rid].data["cancelled"]


PIKA_22 = {
    "text_app": "fal-ai/pika/v2.2/text-to-video",
    "duration_format": "integer",
    "durations": [5, 10],
    "resolution_field": "resolution",
    "resolutions": ["720p", "1080p"],
    "default_resolution": "720p",
    "aspect_ratios": ["16:9", "9:16", "1:1"],
    "default_aspect_ratio": "16:9",
}


async def test_a_model_added_only_in_config_completes(tmp_path):
    assert "pika-2.2" not in {m.name for m in plugin.models}
    async with env(tmp_path, options={"models": {"pika-2.2": PIKA_22}}) as (gw, fake):
        key = await gw.token()
        _, listed = await gw.get("/v1/models", key)
        assert "pika-2.2" in [m["id"] for m in listed["data"]]
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "pika-2.2", "prompt": "pika", "seconds": 10, "size": "1920x1080"},
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed" and done["seconds"] == "10", done
        (create,) = fake.creates()
        assert create.path == "/fal-ai/pika/v2.2/text-to-video"
        assert create.json == {"prompt": "pika", "duration": 10, "resolution": "1080p", "aspect_ratio": "16:9"}
        assert fake.recorded("GET", re.compile(r"^/fal-ai/pika/requests/"))
        status, err = await gw.post(
            "/v1/video/generations", key, json={"model": "pika-2.2", "prompt": "pika", "seconds": 6}
        )
        assert status == 400 and err["error"]["param"] == "seconds", err


async def test_a_model_map_entry_alone_completes(tmp_path):
    async with env(tmp_path, model_map={"pika-2.2": "fal-ai/pika/v2.2/text-to-video"}) as (gw, fake):
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "pika-2.2", "prompt": "plain"})
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        assert fake.creates()[0].json == {"prompt": "plain"}


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({**PIKA_22, "promt_field": "x"}, "options.models.pika-2.2.promt_field"),
        ({**PIKA_22, "durations": "5"}, "options.models.pika-2.2.durations"),
        ({**PIKA_22, "default_duration": 7}, "options.models.pika-2.2.default_duration"),
        ({**PIKA_22, "text_app": "pika"}, "options.models.pika-2.2.text_app"),
    ],
)
async def test_a_bad_config_model_stops_the_gateway_naming_the_key(tmp_path, entry, key):
    fake = FakeFal()
    cfg = config(channel("a", fake, options={"models": {"pika-2.2": entry}}))
    with pytest.raises(ConfigError) as info:
        async with run_gateway(cfg, tmp_path, extra_plugins={"fal": plugin}):
            pass
    assert f"channels[0].{key}" in str(info.value), str(info.value)


@contextlib.asynccontextmanager
async def webhook_env(tmp_path) -> AsyncIterator[tuple[RunningGateway, FakeFal, list[tuple[str, bytes, Any]]]]:
    """A gateway whose callbacks the fake reaches through a relay (the public URL), with a
    60 s poll interval: only a webhook can make a task due within a test."""
    received: list[tuple[str, bytes, Any]] = []

    async def receiver(request):
        received.append((request.url.path, await request.body(), dict(request.headers)))
        return JSONResponse({"ok": True})

    relay = Starlette(routes=[Route("/{path:path}", receiver, methods=["POST"])])
    fake = FakeFal(polls_to_finish=1)
    async with fake.serve(), serve_app(relay) as public:
        options = {"poll_interval": 60, "webhook_jwks_url": fake.jwks_url}
        cfg = config(channel("a", fake, options=options), server={"public_url": public.url})
        async with run_gateway(cfg, tmp_path, extra_plugins={"fal": plugin}) as gw:
            yield gw, fake, received


async def _relayed(received: list[tuple[str, bytes, Any]]) -> tuple[str, bytes, dict[str, str]]:
    for _ in range(250):
        if received:
            return received[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the fake sent no webhook")


def _fal_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-fal-webhook-")} | {"Content-Type": "application/json"}


async def test_signed_webhook_makes_the_task_due_at_once(tmp_path):
    async with webhook_env(tmp_path) as (gw, fake, received):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="hooked")
        assert status == 200, task
        (create,) = fake.creates()
        assert create.query == {"fal_webhook": f"{gw.gateway.config.server.public_url}/v1/callbacks/a"}
        job = next(iter(fake.jobs.values()))
        fake.set_state(job, "succeeded")
        path, body, headers = await _relayed(received)
        assert json.loads(body)["status"] == "OK" and json.loads(body)["request_id"] == job.id
        assert headers["x-fal-webhook-request-id"] == job.id and len(headers["x-fal-webhook-signature"]) == 128
        status, answer = await gw.post(path, data=body, headers=_fal_headers(headers))
        assert status == 200, answer
        done = await gw.wait(task["id"], key, timeout=10)  # the poll interval is 60 s
        assert done["status"] == "completed", done
        # The keys are cached: a second webhook does not fetch them again.
        status, _ = await gw.post(path, data=body, headers=_fal_headers(headers))
        assert status == 200
        assert len(fake.recorded("GET", "/.well-known/jwks.json")) == 1


async def test_forged_or_stale_webhooks_are_ignored(tmp_path):
    async with webhook_env(tmp_path) as (gw, fake, received):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="forged")
        assert status == 200, task
        job = next(iter(fake.jobs.values()))
        stored = await gw.gateway.store.get_task(task["id"])
        fake.set_state(job, "succeeded")
        path, body, headers = await _relayed(received)
        other_key, other_headers = fake.signed_webhook(job, key=Ed25519PrivateKey.generate())
        stale_body, stale_headers = fake.signed_webhook(job, timestamp=int(time.time()) - 600)
        tampered = body.replace(b'"OK"', b'"ERROR"')
        attempts = [
            (other_key, other_headers),  # signed by someone else's key
            (stale_body, stale_headers),  # fal's key, but ten minutes old
            (tampered, headers),  # a valid signature of another body
            (body, {"X-Fal-Webhook-Signature": headers["x-fal-webhook-signature"]}),  # headers missing
            (b"not json", {}),  # unsigned
        ]
        with capture_logs() as logs:
            for data, sent in attempts:
                status, answer = await gw.post(path, data=data, headers=_fal_headers(dict(sent)) | dict(sent))
                assert status == 401, answer
        reasons = [e["reason"] for e in logs if e["event"] == "fal_webhook_unverified"]
        assert reasons == [
            "signature does not verify",
            "timestamp outside the tolerance",
            "signature does not verify",
            "no fal signature headers",
            "no fal signature headers",
        ], reasons
        assert [e["event"] for e in logs].count("callback_unverified") == 5
        await asyncio.sleep(0.3)  # many worker ticks: a wrongly accepted hint would have polled
        assert fake.recorded("GET", re.compile("/requests/")) == []
        after = await gw.gateway.store.get_task(task["id"])
        assert after.status == stored.status and after.next_poll_at == stored.next_poll_at  # never made due
        # The genuine webhook still works after the forgeries.
        status, _ = await gw.post(path, data=body, headers=_fal_headers(headers))
        assert status == 200
        assert (await gw.wait(task["id"], key, timeout=10))["status"] == "completed"
