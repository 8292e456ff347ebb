"""Side-by-side benchmark: a fake OpenAI-Videos upstream, the direct hop, vidgate (and
LiteLLM's proxy with --with-litellm), everything on 127.0.0.1.

    python bench/compare.py            # the full run (a few minutes)
    python bench/compare.py --quick    # fewer requests; under a minute
    python bench/compare.py --only download

The gateway is pinned to one core (the last one); the upstream, the direct file server
and this driver share the others. Prints one table. On a shared machine absolute numbers
are noisy: read the ratios. See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load_harness import _wait_port, rss_mb, settle_rss  # noqa: E402
from processes import GatewayProcess, create_token, free_port  # noqa: E402

KEY = "sk-bench"
MB = 1_000_000
DOWNLOAD_BYTES = 50 * MB
# Sora-style poll interval the gateway is configured with (seconds).
POLL_INTERVAL = 1.0

# The upstream: the sora plugin's fake, plus a counter of status calls, in its own process.
# "sora-2" videos never finish (they stay in flight); "sora-2-pro" ones finish at once and
# are 50 MB (an MP4 head: the gateway sniffs what it stores), for the download rows.
_UPSTREAM = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from vidgate_sora.fake import FakeVideosAPI

slow = FakeVideosAPI(api_keys={%(key)r}, polls_to_finish=10**9, poll_after_ms=None)
big = FakeVideosAPI(api_keys={%(key)r}, polls_to_finish=1, poll_after_ms=None, video_bytes=(b"\\0\\0\\0\\x18ftypisom" + b"\\0" * %(size)d)[:%(size)d])
for fake in (slow, big):
    fake.requests = type("Dropped", (list,), {"append": lambda self, item: None})()  # bounded memory
counts = {"retrieves": 0}
inner = slow.app

async def app(scope, receive, send):
    if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].count("/") == 3 \\
            and scope["path"].startswith("/v1/videos/"):
        counts["retrieves"] += 1
    await inner(scope, receive, send)

async def stats(request):
    return JSONResponse(counts)

outer = Starlette(routes=[Route("/stats", stats), Mount("/big", big.app), Mount("/", app)])
uvicorn.run(outer, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

# The direct hop for downloads: a plain aiohttp static server (sendfile) over the same file.
_FILE_SERVER = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[2])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads started later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def spawn(script: str, *args: str, log: Path, cpus: set[int] | None = None) -> subprocess.Popen[Any]:
    out = open(log, "w")  # noqa: SIM115 (lives as long as the process)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )


def stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Sampler:
    """Peak RSS of one process, sampled every 50 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._task = pid, 0.0, None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._task is not None
        self._task.cancel()


async def hammer(
    n: int, concurrency: int, call: Callable[[int], Awaitable[bool]], min_seconds: float = 0.0
) -> dict[str, float]:
    """``n`` calls, ``concurrency`` at a time: req/s, p50/p99 ms, errors, calls made.

    With ``min_seconds`` the calls go on until that long has passed too (at most 50 n
    calls in all), so that a row spans what it is meant to overlap (the worker's polls)."""
    latencies: list[float] = []
    errors = 0
    next_i = 0
    start = time.perf_counter()

    def more() -> bool:
        return next_i < n or (next_i < 50 * n and time.perf_counter() - start < min_seconds)

    async def worker() -> None:
        nonlocal next_i, errors
        while more():
            i, next_i = next_i, next_i + 1
            t = time.perf_counter()
            try:
                ok = await asyncio.wait_for(call(i), 30)
            except Exception:
                ok = False
            latencies.append((time.perf_counter() - t) * 1000)
            errors += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "n": len(latencies),
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": errors,
    }


async def download(http: aiohttp.ClientSession, url: str, headers: dict[str, str], copies: int) -> float:
    """Aggregate MB/s of ``copies`` concurrent whole-file downloads."""

    async def one() -> int:
        got = 0
        async with http.get(url, headers=headers) as r:
            r.raise_for_status()
            async for chunk in r.content.iter_chunked(1 << 20):
                got += len(chunk)
        return got

    start = time.perf_counter()
    sizes = await asyncio.gather(*(one() for _ in range(copies)))
    return sum(sizes) / MB / (time.perf_counter() - start)


class Target:
    """Something speaking the OpenAI Videos API: vidgate, the direct hop, LiteLLM."""

    def __init__(self, name: str, base: str, key: str, pid: int | None, workers: tuple[int, ...] = ()) -> None:
        self.name, self.base, self.key, self.pid = name, base, key, pid
        # Processes besides ``pid`` that track tasks (vidgate's poll worker).
        self.workers = workers

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def measure(
    target: Target, http: aiohttp.ClientSession, args: argparse.Namespace, upstream: str
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    base, auth = target.base, target.auth
    body = {"model": "sora-2", "prompt": "bench", "seconds": "4"}

    async def create(_: int) -> bool:
        async with http.post(f"{base}/videos", json=body, headers=auth) as r:
            await r.read()
            return r.status == 200

    ids: list[str] = []
    for _ in range(4):
        async with http.post(f"{base}/videos", json=body, headers=auth) as r:
            ids.append((await r.json())["id"])

    async def status(i: int) -> bool:
        async with http.get(f"{base}/videos/{ids[i % len(ids)]}", headers=auth) as r:
            await r.read()
            return r.status == 200

    sampler = Sampler(target.pid) if target.pid else None
    if target.pid:
        row["idle_rss"] = await settle_rss(target.pid, 1.0)

    async def status_row(key: str) -> None:
        # The server's CPU per request as well as the rate: on a shared machine the driver
        # and the neighbours move the rate; the CPU a request costs moves much less.
        cpu = cpu_seconds(target.pid) if target.pid else 0.0
        # At least two poll intervals: the in-flight row must overlap the worker's polls.
        row[key] = await hammer(args.requests, args.concurrency, status, min_seconds=2 * POLL_INTERVAL)
        if target.pid:
            row[key]["cpu_us"] = (cpu_seconds(target.pid) - cpu) / row[key]["n"] * 1e6

    with sampler or _Null():
        await hammer(min(200, args.requests), args.concurrency, status)  # warm-up
        await status_row("status_quiet")
        cpu = cpu_seconds(target.pid) if target.pid else 0.0
        row["create"] = await hammer(args.in_flight, args.concurrency, create)
        if target.pid:
            row["create"]["cpu_us"] = (cpu_seconds(target.pid) - cpu) / row["create"]["n"] * 1e6
        async with http.get(f"{upstream}/stats") as r:
            before = (await r.json())["retrieves"]
        t0 = time.monotonic()
        worker_cpu = sum(cpu_seconds(pid) for pid in target.workers)
        await status_row("status_busy")
        if target.workers:
            wall = time.monotonic() - t0
            row["worker_cpu"] = (sum(cpu_seconds(pid) for pid in target.workers) - worker_cpu) / wall
        # Let the worker run at least two full poll intervals over the in-flight tasks.
        await asyncio.sleep(max(0.0, 2 * POLL_INTERVAL - (time.monotonic() - t0)))
        async with http.get(f"{upstream}/stats") as r:
            after = (await r.json())["retrieves"]
        elapsed = time.monotonic() - t0
        in_flight = args.in_flight + len(ids)
        row["upstream_calls"] = (after - before) / in_flight / (elapsed / POLL_INTERVAL)
    if sampler is not None:
        row["peak_rss"] = sampler.peak
    return row


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        return None


async def wait_completed(http: aiohttp.ClientSession, target: Target, model: str, deadline: float = 120) -> str:
    async with http.post(
        f"{target.base}/videos", json={"model": model, "prompt": "big", "seconds": "4"}, headers=target.auth
    ) as r:
        video = await r.json()
    end = time.monotonic() + deadline
    while video.get("status") != "completed":
        if time.monotonic() > end or video.get("status") == "failed":
            raise RuntimeError(f"the download video did not complete: {video}")
        await asyncio.sleep(0.2)
        async with http.get(f"{target.base}/videos/{video['id']}", headers=target.auth) as r:
            video = await r.json()
    return video["id"]


def gateway_config(workdir: Path, upstream_port: int) -> Path:
    data = workdir / "data"
    config = workdir / "vidgate.toml"
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
        concurrency = 64
        [plugins]
        enabled = ["sora"]
        [[channels]]
        name = "slow"
        vendor = "sora"
        base_url = "http://127.0.0.1:{upstream_port}/v1"
        models = ["sora-2"]
        [channels.credentials]
        api_key = "{KEY}"
        [channels.options]
        poll_interval = {POLL_INTERVAL}
        [[channels]]
        name = "big"
        vendor = "sora"
        base_url = "http://127.0.0.1:{upstream_port}/big/v1"
        models = ["sora-2-pro"]
        # The fake serves its results from loopback, which the address guard refuses.
        allow_result_networks = ["127.0.0.1/32"]
        [channels.credentials]
        api_key = "{KEY}"
        [channels.options]
        poll_interval = 0.05
        [models.sora-2]
        price_per_second = 0.1
        [models.sora-2-pro]
        price_per_second = 0.3
    """)
    )
    return config


def start_litellm(workdir: Path, upstream_port: int, cpus: set[int]) -> tuple[subprocess.Popen[Any], int]:
    """LiteLLM's proxy from PyPI, in its own virtualenv (cached under ~/.cache/vidgate-bench)."""
    venv = Path.home() / ".cache" / "vidgate-bench" / "litellm-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True, timeout=900)
    config = workdir / "litellm.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: sora-2
            litellm_params:
              model: openai/sora-2
              api_base: http://127.0.0.1:{upstream_port}/v1
              api_key: {KEY}
          - model_name: sora-2-pro
            litellm_params:
              model: openai/sora-2-pro
              api_base: http://127.0.0.1:{upstream_port}/big/v1
              api_key: {KEY}
        general_settings:
          master_key: sk-litellm-bench
    """)
    )
    port = free_port()
    log = open(workdir / "litellm.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    _wait_port(port, proc, timeout=120)
    return proc, port


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpu = {cpus[-1]}
    others = set(cpus[:-1]) or gateway_cpu
    os.sched_setaffinity(0, others)
    rows: list[dict[str, Any]] = []
    procs: list[subprocess.Popen[Any]] = []
    gateway: GatewayProcess | None = None
    with tempfile.TemporaryDirectory(prefix="vidgate-compare-") as tmp:
        work = Path(tmp)
        try:
            up_port = free_port()
            upstream_proc = spawn(
                _UPSTREAM % {"key": KEY, "size": DOWNLOAD_BYTES}, str(up_port), log=work / "upstream.log", cpus=others
            )
            procs.append(upstream_proc)
            _wait_port(up_port, upstream_proc)
            upstream = f"http://127.0.0.1:{up_port}"
            config = gateway_config(work, up_port)
            gateway = GatewayProcess(work, config)
            gateway.start()
            assert gateway.proc is not None
            # `vidgate serve` (one API process) serves in the process it was started as and
            # runs the poll worker in a child: the API gets the gateway core, the worker
            # the others (as on any machine with a core to spare for it).
            pin(gateway.proc.pid, gateway_cpu)
            workers = children(gateway.proc.pid)
            for pid in workers:
                pin(pid, others)
            vidgate = Target(
                "vidgate", f"{gateway.url}/v1", create_token(config, name="bench"), gateway.proc.pid, workers
            )
            targets = [Target("direct", f"{upstream}/v1", KEY, upstream_proc.pid), vidgate]
            if args.with_litellm:
                proc, port = start_litellm(work, up_port, gateway_cpu)
                procs.append(proc)
                targets.append(Target("litellm", f"http://127.0.0.1:{port}/v1", "sk-litellm-bench", proc.pid))
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
                if args.only in (None, "api"):
                    for target in targets:
                        try:
                            row = await measure(target, http, args, upstream)
                        except Exception as exc:  # one broken target must not hide the others
                            row = {"error": f"{type(exc).__name__}: {exc}"}
                        rows.append({"name": target.name, **row})
                if args.only in (None, "download"):
                    await downloads(http, vidgate, targets, rows, work, others)
        finally:
            if gateway is not None:
                gateway.stop()
            for proc in procs:
                stop(proc)
    return rows


async def downloads(
    http: aiohttp.ClientSession,
    vidgate: Target,
    targets: list[Target],
    rows: list[dict[str, Any]],
    work: Path,
    others: set[int],
) -> None:
    by_name = {r["name"]: r for r in rows}
    for t in targets:
        by_name.setdefault(t.name, {"name": t.name})
        if by_name[t.name] not in rows:
            rows.append(by_name[t.name])
    video_id = await wait_completed(http, vidgate, "sora-2-pro")
    media = work / "data" / "media"
    port = free_port()
    files = spawn(_FILE_SERVER, str(port), str(media), log=work / "files.log", cpus=others)
    try:
        _wait_port(port, files)
        direct_url = f"http://127.0.0.1:{port}/{video_id}/video"
        gw_url = f"{vidgate.base}/videos/{video_id}/content"
        for name, url, headers, pid in (
            ("direct", direct_url, {}, files.pid),
            ("vidgate", gw_url, vidgate.auth, vidgate.pid),
        ):
            row = by_name[name]
            await download(http, url, headers, 1)  # warm the page cache and the connections
            base = await settle_rss(pid, 0.5) if pid else 0.0
            with Sampler(pid) as sampler:
                cpu = cpu_seconds(pid)
                row["dl1"] = max([await download(http, url, headers, 1) for _ in range(3)])
                row["dl_cpu_ms"] = (cpu_seconds(pid) - cpu) / 3 * 1000
                row["dl4"] = await download(http, url, headers, 4)
            row["dl_rss_growth"] = (sampler.peak - base) / 4
    finally:
        stop(files)


def children(pid: int) -> tuple[int, ...]:
    """The child processes of ``pid`` (multiprocessing's resource tracker excluded)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return tuple(c for c in found if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fmt(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    direct = next((r for r in rows if r["name"] == "direct"), {})

    def ratio(r: dict[str, Any], key: str, sub: str | None = None) -> str:
        a = r.get(key)
        b = direct.get(key)
        if sub:
            a = a and a.get(sub)
            b = b and b.get(sub)
        return f" ({a / b:.0%})" if a and b and r is not direct else ""

    lines = [
        ("create req/s", lambda r: fmt(r.get("create", {}).get("rps")) + ratio(r, "create", "rps")),
        ("create p50 / p99 ms (c=32)", lambda r: _lat(r.get("create"))),
        ("status req/s, quiet", lambda r: fmt(r.get("status_quiet", {}).get("rps")) + ratio(r, "status_quiet", "rps")),
        ("status p50 / p99 ms, quiet", lambda r: _lat(r.get("status_quiet"))),
        (
            "status req/s, tasks in flight",
            lambda r: fmt(r.get("status_busy", {}).get("rps")) + ratio(r, "status_busy", "rps"),
        ),
        ("status p50 / p99 ms, in flight", lambda r: _lat(r.get("status_busy"))),
        ("server CPU us / create", lambda r: _cpu(r.get("create"))),
        ("server CPU us / status, quiet", lambda r: _cpu(r.get("status_quiet"))),
        ("server CPU us / status, in flight", lambda r: _cpu(r.get("status_busy"))),
        ("poll worker CPU, in flight (cores)", lambda r: fmt(r.get("worker_cpu"), ".2f")),
        (
            "errors (non-200)",
            lambda r: str(sum(r.get(k, {}).get("errors", 0) for k in ("create", "status_quiet", "status_busy"))),
        ),
        ("50 MB download MB/s, single", lambda r: fmt(r.get("dl1")) + ratio(r, "dl1")),
        ("50 MB download MB/s, x4 total", lambda r: fmt(r.get("dl4")) + ratio(r, "dl4")),
        ("server CPU ms per download, single", lambda r: fmt(r.get("dl_cpu_ms")) + ratio(r, "dl_cpu_ms")),
        ("RSS growth per download (MiB)", lambda r: fmt(r.get("dl_rss_growth"), ".1f")),
        ("idle RSS (MiB)", lambda r: fmt(r.get("idle_rss"), ".0f")),
        ("peak RSS (MiB)", lambda r: fmt(r.get("peak_rss"), ".0f")),
        (
            "upstream status calls / task / interval",
            lambda r: fmt(r.get("upstream_calls"), ".2f") if r["name"] != "direct" else "-",
        ),
    ]
    names = [r["name"] for r in rows]
    width = max(len(k) for k, _ in lines)
    out = [
        f"| {'metric'.ljust(width)} | " + " | ".join(names) + " |",
        f"|{'-' * (width + 2)}|" + "|".join("-" * (len(n) + 2) for n in names) + "|",
    ]
    for label, get in lines:
        out.append(f"| {label.ljust(width)} | " + " | ".join(get(r) for r in rows) + " |")
    for r in rows:
        if "error" in r:
            out.append(f"{r['name']}: {r['error']}")
    return "\n".join(out)


def _cpu(m: dict[str, float] | None) -> str:
    """CPU per request, and the rate one core would give at that cost."""
    if not m or not m.get("cpu_us"):
        return "-"
    return f"{m['cpu_us']:.0f} (= {1e6 / m['cpu_us']:,.0f}/s)"


def _lat(m: dict[str, float] | None) -> str:
    return "-" if not m else f"{m['p50']:.1f} / {m['p99']:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (under a minute)")
    parser.add_argument("--requests", type=int, default=None, help="status requests per row (default 5000)")
    parser.add_argument("--in-flight", type=int, default=None, help="tasks created and kept in flight (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", choices=("api", "download"), default=None)
    parser.add_argument("--with-litellm", action="store_true", help="also LiteLLM's proxy (own virtualenv from PyPI)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    args.requests = args.requests or (1000 if args.quick else 5000)
    args.in_flight = args.in_flight or (300 if args.quick else 2000)
    rows = asyncio.run(run(args))
    print(
        f"# {args.requests} status requests per row, {args.in_flight} tasks in flight, concurrency "
        f"{args.concurrency}; gateway API pinned to one core, its poll worker on the others;"
        " percentages are of the direct hop"
    )
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
