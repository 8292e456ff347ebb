"""The fake's strictness, error classification and request mapping, piece by piece."""

from __future__ import annotations

import aiohttp
import pytest

from vidgate import Size, VideoRequest
from vidgate.errors import (
    ChannelUnusable,
    RequestInvalid,
    TaskFailed,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.testing import serve_app
from vidgate_sora import client, mapping
from vidgate_sora.fake import SAMPLE_WEBP, FakeVideosAPI, sample_mp4

AUTH = {"Authorization": "Bearer sk-test"}
VIDEO_FIELDS = {
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "size",
    "seconds",
    "remixed_from_video_id",
    "error",
}


async def test_fake_is_strict_like_the_real_api():
    fake = FakeVideosAPI()
    async with serve_app(fake.app) as up, aiohttp.ClientSession() as http:
        base = up.url + "/v1/videos"
        async with http.post(base, json={"prompt": "p"}, headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "invalid_api_key"
        async with http.post(base, json={"prompt": "p", "seconds": 4}, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "seconds"
        async with http.post(base, json={"prompt": "p", "size": "1792x1024"}, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "size"
        async with http.post(base, json={"prompt": "p", "model": "sora-3"}, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "model"
        async with http.post(base, json={"prompt": "p", "style": "x"}, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "unknown_parameter"
        form = aiohttp.FormData()
        form.add_field("prompt", "p")
        form.add_field("input_reference", b"GIF89a....", filename="a.gif", content_type="image/gif")
        async with http.post(base, data=form, headers=AUTH) as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "input_reference"

        async with http.post(base, json={"prompt": "p", "seconds": "8"}, headers=AUTH) as r:
            assert r.status == 200
            assert r.headers["openai-poll-after-ms"] == "10" and r.headers["x-request-id"]
            video = await r.json()
        assert set(video) == VIDEO_FIELDS
        assert video["status"] == "queued" and video["seconds"] == "8" and video["size"] == "720x1280"
        vid = video["id"]
        async with http.get(f"{base}/{vid}/content", headers=AUTH) as r:
            assert r.status == 400  # not ready
        async with http.delete(f"{base}/{vid}", headers=AUTH) as r:
            assert r.status == 400  # not finished
        progress = []
        for _ in range(fake.polls_to_finish):
            async with http.get(f"{base}/{vid}", headers=AUTH) as r:
                video = await r.json()
                progress.append((video["status"], video["progress"]))
        assert progress == [("in_progress", 33), ("in_progress", 66), ("completed", 100)]
        assert video["completed_at"] and video["expires_at"]
        async with http.get(f"{base}/{vid}/content", headers=AUTH) as r:
            assert r.status == 200 and r.content_type == "video/mp4" and await r.read() == sample_mp4()
        async with http.get(f"{base}/{vid}/content?variant=thumbnail", headers=AUTH) as r:
            assert r.content_type == "image/webp" and await r.read() == SAMPLE_WEBP
        async with http.post(f"{base}/nope/remix", json={"prompt": "q"}, headers=AUTH) as r:
            assert r.status == 404
        async with http.post(f"{base}/{vid}/remix", json={"prompt": "q"}, headers=AUTH) as r:
            remix = await r.json()
            assert remix["remixed_from_video_id"] == vid and remix["id"] != vid and remix["seconds"] == "8"

        async with http.get(f"{base}?limit=1&order=asc", headers=AUTH) as r:
            page = await r.json()
        assert [v["id"] for v in page["data"]] == [vid] and page["has_more"] is True
        assert page["first_id"] == page["last_id"] == vid
        async with http.get(f"{base}?limit=1&order=asc&after={vid}", headers=AUTH) as r:
            page = await r.json()
        assert [v["id"] for v in page["data"]] == [remix["id"]] and page["has_more"] is False
        async with http.delete(f"{base}/{vid}", headers=AUTH) as r:
            assert await r.json() == {"id": vid, "object": "video.deleted", "deleted": True}
        async with http.get(f"{base}/{vid}", headers=AUTH) as r:
            assert r.status == 404


def test_classification_of_upstream_errors():
    def err(code=None, type_="invalid_request_error", param=None, message="m"):
        return {"error": {"message": message, "type": type_, "param": param, "code": code}}

    rejected = client.classify(400, err("invalid_value", param="size"), {"x-request-id": "req_1"}, operation="create")
    assert isinstance(rejected, VendorRejected) and rejected.param == "size" and rejected.request_id == "req_1"
    extra = client.classify(400, err("unknown_parameter", param="vibe"), {}, operation="create", extra_keys=("vibe",))
    assert isinstance(extra, VendorRejected) and extra.param == "metadata.vibe"
    assert isinstance(client.classify(422, err(), {}, operation="create"), VendorRejected)
    assert isinstance(client.classify(404, err(), {}, operation="remix"), VendorRejected)
    quota = client.classify(429, err("insufficient_quota", "insufficient_quota"), {}, operation="create")
    assert isinstance(quota, ChannelUnusable)
    limited = client.classify(
        429, err("rate_limit_exceeded", "requests"), {"retry-after-ms": "1500"}, operation="create"
    )
    assert isinstance(limited, VendorRateLimited) and limited.retry_after == 1.5
    limited = client.classify(429, err("rate_limit_exceeded"), {"retry-after": "3"}, operation="create")
    assert limited.retry_after == 3
    for status in (401, 403):
        assert isinstance(client.classify(status, err(), {}, operation="create"), ChannelUnusable)
    for status in (500, 502, 503):
        assert isinstance(client.classify(status, "<html>", {}, operation="poll"), VendorUnavailable)
    gone = client.classify(404, err(), {}, operation="poll")
    assert isinstance(gone, TaskFailed)


def test_poll_after_header():
    assert client.poll_after({"openai-poll-after-ms": "2500"}) == 2.5
    assert client.poll_after({"openai-poll-after-ms": "soon"}) is None
    assert client.poll_after({}) is None


def test_mapping_sizes_seconds_and_metadata():
    sora2, pro = mapping.MODELS

    def job(model=sora2, **kw):
        return mapping.map_request(VideoRequest(model=model.name, prompt="p", **kw), model, model.name)

    assert job().payload["seconds"] == "4" and job().size == "720x1280"
    assert job(size=Size.parse("9:16")).size == "720x1280"
    assert job(size=Size.parse("16:9")).size == "1280x720"
    assert job(pro, size=Size.parse("7:4")).size == "1792x1024"
    assert job(pro, size=Size.parse("1024x1792")).resolution == "1024p"
    assert job(seconds=12).seconds == 12 and job(seconds=12).payload["seconds"] == "12"
    for model, kw, param in [
        (sora2, {"size": Size.parse("1792x1024")}, "size"),
        (sora2, {"size": Size.parse("1:1")}, "size"),
        (sora2, {"seconds": 10}, "seconds"),
        (sora2, {"metadata": {"seconds": "12"}}, "metadata.seconds"),
        (sora2, {"metadata": {"input_reference[image_url]": "x"}}, "metadata.input_reference[image_url]"),
        (sora2, {"metadata": {"tags": ["a"]}}, "metadata.tags"),
    ]:
        with pytest.raises(RequestInvalid) as info:
            job(model, **kw)
        assert info.value.param == param
    assert job(metadata={"user": "u", "opts": {"a": 1}}).payload["extra"] == {"user": "u", "opts": {"a": 1}}


async def test_the_official_openai_sdk_round_trips_against_the_fake():
    """The fake accepts what the real SDK sends (always multipart on create) and the SDK
    parses what the fake answers."""
    openai = pytest.importorskip("openai")
    import warnings

    fake = FakeVideosAPI()
    async with serve_app(fake.app) as up:
        sdk = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="sk-test", max_retries=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            video = await sdk.videos.create_and_poll(
                prompt="a fox",
                model="sora-2",
                seconds="8",
                size="1280x720",
                input_reference=("ref.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "image/png"),
            )
            assert video.status == "completed" and video.seconds == "8"
            content = await sdk.videos.download_content(video.id)
            assert await content.aread() == sample_mp4()
            remix = await sdk.videos.remix(video.id, prompt="again")
            assert remix.remixed_from_video_id == video.id
            page = await sdk.videos.list(limit=5)
            assert {v.id for v in page.data} == {video.id, remix.id}
            with pytest.raises(openai.BadRequestError) as info:
                await sdk.videos.create(prompt="p", model="sora-2", size="1792x1024")
            assert info.value.param == "size"
            await sdk.close()
    create = fake.creates()[0]
    assert create.is_multipart and create.fields["seconds"] == "8"
    assert create.files["input_reference"].filename == "ref.png"
