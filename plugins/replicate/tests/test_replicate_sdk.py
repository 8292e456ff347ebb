"""Replicate's official client (``replicate``) against the fake: proof the fake speaks
Replicate's predictions API and signs webhooks the way the SDK verifies them.

``replicate.Client(api_token=..., base_url=fake.url)`` is all it takes. The SDK is
synchronous (httpx), so these tests run it in a thread while the fake serves.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import replicate
from replicate.exceptions import ReplicateError
from replicate.webhook import Webhooks, WebhookSigningSecret

from vidgate_replicate.fake import MODELS, FakeReplicate


@pytest.fixture
async def fake():
    fake = FakeReplicate(polls_to_finish=1)
    async with fake.serve():
        yield fake


def client(fake: FakeReplicate, token: str | None = None) -> replicate.Client:
    return replicate.Client(api_token=token or fake.secret, base_url=fake.url)


async def test_sdk_create_get_and_wait(fake):
    def run() -> Any:
        c = client(fake)
        prediction = c.predictions.create(model="bytedance/seedance-1-pro", input={"prompt": "a fox", "duration": 5})
        assert prediction.status == "starting"
        got = c.predictions.get(prediction.id)
        while got.status not in ("succeeded", "failed", "canceled"):
            got = c.predictions.get(prediction.id)
        c._client.close()  # noqa: SLF001 - the SDK leaves its httpx client open
        return prediction, got

    prediction, got = await asyncio.to_thread(run)
    assert got.status == "succeeded" and got.output.endswith(".mp4") and got.metrics["predict_time"] == 12.5
    (create,) = fake.creates()
    assert create.path == "/v1/models/bytedance/seedance-1-pro/predictions"
    assert create.headers["authorization"] == f"Bearer {fake.secret}"


async def test_sdk_version_create_cancel_and_errors(fake):
    version = MODELS["bytedance/seedance-1-pro"].version

    def run() -> Any:
        c = client(fake)
        prediction = c.predictions.create(version=version, input={"prompt": "held [hold]"})
        canceled = c.predictions.cancel(prediction.id)
        with pytest.raises(ReplicateError) as bad_input:
            c.predictions.create(model="bytedance/seedance-1-pro", input={"prompt": "x", "duration": 7})
        with pytest.raises(ReplicateError) as bad_key:
            client(fake, "r8_nope").predictions.create(model="bytedance/seedance-1-pro", input={"prompt": "x"})
        c._client.close()  # noqa: SLF001
        return canceled, bad_input.value, bad_key.value

    canceled, bad_input, bad_key = await asyncio.to_thread(run)
    assert canceled.status == "canceled"
    assert bad_input.status == 422 and "input.duration" in (bad_input.detail or "")
    assert bad_key.status == 401
    assert fake.recorded("POST", "/v1/predictions")[0].json["version"] == version


async def test_sdk_verifies_the_fakes_webhook_signature(fake):
    received: list[tuple[bytes, dict[str, str]]] = []
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from vidgate.testing import serve_app

    async def receiver(request):
        received.append((await request.body(), dict(request.headers)))
        return JSONResponse({})

    async with serve_app(Starlette(routes=[Route("/hook", receiver, methods=["POST"])])) as hook:
        job = fake.new_job("hooked", model="google/veo-3", version="", input={"prompt": "hooked"}, created_at="now")
        fake.send_signed_webhook(f"{hook.url}/hook", job)
        for _ in range(250):
            if received:
                break
            await asyncio.sleep(0.02)
    ((body, headers),) = received
    secret = WebhookSigningSecret(key=fake.webhook_secret)
    Webhooks.validate(headers=headers, body=body.decode(), secret=secret)  # raises unless valid
    with pytest.raises(Exception, match="ignature"):
        Webhooks.validate(headers=headers, body=body.decode() + " ", secret=secret)
    assert json.loads(body)["id"] == job.id
