"""End-to-end: the whole gateway over HTTP, the xai plugin, and the fake xAI video API."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from vidgate.billing import to_micro
from vidgate.testing import run_gateway, tiny_png
from vidgate_xai.fake import FakeXAI

PRICED = {m: {"price_per_second": 0.05} for m in ("grok-imagine-video", "grok-imagine-video-1.5")}


def channel(fake: FakeXAI, name: str = "xai-a", key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "xai",
        "base_url": fake.url,
        "credentials": {"api_key": key if key is not None else fake.secret},
        "options": {"poll_interval": 0.05},
        **extra,
    }


def config(*channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["xai"]},
        "network": {"max_retry_after_seconds": 1},
        "models": PRICED,
        "channels": list(channels),
    }


def png_url(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(tiny_png(width, height)).decode()


async def ledger(gw: Any, task_id: str) -> list[tuple[str, int]]:
    rows = await gw.gateway.store.db.fetchall("SELECT kind, amount FROM ledger WHERE task_id = ?", task_id)
    return [(r["kind"], r["amount"]) for r in rows]


async def test_text_to_video_sends_xais_fields_and_stores_the_fakes_bytes(tmp_path):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "grok-imagine-video", "prompt": "a fox", "seconds": 6, "size": "9:16"},
        )
        assert status == 200, task
        assert task["seconds"] == "6" and task["size"] == "720x1280"
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert done["usage"]["seconds"] == 6 and done["usage"]["cost"] == pytest.approx(0.30)
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == fake.result_bytes(fake.jobs[next(iter(fake.jobs))])
        assert fake.base_url not in str(done)  # the vendor's URL never reaches the client

    [create] = fake.creates()
    assert create.json == {
        "model": "grok-imagine-video",
        "prompt": "a fox",
        "duration": 6,
        "aspect_ratio": "9:16",
        "resolution": "720p",
    }
    assert create.headers["authorization"] == f"Bearer {fake.secret}"
    polls = fake.polls()
    assert polls[0].status == 202 and polls[-1].status == 200  # pending (empty body first), then done


async def test_image_to_video_takes_the_images_proportions_and_sends_a_data_uri(tmp_path):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "grok-imagine-video-1.5", "prompt": "wake up", "image": png_url(480, 640)},
        )
        assert status == 200, task
        assert task["seconds"] == "8" and task["size"] == "720x960"  # default 8 s, 3:4 from the image
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status == 200 and body == fake.result_bytes(next(iter(fake.jobs.values())))
    [create] = fake.creates()
    assert create.json["aspect_ratio"] == "3:4" and create.json["duration"] == 8
    assert create.json["image"]["url"].startswith("data:image/png;base64,")
    assert "reference_images" not in create.json and "last_frame" not in create.json


async def test_first_last_frames_and_reference_images(tmp_path):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token()
        frames = {
            "model": "grok-imagine-video-1.5",
            "prompt": "from here to there",
            "images": [png_url(64, 64), "https://img.example.com/last.png"],
            "size": "1920x1080",
            "metadata": {"image_mode": "first_last", "generate_audio": False},
        }
        refs = {
            "model": "grok-imagine-video",
            "prompt": "these three together",
            "images": [png_url(64, 64), png_url(32, 32), "https://img.example.com/c.png"],
            "size": "16:9",
        }
        for body in (frames, refs):
            status, task = await gw.post("/v1/video/generations", key, json=body)
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    first_last, referenced = fake.creates()
    assert first_last.json["resolution"] == "1080p" and first_last.json["aspect_ratio"] == "16:9"
    assert first_last.json["image"]["url"].startswith("data:image/png;base64,")
    assert first_last.json["last_frame"] == {"url": "https://img.example.com/last.png"}
    assert first_last.json["generate_audio"] is False and "image_mode" not in first_last.json
    assert [r["url"][:22] for r in referenced.json["reference_images"]] == [
        "data:image/png;base64,",
        "data:image/png;base64,",
        "https://img.example.co",
    ]
    assert "image" not in referenced.json


IMPOSSIBLE: list[tuple[dict[str, Any], str]] = [
    ({"model": "grok-imagine-video", "size": "1920x1080"}, "size"),  # 1080p is 1.5 only
    ({"model": "grok-imagine-video", "seconds": 20}, "seconds"),
    ({"model": "grok-imagine-video", "size": "21:9"}, "size"),
    ({"model": "grok-imagine-video", "size": "1000x1000"}, "size"),
    ({"model": "grok-imagine-video-1.5", "metadata": {"resolution": "4k"}}, "metadata.resolution"),
    ({"model": "grok-imagine-video", "metadata": {"storage_options": {"filename": "x"}}}, "metadata.storage_options"),
    ({"model": "grok-imagine-video", "metadata": {"model": "grok-imagine-video-1.5"}}, "metadata.model"),
    ({"model": "grok-imagine-video", "metadata": {"cfg": 3}}, "metadata.cfg"),
    (
        {
            "model": "grok-imagine-video",
            "images": ["https://a.example/1.png", "https://a.example/2.png"],
            "metadata": {"image_mode": "first_last"},
        },
        "images[1]",
    ),
    (
        {
            "model": "grok-imagine-video-1.5",
            "images": ["https://a.example/1.png", "https://a.example/2.png"],
            "size": "1920x1080",
        },
        "size",
    ),  # reference images make at most 720p
    ({"model": "grok-imagine-video", "images": [f"https://a.example/{i}.png" for i in range(8)]}, "images[7]"),
    ({"model": "grok-imagine-video", "metadata": {"keyframes": []}}, "metadata.keyframes"),
    ({"model": "grok-imagine-video", "prompt": "x" * 4097}, "prompt"),
]


async def test_impossible_parameters_are_400s_without_a_vendor_call(tmp_path):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        for body, param in IMPOSSIBLE:
            status, err = await gw.post("/v1/video/generations", key, json={"prompt": "p", **body})
            assert status == 400, (body, err)
            assert err["error"]["param"] == param, (body, err)
        assert (await gw.gateway.store.token("t")).used == 0
    assert fake.requests == []


async def test_vendor_failure_fails_with_its_reason_and_refunds(tmp_path):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        _, task = await gw.post(
            "/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": "p [fail]"}
        )
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed"
        assert done["error"] == {"code": "generation_failed", "message": "The vendor could not render this video."}
        assert await ledger(gw, task["id"]) == [("charge", to_micro(0.4)), ("refund", -to_micro(0.4))]
        assert (await gw.gateway.store.token("t")).used == 0


@pytest.mark.parametrize(
    ("prompt", "code"), [("late [expired]", "expired"), ("naughty [moderated]", "content_filtered")]
)
async def test_expired_and_moderated_requests_fail_with_a_clear_code_and_refund(tmp_path, prompt, code):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": prompt})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == code, done
        assert "xAI" in done["error"]["message"]
        assert sum(amount for _, amount in await ledger(gw, task["id"])) == 0
        status, _ = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
        assert status != 200
    assert not fake.recorded("GET", "/_fake/results/" + next(iter(fake.jobs)) + ".mp4")  # never downloaded


async def test_rate_limit_is_retried_and_completes(tmp_path):
    fake = FakeXAI()
    fake.inject("create", "429", times=2)
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": "p"})
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        outcomes = [a.outcome for a in await gw.gateway.store.attempts(task["id"])]
        assert outcomes == ["rate_limited", "rate_limited", "submitted"]
    assert [r.status for r in fake.creates()] == [429, 429, 200]


async def test_bad_key_fails_over_to_the_second_channel(tmp_path):
    fake = FakeXAI()
    async with fake.serve():
        cfg = config(channel(fake, "xai-bad", key="xai-wrong", priority=10), channel(fake, "xai-good", priority=0))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post(
                "/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": "p"}
            )
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            attempts = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
            assert attempts == [("xai-bad", "channel_error"), ("xai-good", "submitted")]
    assert [(r.headers["authorization"], r.status) for r in fake.creates()] == [
        ("Bearer xai-wrong", 401),
        (f"Bearer {fake.secret}", 200),
    ]


async def test_a_model_xai_retired_moves_the_task_to_the_next_channel(tmp_path):
    old, new = FakeXAI(retired_models={"grok-imagine-video"}), FakeXAI()
    async with old.serve(), new.serve():
        cfg = config(channel(old, "xai-old", priority=10), channel(new, "xai-new", priority=0))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post(
                "/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": "p"}
            )
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert [r.status for r in old.creates()] == [404] and [r.status for r in new.creates()] == [200]


async def test_cancel_mid_way_ends_cancelled_without_a_vendor_call(tmp_path):
    """xAI has no cancel: the gateway stops tracking the task; no request reaches xAI for
    it, and polling stops."""
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token()
        _, task = await gw.post(
            "/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": "p [hold]"}
        )
        await gw.wait(task["id"], key, until=("in_progress",))
        status, answer = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200, answer
        done = await gw.wait(task["id"], key)
        assert done["status"] == "cancelled", done
        held = next(iter(fake.jobs.values()))
        polls_at_cancel = held.polls
        # Another task runs through several poll rounds meanwhile: the cancelled one is
        # not polled again, and nothing but creates and polls ever reached xAI.
        _, other = await gw.post("/v1/video/generations", key, json={"model": "grok-imagine-video", "prompt": "q"})
        assert (await gw.wait(other["id"], key))["status"] == "completed"
        assert held.polls == polls_at_cancel
    assert {(r.method, r.path.rsplit("/", 1)[0]) for r in fake.requests} <= {
        ("POST", "/v1/videos"),
        ("GET", "/v1/videos"),
        ("GET", "/_fake/results"),
    }


async def test_extend_and_edit_send_the_source_video_url(tmp_path):
    fake = FakeXAI()
    async with fake.serve(), run_gateway(config(channel(fake)), tmp_path) as gw:
        key = await gw.token()
        _, source = await gw.post(
            "/v1/videos", key, json={"model": "grok-imagine-video", "prompt": "a cat", "seconds": "6"}
        )
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        source_url = fake.result_url(next(iter(fake.jobs.values())))
        status, ext = await gw.post(
            "/v1/videos/extensions",
            key,
            json={"prompt": "the cat jumps", "seconds": "5", "video": {"id": source["id"]}},
        )
        assert status == 200, ext
        status, edit = await gw.post(
            "/v1/videos/edits", key, json={"prompt": "make it blue", "video": {"id": source["id"]}}
        )
        assert status == 200, edit
        ext_done = await gw.wait(ext["id"], key)
        edit_done = await gw.wait(edit["id"], key)
        assert ext_done["status"] == edit_done["status"] == "completed"
        assert ext_done["seconds"] == "5" and edit_done["seconds"] == "6"
        assert ext_done["usage"]["cost"] == pytest.approx(0.25)
    [ex] = fake.creates("extensions")
    assert ex.json == {
        "model": "grok-imagine-video",
        "prompt": "the cat jumps",
        "video": {"url": source_url},
        "duration": 5,
    }
    [ed] = fake.creates("edits")
    assert ed.json == {"model": "grok-imagine-video", "prompt": "make it blue", "video": {"url": source_url}}
