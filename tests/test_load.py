"""Bounded load on 127.0.0.1: a `vidgate serve` process in front of a fake vendor process,
driven from this process with aiohttp. Scaled for CI; the figures live in bench/load.py.

Asserts only correctness: zero non-2xx answers, zero lost tasks (every submitted id ends
``completed``), every task charged once, and the gateway's memory back near its
warmed-up baseline afterwards. No timing is asserted.
"""

from __future__ import annotations

import sqlite3

import pytest
from load_harness import LoadRig, drive, settle_rss, summary

pytestmark = pytest.mark.slow

WARMUP_TASKS = 200
TASKS = 1000
CONCURRENCY = 50
RSS_HEADROOM_MB = 60


async def test_thousand_tasks_no_errors_no_loss_memory_returns(tmp_path):
    rig = LoadRig(tmp_path).start()
    try:
        warm = await drive(rig.url, rig.key, WARMUP_TASKS, CONCURRENCY)
        assert warm.error_count == 0, warm.errors
        baseline = await settle_rss(rig.pid)
        result = await drive(rig.url, rig.key, TASKS, CONCURRENCY, rss_pid=rig.pid)
        after = await settle_rss(rig.pid)
        print(
            "load:", summary(result), f"rss baseline={baseline:.1f} peak={result.rss_peak_mb:.1f} after={after:.1f} MiB"
        )
        assert result.error_count == 0, result.errors
        assert len(result.final) == TASKS  # every submit answered with an id
        assert result.lost == 0, {s for s in result.final.values()}
        assert after < baseline + RSS_HEADROOM_MB, (baseline, result.rss_peak_mb, after)
    finally:
        rig.stop()
    # The store agrees: every task completed, one charge each, no refund, nothing stuck.
    con = sqlite3.connect(tmp_path / "data" / "vidgate.db")
    try:
        rows = dict(con.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall())
        assert rows == {"completed": WARMUP_TASKS + TASKS}, rows
        charges = con.execute("SELECT COUNT(*), COUNT(DISTINCT task_id) FROM ledger WHERE kind = 'charge'").fetchone()
        assert charges == (WARMUP_TASKS + TASKS, WARMUP_TASKS + TASKS)  # one charge per task
        assert con.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'refund'").fetchone()[0] == 0
    finally:
        con.close()
