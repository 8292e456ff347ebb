"""A load rig: a fake vendor process, a `vidgate serve` process, and an aiohttp driver.

Used by ``tests/test_load.py`` (scaled for CI, asserts zero errors and zero lost tasks)
and by ``bench/load.py`` (prints figures). Everything listens on 127.0.0.1; every loop is
bounded in count and time.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from processes import GatewayProcess, create_token, free_port

VENDOR_KEY = "sk-load"
BODY = {"model": "sora-2", "prompt": "load test", "seconds": "4"}

_VENDOR_SCRIPT = (
    """
import sys, uvicorn
from vidgate_sora.fake import FakeVideosAPI

fake = FakeVideosAPI(api_keys={"%s"}, polls_to_finish=2, poll_after_ms=10)
uvicorn.run(fake.app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
    % VENDOR_KEY
)


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class LoadRig:
    """Start with ``rig.start()``; ``rig.url``, ``rig.key``, ``rig.pid``; ``rig.stop()``."""

    def __init__(self, workdir: Path, *, worker_concurrency: int = 64) -> None:
        self.workdir = workdir
        self.worker_concurrency = worker_concurrency
        self.vendor: subprocess.Popen[Any] | None = None
        self.gateway: GatewayProcess | None = None
        self.key = ""

    def start(self) -> LoadRig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.vendor_log = open(self.workdir / "vendor.log", "w")  # noqa: SIM115 (closed in stop)
        self.vendor = subprocess.Popen(
            [sys.executable, "-c", _VENDOR_SCRIPT, str(port)], stdout=self.vendor_log, stderr=subprocess.STDOUT
        )
        _wait_port(port, self.vendor)
        config = self.workdir / "vidgate.toml"
        data = self.workdir / "data"
        config.write_text(
            textwrap.dedent(f"""
            [server]
            data_dir = "{data}"
            [store]
            url = "sqlite:///{data / "vidgate.db"}"
            [media]
            path = "{data / "media"}"
            [worker]
            tick_seconds = 0.05
            concurrency = {self.worker_concurrency}
            [plugins]
            enabled = ["sora"]
            [[channels]]
            name = "sora"
            vendor = "sora"
            base_url = "http://127.0.0.1:{port}/v1"
            allow_result_networks = ["127.0.0.0/8"]  # the fake serves results on loopback
            [channels.credentials]
            api_key = "{VENDOR_KEY}"
            [channels.options]
            poll_interval = 0.05
            [models.sora-2]
            price_per_second = 0.1
        """)
        )
        self.gateway = GatewayProcess(self.workdir, config)
        self.gateway.start()
        self.key = create_token(config, name="load")
        return self

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    @property
    def pid(self) -> int:
        assert self.gateway is not None and self.gateway.proc is not None
        return self.gateway.proc.pid

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        if self.vendor is not None and self.vendor.poll() is None:
            self.vendor.terminate()
            try:
                self.vendor.wait(10)
            except subprocess.TimeoutExpired:
                self.vendor.kill()
                self.vendor.wait(5)
        if hasattr(self, "vendor_log"):
            self.vendor_log.close()


@attrs.define
class LoadResult:
    tasks: int
    seconds: float = 0.0
    submit_ms: list[float] = attrs.field(factory=list)
    poll_ms: list[float] = attrs.field(factory=list)
    errors: Counter[str] = attrs.field(factory=Counter)
    final: dict[str, str] = attrs.field(factory=dict)  # task id -> last status seen
    rss_peak_mb: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def lost(self) -> int:
        """Submitted tasks that did not end ``completed``."""
        return sum(1 for s in self.final.values() if s != "completed")

    def percentile(self, values: list[float], p: float) -> float:
        if not values:
            return 0.0
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def drive(
    url: str,
    key: str,
    tasks: int,
    concurrency: int,
    *,
    poll_every: float = 0.1,
    task_timeout: float = 120.0,
    rss_pid: int | None = None,
) -> LoadResult:
    """Submit ``tasks`` tasks (``concurrency`` clients at a time), each client polling its
    task until it is terminal. Every non-2xx answer and every exception is an error."""
    result = LoadResult(tasks=tasks)
    headers = {"Authorization": f"Bearer {key}"}
    slots = asyncio.Semaphore(concurrency)
    stop_sampling = asyncio.Event()

    async def sample_rss() -> None:
        while rss_pid is not None and not stop_sampling.is_set():
            result.rss_peak_mb = max(result.rss_peak_mb, rss_mb(rss_pid))
            try:
                await asyncio.wait_for(stop_sampling.wait(), 0.25)
            except TimeoutError:
                pass

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        async with slots:
            started = time.perf_counter()
            try:
                async with http.post(url + "/v1/video/generations", json=BODY, headers=headers) as resp:
                    body = await resp.json(content_type=None)
                    status = resp.status
            except Exception as exc:  # counted, never raised: the run must finish
                result.errors[f"submit {type(exc).__name__}"] += 1
                return
            result.submit_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                result.errors[f"submit HTTP {status}"] += 1
                return
            task_id = body["id"]
            result.final[task_id] = body["status"]
            end = time.monotonic() + task_timeout
            while time.monotonic() < end:
                await asyncio.sleep(poll_every)
                started = time.perf_counter()
                try:
                    async with http.get(url + f"/v1/videos/{task_id}", headers=headers) as resp:
                        task = await resp.json(content_type=None)
                        status = resp.status
                except Exception as exc:
                    result.errors[f"poll {type(exc).__name__}"] += 1
                    continue
                result.poll_ms.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    result.errors[f"poll HTTP {status}"] += 1
                    continue
                result.final[task_id] = task["status"]
                if task["status"] in ("completed", "failed"):
                    return

    connector = aiohttp.TCPConnector(limit=concurrency)
    sampler = asyncio.create_task(sample_rss())
    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(one(i, http) for i in range(tasks)))
    result.seconds = time.perf_counter() - began
    stop_sampling.set()
    await sampler
    return result


async def settle_rss(pid: int, seconds: float = 3.0) -> float:
    """RSS after the process has had ``seconds`` to go idle (the lowest sample)."""
    low = rss_mb(pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.25)
        low = min(low, rss_mb(pid))
    return low


def summary(result: LoadResult) -> dict[str, Any]:
    return {
        "tasks": result.tasks,
        "seconds": round(result.seconds, 2),
        "tasks_per_s": round(result.tasks / result.seconds, 1) if result.seconds else 0,
        "submit_p50_ms": round(result.percentile(result.submit_ms, 50), 1),
        "submit_p95_ms": round(result.percentile(result.submit_ms, 95), 1),
        "submit_p99_ms": round(result.percentile(result.submit_ms, 99), 1),
        "poll_p50_ms": round(result.percentile(result.poll_ms, 50), 1),
        "poll_p95_ms": round(result.percentile(result.poll_ms, 95), 1),
        "poll_p99_ms": round(result.percentile(result.poll_ms, 99), 1),
        "polls": len(result.poll_ms),
        "errors": result.error_count,
        "lost": result.lost,
        "mean_submit_ms": round(statistics.fmean(result.submit_ms), 1) if result.submit_ms else 0,
    }
