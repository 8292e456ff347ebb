"""The official BytePlus SDK (Ark runtime) drives the fake: the fake speaks Ark's wire."""

from __future__ import annotations

import asyncio

import pytest

from vidgate_seedance.fake import FakeArk

ark_runtime = pytest.importorskip("byteplussdkarkruntime", reason="the test extra installs byteplus-python-sdk-v2")


async def test_sdk_create_get_list_delete_against_the_fake():
    fake = FakeArk(platform="byteplus")
    async with fake.serve():
        client = ark_runtime.Ark(base_url=fake.api_url, api_key=fake.secret, max_retries=0)
        tasks = client.content_generation.tasks

        def run() -> None:
            created = tasks.create(
                model="dreamina-seedance-2-0-260128",
                content=[{"type": "text", "text": "a lighthouse at dusk"}],
                resolution="720p",
                ratio="16:9",
                duration=5,
                return_last_frame=True,
            )
            queued = tasks.create(
                model="dreamina-seedance-1-0-pro-250528",
                content=[{"type": "text", "text": "stays in line [queued]"}],
            )
            first = tasks.get(task_id=created.id)
            assert first.status == "running"
            done = tasks.get(task_id=created.id)
            assert done.status == "succeeded" and done.content.video_url and done.content.last_frame_url
            assert done.usage.completion_tokens == 108000
            page = tasks.list(page_num=1, page_size=10, task_ids=[created.id, queued.id])
            assert page.total == 2 and {t.id for t in page.items} == {created.id, queued.id}
            tasks.delete(queued.id)
            assert tasks.get(task_id=queued.id).status == "cancelled"
            with pytest.raises(ark_runtime._exceptions.ArkAPIError) as refused:
                tasks.create(model="dreamina-seedance-2-0-260128", content=[{"type": "text", "text": "x"}], duration=40)
            assert refused.value.status_code == 400 and "duration" in str(refused.value)

        await asyncio.to_thread(run)
        (listed,) = fake.list_calls()
        assert listed.query["filter.task_ids"].count(",") == 1
        # The SDK's own wire: Bearer key and JSON body.
        assert fake.creates()[0].headers["authorization"] == f"Bearer {fake.secret}"
