"""The whole gateway, over HTTP, against the fake Interactions API."""

from __future__ import annotations

import base64
import os
from typing import Any

from vidgate.testing import run_gateway, tiny_png
from vidgate_gemini.fake import FakeGemini

PNG_URL = "data:image/png;base64," + base64.b64encode(tiny_png(16, 16)).decode()
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def channel(fake: FakeGemini, **options: Any) -> dict[str, Any]:
    return {
        "name": "omni",
        "vendor": "gemini",
        "base_url": fake.url,
        "credentials": {"api_key": fake.api_key},
        "options": {"poll_interval": 0.05, **options},
    }


def config(*channels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"plugins": {"enabled": ["gemini"]}, "channels": list(channels)}
    cfg.update(extra)
    return cfg


async def _content(gw, task_id: str, key: str) -> bytes:
    status, body = await gw.get(f"/v1/videos/{task_id}/content", key, raw=True)
    assert status == 200, body
    return body


async def test_t2v_and_i2v_store_the_bytes_and_bill_the_tokens(tmp_path):
    video = b"\x00\x00\x00\x18ftypisom" + os.urandom(2_000_000)  # several decode slices
    fake = FakeGemini(video=video)
    async with fake.serve():
        prices = {"gemini-omni-flash": {"price": "0.0000175 * video_tokens + 0.000001 * tokens"}}
        async with run_gateway(config(channel(fake), models=prices), tmp_path) as gw:
            key = await gw.token(quota=100)
            status, t2v = await gw.post(
                "/v1/video/generations",
                key,
                json={"model": "gemini-omni-flash", "prompt": "a red ball", "seconds": 10, "size": "720x1280"},
            )
            assert status == 200, t2v
            status, i2v = await gw.post(
                "/v1/video/generations",
                key,
                json={"model": "gemini-omni-flash", "prompt": "it moves", "image": PNG_URL, "metadata": {"seed": 5}},
            )
            assert status == 200, i2v
            for task in (t2v, i2v):
                done = await gw.wait(task["id"], key)
                assert done["status"] == "completed", done
                assert await _content(gw, task["id"], key) == video
            stored = await gw.gateway.store.get_task(t2v["id"])
            ledger = await gw.gateway.store.ledger()
    assert "data" not in str(stored.result) and stored.result["inline"] is True
    assert (
        stored.usage["video_tokens"] == 10 * 5792 and stored.usage["tokens"] == 10 * 5792 + 3
    )  # + the 3 text tokens of "a red ball"
    charged = sum(e.amount for e in ledger if e.task_id == t2v["id"])
    assert charged == round((0.0000175 * 57920 + 0.000001 * (57920 + 3)) * 1_000_000)
    t2v_body, i2v_body = fake.creates()
    assert t2v_body["background"] is True and t2v_body["store"] is True
    assert t2v_body["model"] == "gemini-omni-1.1-flash"
    assert t2v_body["input"] == [{"type": "text", "text": "a red ball"}]
    assert t2v_body["response_format"] == {
        "type": "video",
        "aspect_ratio": "9:16",
        "resolution": "720p",
        "duration": "10s",
        "delivery": "inline",
    }
    assert t2v_body["generation_config"] == {"video_config": {"task": "text_to_video"}}
    assert i2v_body["input"][1] == {"type": "image", "data": PNG_URL.split(",", 1)[1], "mime_type": "image/png"}
    assert i2v_body["generation_config"] == {"video_config": {"task": "image_to_video"}, "seed": 5}
    assert fake.recorded("POST")[0].path == "/v1beta/interactions"
    assert fake.recorded("POST")[0].headers["x-goog-api-key"] == fake.api_key


async def test_references_and_uri_delivery(tmp_path):
    fake = FakeGemini()
    async with fake.serve():
        async with run_gateway(config(channel(fake)), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post(
                "/v1/video/generations",
                key,
                json={
                    "model": "gemini-omni-flash",
                    "prompt": "these two meet",
                    "input_reference": [PNG_URL, PNG_URL],
                    "size": "1920x1080",
                    "metadata": {"delivery": "uri"},
                },
            )
            assert status == 200, task
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed" and done["size"] == "1920x1080", done
            assert await _content(gw, task["id"], key) == fake.video
    (body,) = fake.creates()
    assert body["generation_config"]["video_config"]["task"] == "reference_to_video"
    assert [b["type"] for b in body["input"]] == ["text", "image", "image"]
    assert body["response_format"]["resolution"] == "1080p" and body["response_format"]["delivery"] == "uri"
    (download,) = fake.recorded("GET", __import__("re").compile(":download$"))
    assert download.headers["x-goog-api-key"] == fake.api_key


async def test_cancel_mid_way_ends_cancelled(tmp_path):
    fake = FakeGemini()
    async with fake.serve():
        async with run_gateway(config(channel(fake)), tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post(
                "/v1/video/generations", key, json={"model": "gemini-omni-flash", "prompt": "long one [hold]"}
            )
            await gw.wait(task["id"], key, until=("in_progress",))
            status, answer = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
            assert status == 200, answer
            done = await gw.wait(task["id"], key)
    assert done["status"] == "cancelled", done
    (job,) = fake.jobs.values()
    assert job.state == "cancelled"
    assert fake.recorded("POST", f"/v1beta/interactions/{job.id}/cancel")


async def test_extend_chains_previous_interaction_id(tmp_path):
    fake = FakeGemini()
    async with fake.serve():
        async with run_gateway(config(channel(fake)), tmp_path) as gw:
            key = await gw.token()
            _, source = await gw.post(
                "/v1/video/generations", key, json={"model": "gemini-omni-flash", "prompt": "a boat", "seconds": 10}
            )
            assert (await gw.wait(source["id"], key))["status"] == "completed"
            status, ext = await gw.post(
                "/v1/videos/extensions",
                key,
                json={"prompt": "it sails on", "seconds": "10", "video": {"id": source["id"]}},
            )
            assert status == 200, ext
            done = await gw.wait(ext["id"], key)
            assert done["status"] == "completed" and done["seconds"] == "10", done
            assert await _content(gw, ext["id"], key) == fake.video
            # 10 + 10 + 10 + 10 = 40 s is the chain's limit: a fifth link is refused.
            current = ext["id"]
            for _ in range(2):
                _, nxt = await gw.post(
                    "/v1/videos/extensions", key, json={"prompt": "on", "seconds": "10", "video": {"id": current}}
                )
                assert (await gw.wait(nxt["id"], key))["status"] == "completed", nxt
                current = nxt["id"]
            status, refused = await gw.post(
                "/v1/videos/extensions", key, json={"prompt": "on", "seconds": "3", "video": {"id": current}}
            )
            assert status == 400 and refused["error"]["param"] == "seconds", refused
    first, second = fake.creates()[:2]
    assert "previous_interaction_id" not in first
    source_job = next(j for j in fake.jobs.values() if j.prompt == "a boat")
    assert second["previous_interaction_id"] == source_job.id
    assert second["generation_config"]["video_config"]["task"] == "extend"
    assert len(fake.creates()) == 4


async def test_statuses_map_to_failures_with_codes(tmp_path):
    fake = FakeGemini()
    async with fake.serve():
        async with run_gateway(config(channel(fake)), tmp_path) as gw:
            key = await gw.token()
            for word in ("incomplete", "budget_exceeded"):
                fake.final_status = word
                _, task = await gw.post(
                    "/v1/video/generations", key, json={"model": "gemini-omni-flash", "prompt": word}
                )
                done = await gw.wait(task["id"], key)
                assert done["status"] == "failed" and done["error"]["code"] == word, done
            fake.final_status = "completed"
            _, task = await gw.post(
                "/v1/video/generations", key, json={"model": "gemini-omni-flash", "prompt": "x [fail]"}
            )
            done = await gw.wait(task["id"], key)
            assert done["error"]["code"] == "vendor_failed" and "could not render" in done["error"]["message"]


async def test_requests_refused_before_any_call(tmp_path):
    fake = FakeGemini()
    cases = [
        ({"seconds": 12}, "seconds"),
        ({"metadata": {"resolution": "8k"}}, "metadata.resolution"),
        ({"metadata": {"model": "gemini-omni-1.2-flash"}}, "metadata.model"),
        ({"metadata": {"bogus": 1}}, "metadata.bogus"),
        ({"images": [PNG_URL, PNG_URL]}, "images[1]"),
        ({"image": PNG_URL, "input_reference": PNG_URL}, "input_reference"),
        ({"input_reference": [PNG_URL] * 4}, "input_reference[3]"),
    ]
    async with fake.serve():
        async with run_gateway(config(channel(fake)), tmp_path) as gw:
            key = await gw.token()
            for extra, param in cases:
                body = {"model": "gemini-omni-flash", "prompt": "p", **extra}
                status, answer = await gw.post("/v1/video/generations", key, json=body)
                assert status == 400 and answer["error"]["param"] == param, (extra, answer)
    assert fake.creates() == []


async def test_signed_webhook_is_a_hint_and_polling_is_the_fallback(tmp_path):
    fake = FakeGemini(polls_to_finish=1)
    async with fake.serve():
        ch = channel(fake, poll_interval=60)
        ch["credentials"]["webhook_secret"] = SECRET
        cfg = config(ch, server={"public_url": "http://127.0.0.1:9/gw"})
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            _, task = await gw.post("/v1/video/generations", key, json={"model": "gemini-omni-flash", "prompt": "p"})
            (job,) = fake.jobs.values()
            body, headers = fake.webhook(job, SECRET)
            forged = {**headers, "webhook-signature": "v1,AAAA"}
            status, _ = await gw.post(
                "/v1/callbacks/omni", data=body, headers={**forged, "content-type": "application/json"}
            )
            assert status == 401
            status, _ = await gw.post(
                "/v1/callbacks/omni", data=body, headers={**headers, "content-type": "application/json"}
            )
            assert status == 200
            done = await gw.wait(task["id"], key, timeout=10)  # far sooner than the 60 s interval
            assert done["status"] == "completed"
    (create,) = fake.creates()
    assert create["webhook_config"]["uris"] == ["http://127.0.0.1:9/gw/v1/callbacks/omni"]


async def test_bad_key_and_retired_model(tmp_path):
    """A wrong key takes the channel out; a retired model id answers 404 and counts as
    ModelRetired at submit (the core then tries another channel; with none, a 503 that
    says the vendor retired the model)."""
    fake = FakeGemini()
    async with fake.serve():
        bad = channel(fake)
        bad["credentials"] = {"api_key": "wrong"}
        retired = {**channel(fake), "name": "old", "model_map": {"gemini-omni-flash": "gemini-omni-flash-preview"}}
        for ch, outcome, code in (
            (bad, "channel_error", "no_channel_available"),
            (retired, "model_retired", "model_retired"),
        ):
            async with run_gateway(config(ch), tmp_path / ch["name"]) as gw:
                key = await gw.token()
                status, answer = await gw.post(
                    "/v1/video/generations", key, json={"model": "gemini-omni-flash", "prompt": "p"}
                )
                assert status == 503 and answer["error"]["code"] == code, answer
                rows = await gw.gateway.store.db.fetchall("SELECT outcome FROM attempts")
                assert [r["outcome"] for r in rows] == [outcome]
    assert [r.status for r in fake.recorded("POST")] == [400, 404]
