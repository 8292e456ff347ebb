"""Load benchmark: `vidgate serve` (SQLite, one Sora channel) in front of the Sora fake
vendor, each in its own process on 127.0.0.1, driven by an aiohttp client from this one.

    python bench/load.py --tasks 5000 --concurrency 100

Each simulated client submits one task and polls it (every --poll-every seconds) until
it is terminal. Prints throughput, latency percentiles, errors, lost tasks and the
gateway's RSS (before = after a warm-up round, peak during, after = settled). This is
where performance is measured; the test suite only asserts correctness.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load_harness import LoadRig, drive, settle_rss, summary  # noqa: E402


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--poll-every", type=float, default=0.1)
    parser.add_argument("--worker-concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidgate-bench-") as tmp:
        rig = LoadRig(Path(tmp), worker_concurrency=args.worker_concurrency).start()
        try:
            if args.warmup:
                await drive(rig.url, rig.key, args.warmup, args.concurrency, poll_every=args.poll_every)
            before = await settle_rss(rig.pid)
            result = await drive(
                rig.url, rig.key, args.tasks, args.concurrency, poll_every=args.poll_every, rss_pid=rig.pid
            )
            after = await settle_rss(rig.pid)
        finally:
            rig.stop()
    s = summary(result)
    rows = [
        ("tasks", s["tasks"]),
        ("concurrency", args.concurrency),
        ("wall time (s)", s["seconds"]),
        ("submits/s (tasks/s end to end)", s["tasks_per_s"]),
        ("submit latency p50 / p95 / p99 (ms)", f"{s['submit_p50_ms']} / {s['submit_p95_ms']} / {s['submit_p99_ms']}"),
        ("poll latency p50 / p95 / p99 (ms)", f"{s['poll_p50_ms']} / {s['poll_p95_ms']} / {s['poll_p99_ms']}"),
        ("polls", s["polls"]),
        ("errors (non-2xx or exception)", s["errors"]),
        ("lost (not completed)", s["lost"]),
        ("gateway RSS before / peak / after (MiB)", f"{before:.1f} / {result.rss_peak_mb:.1f} / {after:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")
    if result.errors:
        print("errors:", dict(result.errors))
    return 1 if result.error_count or result.lost else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
