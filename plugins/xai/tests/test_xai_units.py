"""Units: status words, error classification, and the fake's strictness."""

from __future__ import annotations

import aiohttp
import pytest

from vidgate.errors import (
    ChannelUnusable,
    ModelRetired,
    TaskNotFound,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate_xai import mapping
from vidgate_xai.fake import FakeXAI


def test_poll_words():
    assert mapping.poll_result(202, None, "generate").status == "in_progress"
    pending = mapping.poll_result(202, {"status": "pending", "progress": 40}, "generate")
    assert (pending.status, pending.progress) == ("in_progress", 40)
    done = mapping.poll_result(
        200,
        {
            "status": "done",
            "video": {"url": "https://cdn.x.ai/v.mp4", "duration": 6},
            "usage": {"cost_in_usd_ticks": 7},
        },
        "generate",
    )
    assert done.status == "completed" and done.usage == {"seconds": 6}
    assert done.result == {"url": "https://cdn.x.ai/v.mp4", "duration": 6, "cost_in_usd_ticks": 7}
    # No `status` but a video: finished (as vercel/ai reads xAI).
    assert mapping.poll_result(200, {"video": {"url": "https://cdn.x.ai/v.mp4"}}, "generate").status == "completed"
    # An extension's duration may be the stitched total: not settled on.
    ext = mapping.poll_result(200, {"status": "done", "video": {"url": "https://c/v.mp4", "duration": 14}}, "extend")
    assert ext.status == "completed" and ext.usage is None
    expired = mapping.poll_result(200, {"status": "expired"}, "generate")
    assert expired.status == "failed" and expired.error is not None and expired.error.code == "expired"
    blocked = mapping.poll_result(
        200, {"status": "done", "video": {"url": "https://c/v.mp4", "respect_moderation": False}}, "generate"
    )
    assert blocked.status == "failed" and blocked.error is not None and blocked.error.code == "content_filtered"
    no_url = mapping.poll_result(200, {"status": "done", "video": {}}, "generate")
    assert no_url.status == "failed" and no_url.error is not None and no_url.error.code == "vendor_no_result"
    failed = mapping.poll_result(200, {"status": "failed", "error": {"code": "x", "message": "why"}}, "generate")
    assert failed.error is not None and (failed.error.code, failed.error.message) == ("x", "why")
    assert mapping.poll_result(200, {"status": "rendering"}, "generate").status == "unknown"
    assert mapping.poll_result(200, {}, "generate").status == "unknown"


@pytest.mark.parametrize(
    ("status", "body", "operation", "cls", "param"),
    [
        (
            400,
            {"error": {"code": "invalid_argument", "message": "bad duration", "param": "duration"}},
            "generate",
            VendorRejected,
            "seconds",
        ),
        # xAI's flat REST shape on other routes: {"code", "error": "<message>"}.
        (400, {"code": "Client specified an invalid argument", "error": "bad"}, "generate", VendorRejected, None),
        (401, {"error": {"code": "unauthenticated", "message": "bad key"}}, "generate", ChannelUnusable, None),
        (403, {"code": "forbidden", "error": "no credits"}, "generate", ChannelUnusable, None),
        (
            404,
            {"error": {"code": "not_found", "message": "The model m does not exist"}},
            "generate",
            ModelRetired,
            None,
        ),
        (404, {"error": {"code": "not_found", "message": "no such video"}}, "extend", VendorRejected, "video"),
        (404, {"error": {"code": "not_found", "message": "no such request"}}, "poll", TaskNotFound, None),
        (429, {"error": {"code": "rate_limit_exceeded", "message": "slow"}}, "generate", VendorRateLimited, None),
        (500, "<html>oops</html>", "generate", VendorUnavailable, None),
        (422, None, "poll", VendorUnavailable, None),
    ],
)
def test_classification(status, body, operation, cls, param):
    err = mapping.classify(status, body, {"Retry-After": "3"}, operation=operation)
    assert type(err) is cls, err
    assert err.param == param
    if cls is VendorRateLimited:
        assert err.retry_after == 3
    if status == 500:
        assert err.maybe_received is False  # xAI's own error answer: no job was made


async def test_the_fake_is_strict_like_the_reference():
    fake = FakeXAI()
    base = {"model": "grok-imagine-video", "prompt": "p"}
    refused = [
        {**base, "resolution": "1080p"},
        {**base, "duration": 16},
        {**base, "duration": "8"},
        {**base, "aspect_ratio": "21:9"},
        {**base, "last_frame": {"url": "https://a/b.png"}},
        {**base, "image": {"url": "https://a/b.png"}, "reference_images": [{"url": "https://a/c.png"}]},
        {
            **base,
            "model": "grok-imagine-video-1.5",
            "resolution": "1080p",
            "reference_images": [{"url": "https://a/c.png"}],
        },
        {**base, "reference_images": [{"url": "https://a/c.png"}] * 8},
        {**base, "image": "https://a/b.png"},
        {**base, "seconds": 8},
        {**base, "prompt": "x" * 4097},
    ]
    async with fake.serve(), aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {fake.secret}"}
        for body in refused:
            async with http.post(f"{fake.url}/v1/videos/generations", json=body, headers=auth) as resp:
                assert resp.status == 400, body
                assert (await resp.json())["error"]["message"]
        async with http.post(
            f"{fake.url}/v1/videos/generations", json=base, headers={"Authorization": "Bearer no"}
        ) as resp:
            assert resp.status == 401
        async with http.post(
            f"{fake.url}/v1/videos/generations", json={**base, "model": "grok-2"}, headers=auth
        ) as resp:
            assert resp.status == 404
        async with http.post(f"{fake.url}/v1/videos/generations", json=base, headers=auth) as resp:
            assert resp.status == 200
            rid = (await resp.json())["request_id"]
        async with http.get(f"{fake.url}/v1/videos/{rid}", headers=auth) as resp:
            assert resp.status == 202 and await resp.read() == b""
        async with http.get(f"{fake.url}/v1/videos/{rid}", headers=auth) as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "done"
