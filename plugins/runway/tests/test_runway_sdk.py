"""The official Runway SDK (``runwayml``) pointed at the fake: the fake speaks Runway's
protocol as the SDK sends and reads it (paths, headers, bodies, task objects)."""

from __future__ import annotations

import asyncio
import base64

import pytest

from vidgate.testing import tiny_png
from vidgate_runway.fake import FakeRunway

runwayml = pytest.importorskip("runwayml")


async def test_sdk_image_to_video_retrieve_and_delete():
    fake = FakeRunway()
    fake.polls_to_finish = 2
    async with fake.serve():
        client = runwayml.RunwayML(api_key=fake.secret, base_url=fake.url, max_retries=0)
        image = "data:image/png;base64," + base64.b64encode(tiny_png(32, 32)).decode()

        def run() -> tuple[str, list[str], str]:
            created = client.image_to_video.create(
                model="gen4_turbo", prompt_image=image, ratio="1280:720", duration=5, prompt_text="a fox"
            )
            statuses = []
            for _ in range(5):
                task = client.tasks.retrieve(created.id)
                statuses.append(task.status)
                if task.status == "SUCCEEDED":
                    break
            held = client.text_to_video.create(
                model="gen4.5", prompt_text="hold on [hold]", ratio="720:1280", duration=4
            )
            client.tasks.delete(held.id)
            return created.id, statuses, client.tasks.retrieve(held.id).status

        task_id, statuses, cancelled = await asyncio.to_thread(run)
        with pytest.raises(runwayml.AuthenticationError):
            bad = runwayml.RunwayML(api_key="key_wrong", base_url=fake.url, max_retries=0)
            await asyncio.to_thread(bad.tasks.retrieve, task_id)
        with pytest.raises(runwayml.BadRequestError):
            await asyncio.to_thread(
                client.text_to_video.create, model="gen4.5", prompt_text="x", ratio="1104:832", duration=5
            )
    assert statuses[-1] == "SUCCEEDED" and statuses[0] in ("PENDING", "RUNNING")
    assert cancelled == "CANCELLED"
    [create] = [r for r in fake.creates("image_to_video")]
    assert create.json == {
        "model": "gen4_turbo",
        "promptImage": image,
        "ratio": "1280:720",
        "duration": 5,
        "promptText": "a fox",
    }
    # The SDK sends the version header the fake insists on.
    assert {r.headers["x-runway-version"] for r in fake.requests} == {"2024-11-06"}
    assert fake.recorded("DELETE")[0].status == 204
