"""The plugin's calls against the fake Kling server, without the gateway around them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
import structlog
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from vidgate import CallContext, Channel, PollResult
from vidgate.errors import ChannelUnusable, TaskNotFound, VendorRateLimited, VendorRejected, VendorUnavailable
from vidgate.request import parse_request
from vidgate.testing import serve_app
from vidgate_kling import plugin
from vidgate_kling.client import classify
from vidgate_kling.fake import FakeKling

AK, SK = "ak-unit", "sk-unit"


@contextlib.asynccontextmanager
async def context(app, timeout: float = 5.0, task_id: str = "video_unit_1"):
    async with serve_app(app) as served, aiohttp.ClientSession() as http:
        ch = Channel(name="k", vendor="kling", base_url=served.url, credentials={"access_key": AK, "secret_key": SK})
        yield CallContext(
            channel=ch,
            http=http,
            task_id=task_id,
            log=structlog.get_logger("test"),
            workdir=Path("."),
            timeout=aiohttp.ClientTimeout(total=timeout),
        )


def job(body=None):
    model = next(m for m in plugin.models if m.name == "kling-v1-6")
    ch = Channel(name="k", vendor="kling")
    return plugin.map_request(parse_request({"model": "kling-v1-6", "prompt": "x", **(body or {})}), model, ch)


@pytest.mark.parametrize(
    "code, cls",
    [
        (1000, ChannelUnusable),
        (1001, ChannelUnusable),
        (1002, ChannelUnusable),
        (1003, ChannelUnusable),
        (1004, ChannelUnusable),
        (1100, ChannelUnusable),
        (1101, ChannelUnusable),
        (1102, ChannelUnusable),
        (1103, ChannelUnusable),
        (1304, ChannelUnusable),
        (1200, VendorRejected),
        (1201, VendorRejected),
        (1202, VendorRejected),
        (1203, VendorRejected),
        (1300, VendorRejected),
        (1301, VendorRejected),
        (1302, VendorRateLimited),
        (1303, VendorRateLimited),
        (5000, VendorUnavailable),
        (5001, VendorUnavailable),
        (5002, VendorUnavailable),
    ],
)
def test_classify_by_business_code(code, cls):
    err = classify(code, "msg", request_id="r1", retry_after=None)
    assert type(err) is cls and err.vendor_code == code and err.request_id == "r1"
    if cls is VendorRateLimited:
        assert err.retry_after == 1.0


def test_parse_callback():
    assert plugin.parse_callback(json.dumps({"task_id": "8600", "task_status": "succeed"}).encode(), {}) == "8600"
    assert plugin.parse_callback(b'{"code":0,"data":{"task_id":"77"}}', {}) == "77"
    assert plugin.parse_callback(b"not json", {}) is None
    assert plugin.parse_callback(b'{"task_status":"succeed"}', {}) is None
    assert plugin.parse_callback(b"[1,2]", {}) is None
    assert plugin.parse_callback(b"[" * 100_000 + b"]" * 100_000, {}) is None
    assert plugin.parse_callback(b'{"data":' * 20_000 + b"1" + b"}" * 20_000, {}) is None


async def test_poll_maps_statuses_and_reports_no_progress():
    fake = FakeKling(access_key=AK, secret_key=SK, polls_to_finish=3)
    async with context(fake.app) as ctx:
        fake.base_url = ctx.channel.base_url
        sub = await plugin.submit(job(), ctx)
        seen = []
        for _ in range(3):
            seen.append(await plugin.poll(sub.handle, ctx))
        assert [r.status for r in seen] == ["in_progress", "in_progress", "completed"]
        assert all(r.progress is None for r in seen)
        result = seen[-1].result
        assert result["url"] == f"{ctx.channel.base_url}/cdn/{sub.vendor_task_id}.mp4"
        kling_task = fake.tasks["text2video"][sub.vendor_task_id]
        assert result["video_id"] == kling_task["task_result"]["videos"][0]["id"]
        assert result["duration"] == 5.0 and result["created_at"] == kling_task["created_at"]
        # std 5 s: 2 units, as the fake deducted them.
        assert kling_task["final_unit_deduction"] == "2"
        assert seen[-1].usage == {"credits": 2.0}
        fake.set_status("text2video", sub.vendor_task_id, "weird_new_state")
        assert await plugin.poll(sub.handle, ctx) == PollResult.unknown("weird_new_state")
        fake.set_status("text2video", sub.vendor_task_id, "submitted")
        assert (await plugin.poll(sub.handle, ctx)).status == "queued"
        source = await plugin.fetch_result(sub.handle, seen[-1].result, "thumbnail", ctx)
        assert source is None


async def test_poll_errors_are_transient_and_unknown_task_is_not_a_failure():
    fake = FakeKling(access_key=AK, secret_key=SK)
    async with context(fake.app) as ctx:
        sub = await plugin.submit(job(), ctx)
        fake.malformed_polls(1, "non_json")
        with pytest.raises(VendorUnavailable):
            await plugin.poll(sub.handle, ctx)
        fake.malformed_polls(1, "missing")
        with pytest.raises(VendorUnavailable):
            await plugin.poll(sub.handle, ctx)
        # Wrong family: Kling does not know the id there (1203): the task is not found
        # (the core fails it only after its not-found grace), never TaskFailed.
        with pytest.raises(TaskNotFound) as info:
            await plugin.poll({"task_id": sub.vendor_task_id, "family": "image2video"}, ctx)
        assert info.value.vendor_code == 1203


async def test_server_errors_and_timeouts_are_unavailable():
    fake = FakeKling(access_key=AK, secret_key=SK)
    async with context(fake.app) as ctx:
        fake.fail_creates(5000)
        with pytest.raises(VendorUnavailable) as info:
            await plugin.submit(job(), ctx)
        assert info.value.vendor_code == 5000 and info.value.request_id

    async def slow(request):
        await asyncio.sleep(2)
        return Response("{}")

    app = Starlette(routes=[Route("/v1/videos/text2video", slow, methods=["POST"])])
    async with context(app, timeout=0.2) as ctx:
        with pytest.raises(VendorUnavailable, match="timed out"):
            await plugin.submit(job(), ctx)


async def test_renewal_happens_only_once():
    # A server clock 2 hours ahead: every token we mint is already expired there.
    fake = FakeKling(access_key=AK, secret_key=SK)
    import vidgate_kling.fake as fake_module

    real_time = fake_module.time.time
    fake_module.time = type("T", (), {"time": staticmethod(lambda: real_time() + 7200)})
    try:
        async with context(fake.app) as ctx:
            with pytest.raises(ChannelUnusable) as info:
                await plugin.submit(job(), ctx)
            assert info.value.vendor_code == 1004
            assert [r.code for r in fake.creates()] == [1004, 1004]
    finally:
        import time as time_module

        fake_module.time = time_module


async def test_missing_credentials_are_channel_unusable():
    fake = FakeKling(access_key=AK, secret_key=SK)
    async with context(fake.app) as ctx:
        ctx.channel = Channel(name="k", vendor="kling", base_url=ctx.channel.base_url, credentials={})
        with pytest.raises(ChannelUnusable):
            await plugin.submit(job(), ctx)
        assert fake.requests == []


async def test_fake_is_strict():
    """The fake refuses what real Kling refuses (so the flow tests mean something)."""
    from vidgate_kling.auth import mint_token

    fake = FakeKling(access_key=AK, secret_key=SK)
    async with serve_app(fake.app) as served, aiohttp.ClientSession() as http:
        token, _ = mint_token(AK, SK)
        auth = {"Authorization": f"Bearer {token}"}

        async def post(path, body, headers=auth):
            async with http.post(served.url + path, json=body, headers=headers) as resp:
                return resp.status, await resp.json()

        assert (await post("/v1/videos/text2video", {"prompt": "x"}, headers={}))[1]["code"] == 1001
        bad, _ = mint_token(AK, "wrong")
        assert (await post("/v1/videos/text2video", {"prompt": "x"}, {"Authorization": f"Bearer {bad}"}))[1][
            "code"
        ] == 1002
        status, body = await post("/v1/videos/text2video", {"prompt": "x", "duration": 5})
        assert (status, body["code"]) == (400, 1201)
        status, body = await post("/v1/videos/text2video", {"prompt": "x", "model_name": "kling-v9"})
        assert (status, body["code"]) == (400, 1201)
        status, body = await post("/v1/videos/text2video", {"prompt": "x", "model_name": "kling-v1-5"})
        assert (status, body["code"]) == (400, 1201)
        status, body = await post("/v1/videos/image2video", {"image": "data:image/png;base64,iVBORw0KGgo="})
        assert (status, body["code"]) == (400, 1201)
        status, body = await post("/v1/videos/text2video", {"prompt": "x", "duration": "5", "external_task_id": "e1"})
        assert status == 200 and body["code"] == 0 and isinstance(body["data"]["task_id"], str)
        assert isinstance(body["data"]["created_at"], int) and body["data"]["created_at"] > 10**12
        async with http.get(served.url + "/v1/videos/image2video/e1", headers=auth) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == 1203
        async with http.get(served.url + "/v1/videos/text2video/e1", headers=auth) as resp:
            assert (await resp.json())["data"]["task_info"] == {"external_task_id": "e1"}


async def test_not_yet_valid_token_is_renewed_with_more_skew():
    # Kling's clock 30 s behind ours: nbf = now-5 is in its future (1003); the renewal
    # back-dates nbf by 60 s and goes through.
    fake = FakeKling(access_key=AK, secret_key=SK)
    import vidgate_kling.fake as fake_module

    real_time = fake_module.time.time
    fake_module.time = type("T", (), {"time": staticmethod(lambda: real_time() - 30)})
    try:
        async with context(fake.app) as ctx:
            sub = await plugin.submit(job(), ctx)
            assert sub.vendor_task_id
            assert [r.code for r in fake.creates()] == [1003, 0]
            # The renewed token is cached and used for the next call.
            await plugin.poll(sub.handle, ctx)
            assert fake.requests[-1].code == 0
            assert fake.requests[-1].headers["authorization"] == fake.requests[1].headers["authorization"]
    finally:
        import time as time_module

        fake_module.time = time_module


async def test_pyjwt_interoperates_with_plugin_and_fake():
    """Kling has no official Python SDK; its docs mint the AK/SK token with PyJWT. A
    PyJWT token is what the fake accepts, and the plugin's token is what PyJWT verifies."""
    import time

    import jwt

    from vidgate_kling.auth import mint_token

    sk = "sk-unit-secret-long-enough-for-pyjwt-hs256"  # PyJWT warns below 32 bytes

    ours, exp = mint_token(AK, sk)
    claims = jwt.decode(ours, sk, algorithms=["HS256"], issuer=AK, options={"require": ["exp", "nbf", "iss"]})
    assert claims["exp"] == exp and jwt.get_unverified_header(ours) == {"alg": "HS256", "typ": "JWT"}

    fake = FakeKling(access_key=AK, secret_key=sk)
    now = int(time.time())
    good = jwt.encode({"iss": AK, "exp": now + 1800, "nbf": now - 5}, sk, algorithm="HS256", headers={"typ": "JWT"})
    stale = jwt.encode({"iss": AK, "exp": now - 1, "nbf": now - 1805}, sk, algorithm="HS256")
    async with serve_app(fake.app) as served, aiohttp.ClientSession() as http:
        for token, code in ((good, 0), (stale, 1004)):
            async with http.post(
                served.url + "/v1/videos/text2video",
                json={"prompt": "x", "model_name": "kling-v3", "duration": "12"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                assert (await resp.json())["code"] == code
