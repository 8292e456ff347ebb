"""fal's official client (``fal-client``) against the fake: proof the fake speaks fal's queue.

fal-client builds its queue URLs from the module constant ``QUEUE_URL_FORMAT``
(``https://{FAL_QUEUE_RUN_HOST}/``, read from the environment at import time, HTTPS only);
pointing that attribute at the fake's ``http://127.0.0.1:PORT/`` is the one change.
"""

from __future__ import annotations

import fal_client
import fal_client.client
import pytest

from vidgate_fal.fake import FakeFal

APP = "fal-ai/kling-video/v2.1/master/text-to-video"


@pytest.fixture
async def fake(monkeypatch):
    fake = FakeFal(polls_to_finish=1)
    async with fake.serve():
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", fake.url + "/")
        yield fake


@pytest.fixture
async def clients():
    """fal-client's AsyncClient opens an httpx client it never closes itself: close them."""
    made: list[fal_client.AsyncClient] = []

    def make(key: str) -> fal_client.AsyncClient:
        made.append(fal_client.AsyncClient(key=key))
        return made[-1]

    yield make
    for client in made:
        await (await client._client).aclose()


async def test_sdk_submit_status_result(fake, clients):
    client = clients(fake.secret)
    handle = await client.submit(APP, {"prompt": "a fox", "duration": "5", "aspect_ratio": "16:9"})
    assert handle.status_url.endswith(f"/fal-ai/kling-video/requests/{handle.request_id}/status")
    first = await handle.status(with_logs=True)
    assert isinstance(first, (fal_client.Queued, fal_client.InProgress, fal_client.Completed))
    result = await handle.get(interval=0.01)
    assert result["video"]["content_type"] == "video/mp4"
    status = await client.status(APP, handle.request_id)
    assert isinstance(status, fal_client.Completed) and status.error is None
    again = await client.result(APP, handle.request_id)  # the root URL the SDK builds itself
    assert again == result
    (create,) = fake.creates()
    assert create.path == "/" + APP and create.headers["authorization"] == f"Key {fake.secret}"


async def test_sdk_sees_validation_errors_and_failures(fake, clients):
    client = clients(fake.secret)
    with pytest.raises(fal_client.client.FalClientHTTPError) as info:
        await client.submit(APP, {"prompt": "x", "duration": "7"})
    assert info.value.status_code == 422
    handle = await client.submit(APP, {"prompt": "doomed [fail]"})
    for _ in range(5):
        status = await handle.status()
        if isinstance(status, fal_client.Completed):
            break
    assert isinstance(status, fal_client.Completed) and "could not render" in (status.error or "")


async def test_sdk_cancel(fake, clients):
    client = clients(fake.secret)
    handle = await client.submit(APP, {"prompt": "held [hold]"})
    await client.cancel(APP, handle.request_id)
    (put,) = fake.recorded("PUT")
    assert put.path == f"/fal-ai/kling-video/requests/{handle.request_id}/cancel" and put.status == 202


async def test_sdk_with_a_wrong_key_is_refused(fake, clients):
    client = clients("not-the-key")
    with pytest.raises(fal_client.client.FalClientHTTPError) as info:
        await client.submit(APP, {"prompt": "x"})
    assert info.value.status_code == 401
