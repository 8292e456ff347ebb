"""Several replicas on one PostgreSQL database: 2 `vidgate serve` (API only) and 2
`vidgate worker` processes, one vendor fake in a process of its own. One API and one
worker are killed with SIGKILL mid-run and nothing is restarted."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import textwrap
from typing import Any

import aiohttp
import pytest
from conftest import fresh_postgres
from load_harness import _wait_port
from processes import GatewayProcess, create_token, free_port

VENDOR_KEY = "sk-replicas"
TASKS = 300

# The sora fake, wrapped to record what proves the run: creates per Idempotency-Key
# (our task id) and the time span of every status poll per vendor video.
_VENDOR_SCRIPT = (
    """
import asyncio, json, sys, time, uvicorn
from collections import defaultdict
from vidgate_sora.fake import FakeVideosAPI

fake = FakeVideosAPI(api_keys={"%s"}, polls_to_finish=2, poll_after_ms=10)
creates = defaultdict(int)
polls = defaultdict(list)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return await fake.app(scope, receive, send)
    path, method = scope["path"], scope["method"]
    if path == "/_stats":
        body = json.dumps({"creates": creates, "polls": polls}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    if method == "POST" and path == "/v1/videos":
        key = dict(scope["headers"]).get(b"idempotency-key", b"").decode()
        creates[key] += 1
        return await fake.app(scope, receive, send)
    parts = path.split("/")
    if method == "GET" and len(parts) == 4 and parts[2] == "videos":
        started = time.time()
        await asyncio.sleep(0.02)  # a poll takes a while, so overlapping polls would show
        try:
            return await fake.app(scope, receive, send)
        finally:
            polls[parts[3]].append((started, time.time()))
    return await fake.app(scope, receive, send)

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
    % VENDOR_KEY
)


def write_config(path, store_url, vendor_port, data):
    path.write_text(
        textwrap.dedent(f"""
        [server]
        data_dir = "{data}"
        [store]
        url = "{store_url}"
        [media]
        path = "{data / "media"}"
        [worker]
        enabled = false  # `vidgate serve` is API only here; the workers run on their own
        tick_seconds = 0.05
        concurrency = 32
        # A killed worker's tasks come back after this; long enough that a live API starved
        # of CPU (the suite runs on every core) still renews its leases in time.
        lease_seconds = 6
        # The killed API's unanswered submits are taken over this long after their lease
        # (by default the 60 s outbound timeout, longer than this test waits).
        submit_takeover_grace_seconds = 1
        [plugins]
        enabled = ["sora"]
        [[channels]]
        name = "sora"
        vendor = "sora"
        base_url = "http://127.0.0.1:{vendor_port}/v1"
        allow_result_networks = ["127.0.0.0/8"]  # the fake serves results on loopback
        [channels.credentials]
        api_key = "{VENDOR_KEY}"
        [channels.options]
        poll_interval = 0.1
        [models.sora-2]
        price_per_second = 0.1
    """)
    )
    return path


async def _until_all_terminal(store_url: str, timeout: float) -> None:
    import asyncpg

    db = await asyncpg.connect(store_url)
    try:
        async with asyncio.timeout(timeout):
            while await db.fetchval("SELECT count(*) FROM tasks WHERE status NOT IN ('completed', 'failed')"):
                await asyncio.sleep(0.2)
    finally:
        await db.close()


@pytest.mark.slow
async def test_two_apis_two_workers_one_postgres_survive_kill_9(tmp_path):
    async with fresh_postgres() as store_url:
        vendor_port = free_port()
        vendor_log = open(tmp_path / "vendor.log", "w")  # noqa: SIM115 (closed below)
        vendor = subprocess.Popen(
            [sys.executable, "-c", _VENDOR_SCRIPT, str(vendor_port)], stdout=vendor_log, stderr=subprocess.STDOUT
        )
        apis: list[GatewayProcess] = []
        workers: list[subprocess.Popen] = []
        worker_logs: list[Any] = []
        try:
            _wait_port(vendor_port, vendor)
            config = write_config(tmp_path / "vidgate.toml", store_url, vendor_port, tmp_path / "data")
            for i in range(2):
                workdir = tmp_path / f"api{i}"
                workdir.mkdir()
                api = GatewayProcess(workdir, config)
                await asyncio.to_thread(api.start)  # one after the other: the first migrates
                apis.append(api)
            for i in range(2):
                log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 (closed below)
                worker_logs.append(log)
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "vidgate.cli", "worker", "--config", str(config)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            key = await asyncio.to_thread(create_token, config, "replicas")
            headers = {"Authorization": f"Bearer {key}"}
            accepted: list[str] = []
            refused: collections.Counter[str] = collections.Counter()
            kill_now = asyncio.Event()
            slots = asyncio.Semaphore(24)

            async def submit(i: int, http: aiohttp.ClientSession) -> None:
                async with slots:
                    url = apis[i % 2].url
                    body = {"model": "sora-2", "prompt": f"replica {i}", "seconds": "4"}
                    try:
                        async with http.post(url + "/v1/video/generations", json=body, headers=headers) as r:
                            answer = await r.json(content_type=None)
                            status = r.status
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        refused[type(exc).__name__] += 1  # the killed API
                        return
                    if status == 200:
                        accepted.append(answer["id"])
                        if len(accepted) == TASKS // 3:
                            kill_now.set()
                    else:
                        refused[f"HTTP {status}"] += 1

            async def killer() -> None:
                await kill_now.wait()
                await asyncio.to_thread(apis[1].kill9)
                workers[0].send_signal(signal.SIGKILL)
                await asyncio.to_thread(workers[0].wait, 10)

            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                kills = asyncio.create_task(killer())
                await asyncio.gather(*(submit(i, http) for i in range(TASKS)))
                await asyncio.wait_for(kills, 30)
                assert workers[0].returncode == -signal.SIGKILL and apis[1].proc.returncode == -signal.SIGKILL
                assert len(accepted) >= TASKS // 2, (len(accepted), refused)
                assert set(refused) <= {"ClientConnectorError", "ServerDisconnectedError", "ClientOSError"}, refused

                # Every task that got a 200 ends terminal (read through the surviving API).
                final: dict[str, dict] = {}
                async with asyncio.timeout(90):
                    while len(final) < len(accepted):
                        for task_id in accepted:
                            if task_id in final:
                                continue
                            async with http.get(apis[0].url + f"/v1/videos/{task_id}", headers=headers) as r:
                                task = await r.json()
                            if task["status"] in ("completed", "failed", "cancelled"):
                                final[task_id] = task
                        await asyncio.sleep(0.2)
                assert all(t["status"] == "completed" for t in final.values()), collections.Counter(
                    (t["status"], (t.get("error") or {}).get("code"), (t.get("error") or {}).get("message"))
                    for t in final.values()
                )
                # Tasks the killed API created but never answered are the survivors' to finish:
                # a submitting one is taken over only after its lease and the takeover grace.
                await _until_all_terminal(store_url, timeout=90)
                async with http.get(f"http://127.0.0.1:{vendor_port}/_stats") as r:
                    stats = await r.json()
        finally:
            for api in apis:
                await asyncio.to_thread(api.stop)
            for w in workers:
                if w.poll() is None:
                    w.terminate()
                    await asyncio.to_thread(w.wait, 15)
            vendor.terminate()
            await asyncio.to_thread(vendor.wait, 10)
            vendor_log.close()
            for log in worker_logs:
                log.close()

        # No vendor job was created twice (the sora plugin sends our task id as Idempotency-Key).
        assert stats["creates"] and max(stats["creates"].values()) == 1
        assert set(accepted) <= set(stats["creates"])
        # No task was polled by two workers at once.
        for video_id, spans in stats["polls"].items():
            spans.sort()
            for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
                assert start >= end, f"{video_id}: overlapping polls {spans}"

        # The ledger balances: one charge per billed task, refunds only for failed ones.
        import asyncpg

        db = await asyncpg.connect(store_url)
        try:
            tasks = {r["id"]: r for r in await db.fetch("SELECT id, status, charge, refunded FROM tasks")}
            entries = await db.fetch("SELECT task_id, kind, amount FROM ledger")
            used = await db.fetchval("SELECT used FROM tokens WHERE name = 'replicas'")
        finally:
            await db.close()
        kinds = collections.Counter((e["task_id"], e["kind"]) for e in entries)
        assert set(accepted) <= set(tasks)
        for task_id, task in tasks.items():
            assert task["status"] in ("completed", "failed"), task  # nothing left behind, even unanswered ones
            assert kinds[(task_id, "charge")] == 1, task_id
            assert kinds[(task_id, "refund")] == (1 if task["status"] == "failed" else 0), task
        for task_id in accepted:
            assert tasks[task_id]["status"] == "completed"
        assert {e["kind"] for e in entries} <= {"charge", "refund"}
        charged = sum(e["amount"] for e in entries if e["kind"] == "charge")
        assert charged == sum(t["charge"] for t in tasks.values())
        assert used == sum(e["amount"] for e in entries)  # refunds are negative entries
