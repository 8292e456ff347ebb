"""The official ``dashscope`` SDK, pointed at the fake by base URL: proof that the fake
speaks the wire protocol the real client speaks (paths, headers, envelopes, statuses)."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import dashscope
import pytest
from dashscope import VideoSynthesis

from vidgate_dashscope.fake import CREATE, FakeDashScope


@pytest.fixture
def sdk_base():
    saved = dashscope.base_http_api_url
    yield
    dashscope.base_http_api_url = saved


async def test_sdk_async_call_fetch_wait_and_cancel_against_the_fake(sdk_base):
    fake = FakeDashScope(polls_to_finish=1)
    async with fake.serve():
        dashscope.base_http_api_url = fake.url + "/api/v1"

        def run() -> tuple[object, object, object, object, object]:
            created = VideoSynthesis.async_call(
                model="wan2.6-t2v", prompt="a fox", size="1280*720", duration=5, seed=7, api_key=fake.secret
            )
            fetched = VideoSynthesis.fetch(created, api_key=fake.secret)
            done = VideoSynthesis.wait(created, api_key=fake.secret)
            pending = VideoSynthesis.async_call(model="wan2.6-t2v", prompt="stop me", api_key=fake.secret)
            cancelled = VideoSynthesis.cancel(pending, api_key=fake.secret)
            refused = VideoSynthesis.cancel(created, api_key=fake.secret)
            return created, fetched, done, cancelled, refused

        created, fetched, done, cancelled, refused = await asyncio.to_thread(run)
        bad = await asyncio.to_thread(VideoSynthesis.async_call, model="wan2.6-t2v", prompt="p", api_key="sk-wrong")
    assert created.status_code == HTTPStatus.OK and created.output.task_status == "PENDING"
    assert fetched.output.task_status in ("PENDING", "RUNNING", "SUCCEEDED")
    assert done.status_code == HTTPStatus.OK and done.output.task_status == "SUCCEEDED"
    assert done.output.video_url.startswith(fake.url)
    assert done.usage.duration == 5
    assert cancelled.status_code == HTTPStatus.OK
    assert refused.status_code == HTTPStatus.BAD_REQUEST and refused.code == "UnsupportedOperation"
    assert bad.status_code == HTTPStatus.UNAUTHORIZED and bad.code == "InvalidApiKey"
    # What the SDK sent is what the fake demands (and what the plugin sends).
    create = fake.creates()[0]
    assert create.headers["x-dashscope-async"] == "enable"
    assert create.json["model"] == "wan2.6-t2v" and create.json["input"]["prompt"] == "a fox"
    assert create.json["parameters"]["size"] == "1280*720" and create.json["parameters"]["duration"] == 5
    assert [j.state for j in fake.jobs.values()] == ["succeeded", "cancelled"]
    assert create.path == CREATE
