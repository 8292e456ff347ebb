"""Upstream status calls per in-flight task per poll interval, with and without batch polling.

    python bench/poll_calls.py --tasks 200 --polls 3

Runs a gateway in this process (SQLite, one channel of the scripted test vendor with a
1 s poll interval), submits --tasks tasks that each need --polls status observations to
finish, runs the poll worker until all complete and counts the vendor's status calls
(one per ``poll``, one per ``poll_many``). Prints the metric for the vendor without the
batch verb (1.0 is the floor there) and with it (1 / batch size is the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from scripted_vendor import BatchScripted, Scripted, scripted_config  # noqa: E402

from vidgate.testing import run_gateway  # noqa: E402
from vidgate.worker import Worker  # noqa: E402


async def measure(vendor: Scripted, tasks: int, polls: int, interval: float) -> tuple[float, int]:
    vendor.polls_to_finish = polls
    vendor.poll_after = None
    config = scripted_config(channels=[{"name": "main", "vendor": "scripted", "options": {"poll_interval": interval}}])
    with tempfile.TemporaryDirectory(prefix="vidgate-bench-") as tmp:
        async with run_gateway(config, Path(tmp), extra_plugins={"scripted": vendor}, run_worker=False) as gw:
            key = await gw.token()
            ids = []
            for _ in range(tasks):
                status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
                assert status == 200, task
                ids.append(task["id"])
            stop = asyncio.Event()
            worker = asyncio.create_task(Worker(gw.gateway).run(stop))
            done = await asyncio.gather(*(gw.wait(i, key, timeout=600) for i in ids))
            stop.set()
            await worker
    completed = sum(t["status"] == "completed" for t in done)
    return vendor.status_calls / (tasks * polls), completed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--polls", type=int, default=3, help="status observations each task needs")
    parser.add_argument("--interval", type=float, default=1.0, help="the channel's poll interval (s)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    rows = []
    for label, vendor in (("per-task poll", Scripted()), ("batch poll (poll_many)", BatchScripted())):
        metric, completed = await measure(vendor, args.tasks, args.polls, args.interval)
        rows.append((label, f"{metric:.3f}", f"{completed}/{args.tasks}"))
    print(f"{args.tasks} in-flight tasks, {args.polls} polls each, poll interval {args.interval} s")
    print("| vendor | upstream status calls per in-flight task per poll interval | completed |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
