"""End-to-end tests: the whole gateway over HTTP against the fake Kling server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import struct
import time
import zlib
from typing import Any

import pytest

from vidgate.testing import force_task_state, run_gateway, serve_app
from vidgate_kling import plugin as kling_plugin
from vidgate_kling.auth import b64url_decode, encode_jwt
from vidgate_kling.fake import VIDEO, FakeKling

AK, SK = "ak-test-123", "sk-test-secret"


def tiny_png(w: int = 320, h: int = 480) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()


def channel(name: str, fake_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "kling",
        "base_url": fake_url,
        "credentials": {"access_key": AK, "secret_key": SK},
        "options": {"poll_interval": 0.05},
        **extra,
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "plugins": {"enabled": ["kling"]},
        "channels": list(channels),
        "network": {"max_retry_after_seconds": 0.2},
        "worker": {"max_backoff_seconds": 0.1},
        "models": {"kling-v1-6": {"price_per_second": 0.1}, "kling-v3": {"price_per_second": 0.1}},
    }
    cfg.update(extra)
    return cfg


@contextlib.asynccontextmanager
async def kling_env(tmp_path, fake: FakeKling | None = None, **cfg_extra: Any):
    fake = fake or FakeKling(access_key=AK, secret_key=SK)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        async with run_gateway(config(channel("a", served.url), **cfg_extra), tmp_path) as gw:
            yield gw, fake


def assert_valid_jwt(headers: dict[str, str]) -> dict[str, Any]:
    """Check the Authorization header the way Kling does; return the claims."""
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    h, p, s = token.split(".")
    assert json.loads(b64url_decode(h)) == {"alg": "HS256", "typ": "JWT"}
    expected = hmac.new(SK.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(b64url_decode(s), expected)
    claims = json.loads(b64url_decode(p))
    now = time.time()
    assert claims["iss"] == AK and claims["nbf"] <= now < claims["exp"]
    assert 1805 <= claims["exp"] - claims["nbf"] <= 1860  # exp = now+1800, nbf = now-5 (now-60 on renewal)
    return claims


async def submit(gw, key, **body: Any) -> tuple[int, Any]:
    return await gw.post("/v1/video/generations", key, json={"model": "kling-v1-6", **body})


async def test_text2video_completes_and_wire_shape(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(gw, key, prompt="a red fox in snow", seconds=10, size="720x1280")
        assert status == 200, task
        assert task["seconds"] == "10" and task["size"] == "720x1280"
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == VIDEO

        (create,) = fake.creates()
        assert create.path == "/v1/videos/text2video" and create.code == 0
        assert create.headers["content-type"].startswith("application/json")
        assert_valid_jwt(create.headers)
        assert create.json == {
            "model_name": "kling-v1-6",
            "prompt": "a red fox in snow",
            "duration": "10",
            "aspect_ratio": "9:16",
            "external_task_id": task["id"],
        }
        polls = [r for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/videos/")]
        # Polled through the family's list (batch poll) or one by one, never another family.
        assert polls and all(r.path.startswith("/v1/videos/text2video") for r in polls)
        for r in fake.lists():
            assert r.query == {"pageNum": "1", "pageSize": "500"}
        for r in polls:
            assert_valid_jwt(r.headers)
        # The result was fetched from the CDN with a plain GET, no Kling auth.
        (cdn,) = [r for r in fake.requests if r.path.startswith("/cdn/")]
        assert "authorization" not in cdn.headers
        # The JWT is cached, not minted per request.
        assert len({r.headers["authorization"] for r in fake.requests if r.path.startswith("/v1/")}) == 1


async def test_defaults_duration_5_and_16_9(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        status, task = await submit(gw, key, prompt="waves")
        assert status == 200, task
        assert task["seconds"] == "5" and task["size"] == "1280x720"
        (create,) = fake.creates()
        assert create.json["duration"] == "5" and create.json["aspect_ratio"] == "16:9"
        ledger = await gw.gateway.store.ledger()
        assert [e.kind for e in ledger if e.task_id == task["id"]] == ["charge"]


async def test_pro_mode_reports_1080p(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(
            gw, key, prompt="x", size="1:1", metadata={"mode": "pro", "negative_prompt": "blur", "custom_flag": [1, 2]}
        )
        assert status == 200, task
        assert task["size"] == "1080x1080"
        (create,) = fake.creates()
        assert create.json["mode"] == "pro" and create.json["aspect_ratio"] == "1:1"
        assert create.json["negative_prompt"] == "blur"
        assert create.json["custom_flag"] == [1, 2]  # unknown keys pass through untouched


async def test_image2video_base64_png(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token()
        data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
        status, task = await submit(gw, key, prompt="animate", image=data_url, size="16:9")
        assert status == 200, task
        assert task["size"] == "720x1280"  # follows the portrait image, not the requested 16:9
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == VIDEO
        (create,) = fake.creates()
        assert create.path == "/v1/videos/image2video"
        assert create.json["image"] == base64.b64encode(PNG).decode()  # raw, no data: prefix
        assert "aspect_ratio" not in create.json
        assert create.json["duration"] == "5" and create.json["model_name"] == "kling-v1-6"
        assert create.json["external_task_id"] == task["id"]
        polls = [r for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/videos/")]
        assert polls and all(r.path.startswith("/v1/videos/image2video") for r in polls)


async def test_image2video_url_and_tail(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token()
        status, task = await submit(
            gw,
            key,
            prompt="",
            model="kling-v2-1",
            images=["https://images.example.com/first.png", base64.b64encode(PNG).decode()],
            metadata={"mode": "pro"},  # Kling: kling-v2-1 makes end frames in pro only
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        (create,) = fake.creates("image2video")
        assert create.json["image"] == "https://images.example.com/first.png"
        assert create.json["image_tail"] == base64.b64encode(PNG).decode()
        assert create.json["model_name"] == "kling-v2-1"
        assert create.json["mode"] == "pro"
        assert "prompt" not in create.json
        assert done["size"] == "1920x1080"  # pro: 1080p


async def test_model_map_sets_model_name(tmp_path):
    fake = FakeKling(access_key=AK, secret_key=SK)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        ch = channel("a", served.url, model_map={"kling-v1-6": "kling-v2-6"})
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, prompt="x")
            assert status == 200, task
            assert fake.creates()[0].json["model_name"] == "kling-v2-6"


@pytest.mark.parametrize(
    "message, code",
    [
        # Kling's moderation of the output: reported as a filtered result.
        ("Failure to pass the risk control system", "content_filtered"),
        ("Video generation failed, please try again", "vendor_failed"),
    ],
)
async def test_kling_failed_task_is_refunded(tmp_path, message, code):
    async with kling_env(tmp_path) as (gw, fake):
        fake.fail_next_task(message)
        key = await gw.token(name="payer", quota=100)
        status, task = await submit(gw, key, prompt="something")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed"
        assert done["error"]["code"] == code
        assert done["error"]["message"] == message
        kinds = [e.kind for e in await gw.gateway.store.ledger() if e.task_id == task["id"]]
        assert sorted(kinds) == ["charge", "refund"]
        assert (await gw.gateway.store.token("payer")).used == 0


async def test_rate_limited_submit_is_retried(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        fake.fail_creates(1302, times=1)
        key = await gw.token()
        status, task = await submit(gw, key, prompt="x")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed"
        assert [c.code for c in fake.creates()] == [1302, 0]
        attempts = await gw.gateway.store.attempts(task["id"])
        assert [a.outcome for a in attempts] == ["rate_limited", "submitted"]


async def test_balance_exhausted_fails_over_to_second_channel(tmp_path):
    fake_a = FakeKling(access_key=AK, secret_key=SK)
    fake_b = FakeKling(access_key=AK, secret_key=SK)
    async with serve_app(fake_a.app) as sa, serve_app(fake_b.app) as sb:
        fake_a.base_url, fake_b.base_url = sa.url, sb.url
        fake_a.fail_creates(1102)
        cfg = config(channel("a", sa.url, priority=10), channel("b", sb.url, priority=1))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, prompt="x")
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed"
            assert [c.code for c in fake_a.creates()] == [1102]  # not retried on A
            assert [c.code for c in fake_b.creates()] == [0]
            attempts = await gw.gateway.store.attempts(task["id"])
            assert [(a.channel, a.outcome) for a in attempts] == [("a", "channel_error"), ("b", "submitted")]
            assert "1102" in attempts[0].detail


async def test_content_policy_rejection_is_400(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        fake.fail_creates(1301)
        key = await gw.token(quota=100)
        status, body = await submit(gw, key, prompt="x")
        assert status == 400, body
        assert "risk control" in body["error"]["message"]
        assert len(fake.creates()) == 1  # not retried


async def test_malformed_poll_replies_do_not_fail_the_task(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        fake.malformed_polls(2, "non_json")
        fake.malformed_polls(1, "missing")
        key = await gw.token()
        status, task = await submit(gw, key, prompt="x")
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert [r.code for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/")][:3] == [-1, -1, -1]


METADATA_CASES = [
    ({"cfg_scale": "high"}, "metadata.cfg_scale"),
    ({"cfg_scale": 2}, "metadata.cfg_scale"),
    ({"mode": "ultra"}, "metadata.mode"),
    ({"camera_control": "zoom"}, "metadata.camera_control"),
    ({"negative_prompt": 5}, "metadata.negative_prompt"),
    ({"dynamic_masks": {}}, "metadata.dynamic_masks"),
    ({"sound": True}, "metadata.sound"),
    ({"watermark_info": True}, "metadata.watermark_info"),
    ({"model_name": "kling-v2-master"}, "metadata.model_name"),
    ({"external_task_id": "mine"}, "metadata.external_task_id"),
    ({"callback_url": "https://evil.example/"}, "metadata.callback_url"),
    ({"duration": "10"}, "metadata.duration"),
]


async def test_metadata_checks(tmp_path):
    # One gateway for every case: each case is one request.
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token()
        for metadata, param in METADATA_CASES:
            status, body = await submit(gw, key, prompt="x", metadata=metadata)
            assert status == 400, (metadata, body)
            assert body["error"]["param"] == param, (metadata, body)
        assert fake.creates() == []


REQUEST_CASES = [
    ({"seconds": 7}, "seconds"),
    ({"prompt": "x" * 2501}, "prompt"),
    ({"model": "kling-v3", "seconds": 16}, "seconds"),
    ({"model": "kling-v1-5"}, "image"),
    ({"image": base64.b64encode(tiny_png(100, 400)).decode()}, "image"),
    ({"images": [base64.b64encode(PNG).decode(), base64.b64encode(tiny_png(900, 300)).decode()]}, "images[1]"),
    # Three images are reference images (multi-image2video): only kling-v1-6 has that.
    ({"model": "kling-v1", "images": ["https://e.example/a.png"] * 3}, "images"),
    ({"images": ["https://e.example/a.png"] * 5}, "images"),
    (
        {
            "images": ["https://e.example/a.png", "https://e.example/b.png"],
            "metadata": {"image_tail": "https://e.example/c.png"},
        },
        "metadata.image_tail",
    ),
]


async def test_request_checks(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token()
        for body, param in REQUEST_CASES:
            status, answer = await submit(gw, key, **{"prompt": "x", **body})
            assert status == 400, (body, answer)
            assert answer["error"]["param"] == param, (body, answer)
        assert fake.creates() == []


async def test_kling_v3_takes_3_to_15_seconds(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        key = await gw.token(quota=100)
        status, task = await submit(gw, key, prompt="x", model="kling-v3", seconds=3)
        assert status == 200, task
        assert fake.creates()[0].json["duration"] == "3"
        ledger = [e for e in await gw.gateway.store.ledger() if e.task_id == task["id"]]
        assert ledger[0].kind == "charge" and abs(ledger[0].amount) == 300_000  # 3 s x 0.1


async def test_expired_jwt_is_renewed_once(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        # The plugin believes its cached token is fresh, but Kling's clock says it expired.
        now = int(time.time())
        stale = encode_jwt({"iss": AK, "exp": now - 10, "nbf": now - 1900}, SK)
        gw.gateway.channel_state.setdefault("a", {})["kling_jwt"] = {
            "token": stale,
            "exp": now + 3600,
            "access_key": AK,
        }
        key = await gw.token()
        status, task = await submit(gw, key, prompt="x")
        assert status == 200, task
        first, second = fake.creates()
        assert first.code == 1004 and first.headers["authorization"] == f"Bearer {stale}"
        assert second.code == 0
        assert_valid_jwt(second.headers)
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed"


async def test_bad_secret_takes_channel_out(tmp_path):
    fake = FakeKling(access_key=AK, secret_key="another-secret")
    async with serve_app(fake.app) as served:
        async with run_gateway(config(channel("a", served.url)), tmp_path) as gw:
            key = await gw.token()
            status, body = await submit(gw, key, prompt="x")
            assert status == 503, body
            assert [c.code for c in fake.creates()] == [1002]
            (charge, refund) = await gw.gateway.store.ledger()
            assert (charge.kind, refund.kind) == ("charge", "refund")
            attempts = await gw.gateway.store.attempts(charge.task_id)
            assert [a.outcome for a in attempts] == ["channel_error"]
            assert "1002" in attempts[0].detail


async def test_callback_triggers_immediate_poll(tmp_path):
    """Kling POSTs the bare task object to callback_url; relayed to the gateway's
    callback endpoint it makes the task poll at once despite a 60 s poll interval."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    received: list[tuple[str, bytes]] = []

    async def receiver(request):
        received.append((request.url.path, await request.body()))
        return JSONResponse({"ok": True})

    # The gateway's URL is only known after start, so Kling's callbacks land on this
    # stand-in public URL and the test relays them.
    relay = Starlette(routes=[Route("/{path:path}", receiver, methods=["POST"])])
    fake = FakeKling(access_key=AK, secret_key=SK, polls_to_finish=1)
    async with serve_app(fake.app) as served, serve_app(relay) as public:
        fake.base_url = served.url
        ch = channel("a", served.url, options={"poll_interval": 60})
        async with run_gateway(config(ch, server={"public_url": public.url + "/gw"}), tmp_path) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, prompt="x")
            assert status == 200, task
            (create,) = fake.creates()
            assert create.json["callback_url"] == f"{public.url}/gw/v1/callbacks/a"
            (kling_id,) = fake.tasks["text2video"]
            fake.set_status("text2video", kling_id, "succeed")
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.02)
            ((path, body),) = received
            assert path == "/gw/v1/callbacks/a"
            obj = json.loads(body)
            assert obj["task_id"] == kling_id and obj["task_status"] == "succeed" and "code" not in obj
            assert obj["task_info"] == {"external_task_id": task["id"]}
            started = time.monotonic()
            status, _ = await gw.post("/v1/callbacks/a", data=body, headers={"Content-Type": "application/json"})
            assert status == 200
            done = await gw.wait(task["id"], key, timeout=10)
            assert done["status"] == "completed"
            assert time.monotonic() - started < 10  # far sooner than the 60 s poll interval
            polls = [r for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/videos/text2video")]
            assert len(polls) == 1  # the callback caused the only poll


async def test_recover_finds_task_by_external_task_id(tmp_path):
    async with kling_env(tmp_path) as (gw, fake):
        from vidgate.request import parse_request

        ch = gw.gateway.dispatcher.channels["a"]
        model = gw.gateway.plugins.model("kling-v1-6", "kling")
        request = parse_request(
            {"model": "kling-v1-6", "prompt": "lost answer", "image": base64.b64encode(PNG).decode()}
        )
        job = kling_plugin.map_request(request, model, ch)
        ctx = gw.gateway.context("video_lost_answer_1", ch, request)
        submitted = await kling_plugin.submit(job, ctx)
        found = await kling_plugin.recover(job, ctx)
        assert found is not None
        assert found.handle == submitted.handle
        assert found.handle["task_id"] == submitted.vendor_task_id and found.handle["family"] == "image2video"
        assert isinstance(found.handle["created_at"], int)
        lookup = fake.requests[-1]
        assert lookup.path == "/v1/videos/image2video/video_lost_answer_1"
        # A task Kling never received: None, so the gateway submits again.
        assert await kling_plugin.recover(job, gw.gateway.context("video_never_sent", ch)) is None
        # Another family's space does not leak.
        t2v = kling_plugin.map_request(parse_request({"model": "kling-v1-6", "prompt": "x"}), model, ch)
        assert await kling_plugin.recover(t2v, ctx) is None


@pytest.mark.parametrize("kling_got_it", [True, False])
async def test_worker_recovers_a_lost_submit(tmp_path, kling_got_it):
    """A crash between Kling's answer and storing it leaves the task in phase
    'submitting'; the worker looks it up by external_task_id instead of duplicating it."""
    fake = FakeKling(access_key=AK, secret_key=SK, polls_to_finish=1)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        ch = channel("a", served.url, options={"poll_interval": 60})
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            status, task = await submit(gw, key, prompt="x")
            assert status == 200, task
            (kling_id,) = fake.tasks["text2video"]
            if not kling_got_it:
                fake.tasks["text2video"].clear()
            # Simulate the lost answer: back to 'submitting' with no handle, lease expired.
            await force_task_state(
                gw.gateway.store,
                task["id"],
                phase="submitting",
                handle=None,
                vendor_task_id=None,
                lease_owner=None,
                lease_until=None,
                next_poll_at=time.time(),
            )
            gw.gateway.wakeup.set()
            for _ in range(200):
                attempts = [(a.outcome, a.detail) for a in await gw.gateway.store.attempts(task["id"])]
                if attempts[-1][0] == "recovered":
                    break
                await asyncio.sleep(0.05)
            lookups = [r for r in fake.requests if r.path == f"/v1/videos/text2video/{task['id']}"]
            assert len(lookups) == 1
            if kling_got_it:
                assert len(fake.creates()) == 1  # no duplicate at Kling
                assert attempts[-1] == ("recovered", kling_id)
                assert lookups[0].code == 0
                done = await gw.wait(task["id"], key, timeout=15)  # polled soon after recovery
                assert done["status"] == "completed", done
            else:
                assert lookups[0].code == 1203
                assert len(fake.creates()) == 2  # submitted again
                assert fake.creates()[1].json["external_task_id"] == task["id"]
                assert attempts[-1][0] == "recovered" and attempts[-1][1] != kling_id
