"""`vidgate serve` as a supervisor: API processes, the worker in its own, and their ends."""

import asyncio
import os
import signal
import time

import aiohttp
import pytest
from processes import GatewayProcess, alive

pytestmark = pytest.mark.slow
BODY = {"model": "local-v1", "prompt": "a fox", "seconds": 4, "size": "320x240"}


def wait_gone(pids, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return
        time.sleep(0.05)
    raise AssertionError(f"still running: {[p for p in pids if alive(p)]}")


def wait_children(server, n, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        children = server.children()
        if len(children) >= n:
            return children
        time.sleep(0.05)
    raise AssertionError(f"children: {server.children()}")


async def test_workers_share_the_port_and_the_worker_runs_apart(tmp_path):
    server = GatewayProcess(tmp_path, args=("--workers", "2"))
    server.start()
    try:
        # The embedded default's development token is made and printed once, by the parent.
        assert sum("created a development token" in line for line in server.output) == 1
        assert "2 API processes, worker in its own process" in "".join(server.output)
        children = wait_children(server, 3)
        assert len(children) == 3  # two API processes and the worker
        headers = {"Authorization": f"Bearer {server.dev_token}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(server.url + "/v1/video/generations", json=BODY, headers=headers) as r:
                assert r.status == 200
                task = await r.json()
            for _ in range(600):  # the worker process renders it; any API process reads it
                async with http.get(server.url + f"/v1/videos/{task['id']}", headers=headers) as r:
                    assert r.status == 200
                    task = await r.json()
                if task["status"] in ("completed", "failed"):
                    break
                await asyncio.sleep(0.1)
            assert task["status"] == "completed", task
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_dead() == 0
        wait_gone(children)
    finally:
        server.stop()
    assert "created a development token" not in (tmp_path / "gateway.log").read_text()


async def test_a_dead_worker_ends_serve_and_a_dead_serve_ends_its_children(tmp_path):
    server = GatewayProcess(tmp_path)
    server.start()
    try:
        (worker,) = wait_children(server, 1)  # one API process: the parent itself
        os.kill(worker, signal.SIGKILL)
        assert server.wait_dead(20) != 0  # never a half-running gateway
        server.start()
        assert not any("created a development token" in line for line in server.output[-2:])
        (worker,) = wait_children(server, 1)
        server.kill9()  # the supervisor dies without a word: its worker notices and stops
        wait_gone([worker])
    finally:
        server.stop()
