"""kill -9 at every point of a submit and a poll: every accepted task ends terminal, none is
duplicated at the vendor, and no charge is taken twice or kept for a failed task.

The gateway runs as a real process against the fake Kling server (which can look a task up
by the gateway's id, sent as Kling's external_task_id). A failpoint makes the process
SIGKILL itself at the named point; the client retries its submit with the same
Idempotency-Key, as a client whose connection dropped should.
"""

import asyncio
import os
import re
import signal
import textwrap
from pathlib import Path

import aiohttp
import pytest
from processes import GatewayProcess, create_token

from vidgate.billing import to_micro
from vidgate.store import Store
from vidgate.testing import serve_app
from vidgate_kling.fake import FakeKling

pytestmark = pytest.mark.slow
BODY = {"model": "kling-v1", "prompt": "a crash test", "seconds": 5}


def write_config(tmp_path, fake_url, vendor="kling", credentials=None, model="kling-v1"):
    """One channel of `vendor` on the fake at `fake_url`, with short leases and ticks."""
    credentials = credentials or {"access_key": "fake-ak", "secret_key": "fake-sk"}
    inline = ", ".join(f'{name} = "{value}"' for name, value in credentials.items())
    path = tmp_path / f"vidgate-{vendor}.toml"
    path.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{tmp_path / "data"}"
        [store]
        url = "sqlite:///{tmp_path / "data" / "vidgate.db"}"
        [media]
        path = "{tmp_path / "data" / "media"}"
        [worker]
        lease_seconds = 1.5
        tick_seconds = 0.1
        # An interrupted submit is taken over this long after its lease lapsed (by
        # default the outbound timeout, 60 s: far longer than these tests wait).
        submit_takeover_grace_seconds = 0.5
        [plugins]
        enabled = ["{vendor}"]
        [[channels]]
        name = "{vendor}"
        vendor = "{vendor}"
        base_url = "{fake_url}"
        allow_result_networks = ["127.0.0.0/8"]  # the fake serves results on loopback
        credentials = {{ {inline} }}
        [channels.options]
        poll_interval = 0.1
        [models.{model}]
        price_per_request = 1.0
    """)
    )
    return path


async def submit(http, url, key, idempotency_key):
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
    async with http.post(url + "/v1/video/generations", json=BODY, headers=headers) as r:
        return r.status, await r.json()


async def wait_terminal(http, url, key, task_id, timeout=40):
    for _ in range(int(timeout / 0.1)):
        async with http.get(url + f"/v1/videos/{task_id}", headers={"Authorization": f"Bearer {key}"}) as r:
            task = await r.json()
        if task["status"] in ("completed", "failed"):
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"not terminal: {task}")


@pytest.mark.parametrize(
    "failpoint", ["submit.before_vendor", "submit.after_vendor", "poll.after_vendor", "fetch.after_download"]
)
async def test_kill_9_at_each_point(tmp_path, failpoint):
    fake = FakeKling(polls_to_finish=2, send_callbacks=False)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        config = write_config(tmp_path, served.url)
        key = create_token(config, quota=10)
        gateway = GatewayProcess(tmp_path, config)
        await asyncio.to_thread(gateway.start, VIDGATE_FAILPOINTS=failpoint)
        try:
            async with aiohttp.ClientSession() as http:
                task_id = None
                try:
                    status, task = await submit(http, gateway.url, key, "client-retry-1")
                    assert status == 200, task
                    task_id = task["id"]
                except (TimeoutError, aiohttp.ClientError):
                    pass  # the gateway died mid-submit; the client will retry
                assert await asyncio.to_thread(gateway.wait_dead) != 0  # the failpoint fired

                await asyncio.to_thread(gateway.start)  # no failpoints now
                status, task = await submit(http, gateway.url, key, "client-retry-1")
                assert status == 200, task
                assert task_id in (None, task["id"])  # the retry found the same task
                done = await wait_terminal(http, gateway.url, key, task["id"])
                assert done["status"] == "completed", done
                status, listing = None, None
                async with http.get(gateway.url + "/v1/videos", headers={"Authorization": f"Bearer {key}"}) as r:
                    listing = await r.json()
                assert [t["id"] for t in listing["data"]] == [task["id"]]  # no duplicate task
        finally:
            await asyncio.to_thread(gateway.stop)
    # exactly one task reached Kling
    assert len(fake.creates()) == 1, [r.path for r in fake.creates()]
    store = await Store.open(f"sqlite:///{tmp_path / 'data' / 'vidgate.db'}")
    try:
        ledger = await store.ledger()
        assert [e.kind for e in ledger] == ["charge"]
        assert (await store.token("client")).used == to_micro(1.0)
    finally:
        await store.close()


async def test_an_image_task_killed_before_the_vendor_call_resubmits_its_image(tmp_path):
    """The job holds only an index into the stored request's images: after kill -9 the
    next process re-reads the request, and Kling still gets the image (stored once)."""
    import base64

    from vidgate.testing import tiny_png

    png = base64.b64encode(tiny_png(400, 400)).decode()
    fake = FakeKling(polls_to_finish=1, send_callbacks=False)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        config = write_config(tmp_path, served.url)
        key = create_token(config, quota=10)
        gateway = GatewayProcess(tmp_path, config)
        await asyncio.to_thread(gateway.start, VIDGATE_FAILPOINTS="submit.before_vendor")
        try:
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {key}"}
                with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
                    async with http.post(gateway.url + "/v1/videos", headers=headers, json={**BODY, "image": png}) as r:
                        await r.read()
                assert await asyncio.to_thread(gateway.wait_dead) != 0
                await asyncio.to_thread(gateway.start)  # the worker recovers the stored task
                store = await Store.open(f"sqlite:///{tmp_path / 'data' / 'vidgate.db'}")
                try:
                    [row] = await store.db.fetchall("SELECT task_id, job FROM task_blobs")
                finally:
                    await store.close()
                assert png[:100] not in row["job"]  # the bytes live in the request only
                done = await wait_terminal(http, gateway.url, key, row["task_id"])
                assert done["status"] == "completed", done
        finally:
            await asyncio.to_thread(gateway.stop)
    [create] = fake.creates()
    assert create.json["image"] == png


def _stopped(pid: int) -> bool:
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("point", ["submit.before_vendor", "submit.after_vendor"])
async def test_a_stalled_submit_taken_over_by_another_process_makes_one_vendor_job(tmp_path, point):
    """A process that stalls mid-submit (SIGSTOP at the failpoint) stops renewing its lease;
    another process takes the task over and finishes it. When the stalled one resumes it
    must not send the task to Kling a second time (it checks its lease before the vendor
    call and before storing the vendor's id), and its client gets the task the other made."""
    fake = FakeKling(polls_to_finish=1, send_callbacks=False)
    async with serve_app(fake.app) as served:
        fake.base_url = served.url
        config = write_config(tmp_path, served.url)
        key = create_token(config, quota=10)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        stalled, other = GatewayProcess(tmp_path / "a", config), GatewayProcess(tmp_path / "b", config)
        await asyncio.to_thread(stalled.start, VIDGATE_FAILPOINTS=f"{point}:stop")
        await asyncio.to_thread(other.start)
        try:
            async with aiohttp.ClientSession() as http:
                first = asyncio.create_task(submit(http, stalled.url, key, "stalled-1"))
                assert stalled.proc is not None
                for _ in range(300):
                    if _stopped(stalled.proc.pid):
                        break
                    await asyncio.sleep(0.05)
                assert _stopped(stalled.proc.pid)
                headers = {"Authorization": f"Bearer {key}"}
                async with http.get(other.url + "/v1/videos", headers=headers) as r:
                    [listed] = (await r.json())["data"]
                done = await wait_terminal(http, other.url, key, listed["id"])
                assert done["status"] == "completed", done
                os.kill(stalled.proc.pid, signal.SIGCONT)
                status, answer = await asyncio.wait_for(first, 30)
                assert status == 200, answer
                assert answer["id"] == listed["id"] and answer["status"] == "completed"
        finally:
            if stalled.proc is not None and stalled.proc.poll() is None:
                os.kill(stalled.proc.pid, signal.SIGCONT)
            await asyncio.to_thread(stalled.stop)
            await asyncio.to_thread(other.stop)
    assert len(fake.creates()) == 1, [r.json for r in fake.creates()]
    store = await Store.open(f"sqlite:///{tmp_path / 'data' / 'vidgate.db'}")
    try:
        assert [e.kind for e in await store.ledger()] == ["charge"]
    finally:
        await store.close()


async def test_a_vendor_job_the_stalled_process_could_not_store_is_cancelled(tmp_path):
    """The stalled process got its vendor job back (failpoint after the vendor call) but
    lost the task meanwhile: another process took it over and, unable to ask MiniMax
    whether the submit arrived, failed it with a refund. The job nobody polls would still
    run and bill, so the process that made it cancels it when it resumes."""
    from vidgate_minimax.fake import FakeMiniMax

    api_key = "mm-crash-key-0123456789"
    fake = FakeMiniMax(secret=api_key)
    async with fake.serve():
        config = write_config(tmp_path, fake.url, "minimax", {"api_key": api_key}, "MiniMax-H3")
        key = create_token(config, quota=10)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        stalled, other = GatewayProcess(tmp_path / "a", config), GatewayProcess(tmp_path / "b", config)
        await asyncio.to_thread(stalled.start, VIDGATE_FAILPOINTS="submit.after_vendor:stop")
        await asyncio.to_thread(other.start)
        try:
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "stalled-mm-1"}
                body = {"model": "MiniMax-H3", "prompt": "a crash test [hold]"}

                async def submit_to_stalled():
                    async with http.post(stalled.url + "/v1/video/generations", json=body, headers=headers) as r:
                        return r.status, await r.json()

                first = asyncio.create_task(submit_to_stalled())
                assert stalled.proc is not None
                for _ in range(300):
                    if _stopped(stalled.proc.pid):
                        break
                    await asyncio.sleep(0.05)
                assert _stopped(stalled.proc.pid)
                [job] = fake.jobs.values()  # the vendor made it before the process stopped
                listing_headers = {"Authorization": f"Bearer {key}"}
                async with http.get(other.url + "/v1/videos", headers=listing_headers) as r:
                    [listed] = (await r.json())["data"]
                done = await wait_terminal(http, other.url, key, listed["id"])
                assert done["status"] == "failed" and done["error"]["code"] == "submit_interrupted", done
                assert not fake.recorded("DELETE", re.compile("^/v2/video_generation/"))
                os.kill(stalled.proc.pid, signal.SIGCONT)
                await asyncio.wait_for(first, 30)
        finally:
            if stalled.proc is not None and stalled.proc.poll() is None:
                os.kill(stalled.proc.pid, signal.SIGCONT)
            await asyncio.to_thread(stalled.stop)
            await asyncio.to_thread(other.stop)
    assert len(fake.recorded("POST", "/v2/video_generation")) == 1
    [delete] = fake.recorded("DELETE", re.compile("^/v2/video_generation/"))
    assert delete.path.endswith(job.id) and job.state == "cancelled"
    store = await Store.open(f"sqlite:///{tmp_path / 'data' / 'vidgate.db'}")
    try:
        outcomes = [a.outcome for a in await store.attempts(listed["id"])]
        assert "superseded" in outcomes and "duplicate_cancelled" in outcomes, outcomes
        assert sum(e.amount for e in await store.ledger()) == 0  # charged, then refunded
    finally:
        await store.close()
