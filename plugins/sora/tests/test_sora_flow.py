"""End-to-end: the whole gateway over HTTP, the sora plugin, and the fake Videos API."""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from vidgate.billing import to_micro
from vidgate.testing import ServedApp, run_gateway, serve_app
from vidgate_sora.fake import SAMPLE_WEBP, FakeVideosAPI, sample_mp4

KEY = "sk-test"
PRICED = {"sora-2": {"price_per_second": 0.1}, "sora-2-pro": {"price_per_second": 0.3}}


def png(width: int = 4, height: int = 4) -> bytes:
    """A small valid PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def channel(fake: ServedApp, name: str = "sora-a", key: str = KEY, **extra: Any) -> dict[str, Any]:
    options = {"poll_interval": 0.05, **extra.pop("options", {})}
    return {
        "name": name,
        "vendor": "sora",
        "base_url": fake.url + "/v1",
        "credentials": {"api_key": key},
        "options": options,
        **extra,
    }


def config(*channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["sora"]},
        "network": {"max_retry_after_seconds": 1},
        "models": PRICED,
        "channels": list(channels),
    }


@contextlib.asynccontextmanager
async def served(fake: FakeVideosAPI) -> AsyncIterator[ServedApp]:
    async with serve_app(fake.app) as app:
        yield app


async def test_text_task_completes_with_the_upstream_bytes(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up:
        ch = channel(up, options={"organization": "org-1", "project": "proj-1"})
        async with run_gateway(config(ch), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "a fox"})
            assert status == 200, task
            assert task["seconds"] == "4" and task["size"] == "720x1280"
            done = await gw.wait(task["id"], key)
            assert done["status"] == "completed", done
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            assert status == 200 and body == sample_mp4()
            status, thumb = await gw.get(f"/v1/videos/{task['id']}/content?variant=thumbnail", key, raw=True)
            assert status == 200 and thumb == SAMPLE_WEBP

    [create] = fake.creates()
    assert not create.is_multipart and create.content_type.startswith("application/json")
    assert create.json == {"prompt": "a fox", "model": "sora-2", "seconds": "4", "size": "720x1280"}
    assert create.headers["authorization"] == f"Bearer {KEY}"
    assert create.headers["openai-organization"] == "org-1"
    assert create.headers["openai-project"] == "proj-1"
    vid = fake.videos and next(iter(fake.videos))
    paths = [r.path for r in fake.requests]
    assert f"/v1/videos/{vid}" in paths and f"/v1/videos/{vid}/content" in paths
    # Vendor ids never reach the client.
    assert vid not in str(done)


async def test_base64_image_goes_up_as_an_input_reference_file(tmp_path):
    fake = FakeVideosAPI()
    image = png()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        body = {"model": "sora-2", "prompt": "animate", "image": base64.b64encode(image).decode(), "size": "9:16"}
        status, task = await gw.post("/v1/video/generations", key, json=body)
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"

    [create] = fake.creates()
    assert create.is_multipart
    assert create.fields == {"prompt": "animate", "model": "sora-2", "seconds": "4", "size": "720x1280"}
    part = create.files["input_reference"]
    assert part.filename == "reference.png" and part.content_type == "image/png" and part.data == image


async def test_multipart_upload_on_the_gateway_reaches_the_upstream_as_a_file(tmp_path):
    fake = FakeVideosAPI()
    image = png(8, 8)
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        form = aiohttp.FormData()
        form.add_field("model", "sora-2")
        form.add_field("prompt", "a lighthouse")
        form.add_field("seconds", "4")
        form.add_field("size", "1280x720")
        form.add_field("input_reference", image, filename="mine.png", content_type="image/png")
        status, task = await gw.post("/v1/videos", key, data=form)
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"

    [create] = fake.creates()
    assert create.is_multipart
    assert create.fields["seconds"] == "4" and create.fields["size"] == "1280x720"
    part = create.files["input_reference"]
    assert part.filename and part.content_type == "image/png" and part.data == image


async def test_remix_uses_the_upstream_id_and_is_a_new_billed_task(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        _, source = await gw.post("/v1/videos", key, json={"model": "sora-2", "prompt": "a cat", "seconds": "8"})
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        source_upstream = next(iter(fake.videos))

        status, remix = await gw.post(f"/v1/videos/{source['id']}/remix", key, json={"prompt": "a cat, in rain"})
        assert status == 200, remix
        assert remix["id"] != source["id"]
        assert remix["remixed_from_video_id"] == source["id"]
        done = await gw.wait(remix["id"], key)
        assert done["status"] == "completed" and done["prompt"] == "a cat, in rain"
        assert done["remixed_from_video_id"] == source["id"] and done["seconds"] == "8"
        status, body = await gw.get(f"/v1/videos/{remix['id']}/content", key, raw=True)
        assert status == 200 and body == sample_mp4()

        charges = [e for e in await gw.gateway.store.ledger() if e.kind == "charge"]
        assert [(e.task_id, e.amount) for e in charges] == [(source["id"], to_micro(0.8)), (remix["id"], to_micro(0.8))]
        assert (await gw.gateway.store.token("t")).used == to_micro(1.6)

    [rm] = fake.remixes()
    assert rm.path == f"/v1/videos/{source_upstream}/remix"
    assert rm.json == {"prompt": "a cat, in rain"}
    assert rm.status == 200
    new = [v for v in fake.videos.values() if v["remixed_from_video_id"]]
    assert [v["remixed_from_video_id"] for v in new] == [source_upstream]


async def test_upstream_failure_fails_the_task_and_refunds(tmp_path):
    fake = FakeVideosAPI()
    fake.fail_next("moderation_blocked", "Your request was blocked by our moderation system.")
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed"
        assert done["error"] == {
            "code": "moderation_blocked",
            "message": "Your request was blocked by our moderation system.",
        }
        ledger = await gw.gateway.store.ledger()
        assert [(e.kind, e.amount) for e in ledger] == [("charge", to_micro(0.4)), ("refund", -to_micro(0.4))]
        assert (await gw.gateway.store.token("t")).used == 0


async def test_rate_limit_retry_after_is_honoured_then_the_task_completes(tmp_path):
    fake = FakeVideosAPI()
    fake.rate_limit(1, retry_after=0.3)
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        outcomes = [a.outcome for a in await gw.gateway.store.attempts(task["id"])]
        assert outcomes == ["rate_limited", "submitted"]

    first, second = fake.creates()
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.3


async def test_rate_limit_retry_after_ms_is_preferred(tmp_path):
    fake = FakeVideosAPI()
    fake.rate_limit(1, retry_after=30, retry_after_ms=200)  # -ms wins, as in the openai SDK
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        assert status == 200, task
    first, second = fake.creates()
    assert 0.2 <= second.at - first.at < 0.9  # capped at 1 s by config either way; 30 s would be 1 s


async def test_insufficient_quota_moves_the_task_to_the_next_channel(tmp_path):
    broke, rich = FakeVideosAPI(), FakeVideosAPI()
    broke.exhaust_quota()
    async with served(broke) as a, served(rich) as b:
        cfg = config(channel(a, "sora-a", priority=10), channel(b, "sora-b", priority=0))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            attempts = [(x.channel, x.outcome) for x in await gw.gateway.store.attempts(task["id"])]
            assert attempts == [("sora-a", "channel_error"), ("sora-b", "submitted")]
    assert [r.status for r in broke.creates()] == [429]  # not retried: quota is not a rate limit
    assert [r.status for r in rich.creates()] == [200]


async def test_unknown_status_word_keeps_the_task_alive(tmp_path):
    fake = FakeVideosAPI()
    fake.unknown_status_next("rendering", polls=3)
    seen: list[str] = []
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        done = await gw.wait(task["id"], key, on_poll=lambda t: seen.append(t["status"]))
        assert done["status"] == "completed"
    assert set(seen) <= {"queued", "in_progress", "completed"}
    vid = next(iter(fake.videos))
    retrieves = [r for r in fake.requests if r.method == "GET" and r.path == f"/v1/videos/{vid}"]
    assert len(retrieves) >= 3 + fake.polls_to_finish


async def test_size_the_model_cannot_make_is_refused_before_any_upstream_call(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        status, err = await gw.post(
            "/v1/video/generations", key, json={"model": "sora-2", "prompt": "p", "size": "1792x1024"}
        )
        assert status == 400 and err["error"]["param"] == "size", err
        status, err = await gw.post("/v1/videos", key, json={"model": "sora-2", "prompt": "p", "seconds": 5})
        assert status == 400 and err["error"]["param"] == "seconds", err
        status, err = await gw.post(
            "/v1/videos", key, json={"model": "sora-2", "prompt": "p", "metadata": {"model": "sora-2-pro"}}
        )
        assert status == 400 and err["error"]["param"] == "metadata.model", err
        assert (await gw.gateway.store.token("t")).used == 0
    assert fake.requests == []


async def test_sora_2_pro_large_size_and_ratio_mapping(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        s1, t1 = await gw.post("/v1/videos", key, json={"model": "sora-2-pro", "prompt": "p", "size": "1792x1024"})
        s2, t2 = await gw.post(
            "/v1/videos", key, json={"model": "sora-2", "prompt": "p", "size": "16:9", "seconds": 12}
        )
        assert (s1, s2) == (200, 200), (t1, t2)
        assert t2["size"] == "1280x720" and t2["seconds"] == "12"
    first, second = fake.creates()
    assert first.json["size"] == "1792x1024" and first.json["model"] == "sora-2-pro"
    assert second.json["size"] == "1280x720" and second.json["seconds"] == "12"


async def test_metadata_passes_through_and_upstream_complaints_name_the_key(tmp_path):
    fake = FakeVideosAPI(extra_fields={"user"})
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        status, task = await gw.post(
            "/v1/videos", key, json={"model": "sora-2", "prompt": "p", "metadata": {"user": "u-42"}}
        )
        assert status == 200, task
        status, err = await gw.post(
            "/v1/videos", key, json={"model": "sora-2", "prompt": "p", "metadata": {"vibe": "calm"}}
        )
        assert status == 400 and err["error"]["param"] == "metadata.vibe", err
        status, err = await gw.post(
            "/v1/videos", key, json={"model": "sora-2", "prompt": "p", "metadata": {"vibe": [1, 2]}}
        )
        assert status == 400 and err["error"]["param"] == "metadata.vibe", err
    ok, refused = fake.creates()
    assert ok.json["user"] == "u-42" and ok.json["model"] == "sora-2"
    assert refused.status == 400 and refused.json["vibe"] == "calm"


async def test_bad_api_key_takes_the_channel_out_and_the_client_gets_503(tmp_path):
    fake = FakeVideosAPI(api_keys={"sk-right"})
    async with served(fake) as up, run_gateway(config(channel(up, key="sk-wrong")), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        status, err = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        assert status == 503, err
        assert (await gw.gateway.store.token("t")).used == 0
    [create] = fake.creates()
    assert create.status == 401


async def test_server_error_then_next_channel(tmp_path):
    flaky, good = FakeVideosAPI(), FakeVideosAPI()
    flaky.server_error(1)
    async with served(flaky) as a, served(good) as b:
        cfg = config(channel(a, "sora-a", priority=10), channel(b, "sora-b"))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
            assert status == 200, task
            attempts = [(x.channel, x.outcome) for x in await gw.gateway.store.attempts(task["id"])]
            assert attempts == [("sora-a", "unavailable"), ("sora-b", "submitted")]


async def test_missing_upstream_thumbnail_falls_back_to_the_gateways_own(tmp_path):
    fake = FakeVideosAPI(thumbnails=False)
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        status, thumb = await gw.get(f"/v1/videos/{task['id']}/content?variant=thumbnail", key, raw=True)
        assert status == 200 and thumb != SAMPLE_WEBP and len(thumb) > 0
    thumbs = [r for r in fake.requests if r.query.get("variant") == "thumbnail"]
    assert [r.status for r in thumbs] == [404]


async def test_image_url_is_fetched_by_the_gateway_and_uploaded(tmp_path):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    image = png(6, 6)
    images = Starlette(routes=[Route("/cat.png", lambda request: Response(image, media_type="image/png"))])
    fake = FakeVideosAPI()
    async with served(fake) as up, serve_app(images) as host:
        cfg = config(channel(up))
        cfg["network"] = {"max_retry_after_seconds": 1, "allow_image_networks": ["127.0.0.0/8"]}
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            body = {"model": "sora-2", "prompt": "p", "input_reference": {"image_url": host.url + "/cat.png"}}
            status, task = await gw.post("/v1/videos", key, json=body)
            assert status == 200, task
            # GIF is not an image type the Videos API takes: refused before any call.
            gif = base64.b64encode(b"GIF89a" + b"\x00" * 20).decode()
            status, err = await gw.post("/v1/videos", key, json={"model": "sora-2", "prompt": "p", "image": gif})
            assert status == 400 and err["error"]["param"] == "image", err
    [create] = fake.creates()
    part = create.files["input_reference"]
    assert part.data == image and part.content_type == "image/png" and part.filename == "reference.png"


async def test_transient_poll_errors_never_fail_the_task(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up:
        cfg = {**config(channel(up)), "worker": {"max_backoff_seconds": 0.1}}
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token()
            fake.retrieve_error(2, 500)  # queued now: they only hit retrieves, never the create
            fake.retrieve_error(1, 429)
            _, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    retrieves = [r.status for r in fake.requests if r.method == "GET" and r.path.count("/") == 3]
    assert retrieves[:3] == [500, 500, 429] and retrieves[-1] == 200


async def test_image_urls_that_break_the_resolver_are_400s_and_the_channel_stays_up(tmp_path):
    """A 64-character label made ``getaddrinfo`` raise ``UnicodeError`` (counted against
    the channel); a Unicode-digit loopback address was fetched. Both are 400s on
    ``image``; nothing reaches the vendor, and a normal task completes afterwards."""
    fake = FakeVideosAPI()
    bad = ["http://" + "a" * 64 + ".example/x.png", "http://\uff11\uff12\uff17\uff0e0.0.1:1/x.png"]
    async with served(fake) as up:
        async with run_gateway(config(channel(up)), tmp_path) as gw:
            key = await gw.token()
            for url in bad * 2:
                status, err = await gw.post(
                    "/v1/video/generations", key, json={"model": "sora-2", "prompt": "p", "image": url}
                )
                assert status == 400 and err["error"]["param"] == "image", (url, err)
            status, task = await gw.post("/v1/video/generations", key, json={"model": "sora-2", "prompt": "p"})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    assert len(fake.creates()) == 1


async def test_extend_and_edit_pass_through_to_the_upstream(tmp_path):
    fake = FakeVideosAPI()
    async with served(fake) as up, run_gateway(config(channel(up)), tmp_path) as gw:
        key = await gw.token("t", quota=100)
        _, source = await gw.post("/v1/videos", key, json={"model": "sora-2", "prompt": "a cat", "seconds": "8"})
        assert (await gw.wait(source["id"], key))["status"] == "completed"
        source_upstream = next(iter(fake.videos))

        status, ext = await gw.post(
            "/v1/videos/extensions",
            key,
            json={"prompt": "the cat jumps", "seconds": "4", "video": {"id": source["id"]}},
        )
        assert status == 200, ext
        assert ext["derived_from"] == {"video_id": source["id"], "operation": "extend"}
        assert ext["remixed_from_video_id"] is None and ext["seconds"] == "4"
        status, edit = await gw.post(
            "/v1/videos/edits", key, json={"prompt": "make it blue", "video": {"id": source["id"]}}
        )
        assert status == 200, edit
        for task in (ext, edit):
            assert (await gw.wait(task["id"], key))["status"] == "completed"

    [ex] = fake.extensions()
    assert ex.json == {"prompt": "the cat jumps", "seconds": "4", "video": {"id": source_upstream}} and ex.status == 200
    [ed] = fake.edits()
    assert ed.json == {"prompt": "make it blue", "video": {"id": source_upstream}} and ed.status == 200
