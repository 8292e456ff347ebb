"""Upstream faults, injected into real fake vendors on 127.0.0.1, through the whole gateway.

Each fault must end as the design says: retried on the same channel, moved to another
channel, or failed with a clear error code and refunded exactly once. No fault may wedge
the worker or leak an outbound connection. The vendor is the Sora plugin against its
fake (``vidgate_sora.fake.FakeVideosAPI``), wrapped in :class:`fault_servers.FaultyUpstream`
for the faults the fake has no switch for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fault_servers import Fault, FaultyUpstream, refused_port, silent_server

from vidgate.testing import RunningGateway, ServedApp, force_task_state, run_gateway, serve_app
from vidgate_sora.fake import FakeVideosAPI

KEY = "sk-test"
BODY = {"model": "sora-2", "prompt": "a fox in the snow", "seconds": "4"}
PRICE = 0.1  # per second -> 0.4 for a 4 s task


def channel(url: str, name: str, priority: int = 0, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "vendor": "sora",
        "base_url": url + "/v1",
        "credentials": {"api_key": KEY},
        "priority": priority,
        "options": {"poll_interval": 0.05, **options},
    }


def config(*channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": {"enabled": ["sora"]},
        # Short timeouts so a silent upstream costs a second, not a minute.
        "network": {"outbound_timeout_seconds": 1, "connect_timeout_seconds": 0.5, "max_retry_after_seconds": 1},
        "worker": {"max_backoff_seconds": 0.2, "fetch_attempts": 3},
        "models": {"sora-2": {"price_per_second": PRICE}},
        "channels": list(channels),
    }


@contextlib.asynccontextmanager
async def upstream(**fake_kwargs: Any) -> AsyncIterator[tuple[FakeVideosAPI, FaultyUpstream, ServedApp]]:
    fake = FakeVideosAPI(api_keys={KEY}, **fake_kwargs)
    faulty = FaultyUpstream(fake.app)
    async with serve_app(faulty) as served:
        yield fake, faulty, served


async def money(gw: RunningGateway, task_id: str) -> tuple[int, int]:
    """(charges, refunds) the ledger holds for one task."""
    entries = [e for e in await gw.gateway.store.ledger() if e.task_id == task_id]
    return sum(e.kind == "charge" for e in entries), sum(e.kind == "refund" for e in entries)


async def no_leaked_connections(gw: RunningGateway) -> None:
    """Every pooled outbound connection is back in the pool (none held by a stuck call)."""
    connectors = gw.gateway.http.connectors
    end = time.monotonic() + 3
    while any(len(c._acquired) for c in connectors):  # noqa: SLF001 - aiohttp has no public counter
        assert time.monotonic() < end, f"connections still acquired: {[len(c._acquired) for c in connectors]}"
        await asyncio.sleep(0.05)


async def fresh_task_completes(gw: RunningGateway, key: str) -> None:
    """The worker still takes new work after the faults."""
    status, task = await gw.post("/v1/video/generations", key, json=BODY)
    assert status == 200, task
    assert (await gw.wait(task["id"], key, timeout=20))["status"] == "completed"


# -- submit-time faults ---------------------------------------------------------------


async def test_submit_faults_move_the_task_to_the_next_channel(tmp_path):
    """Connection refused, 5xx and a persistent 429 on the preferred channel: each task
    lands on the next channel, is charged once, completes. A silent upstream (timeout) may
    have received the submit: that task is sent nowhere else."""
    async with (
        upstream() as (bad_fake, bad, bad_served),
        upstream() as (good_fake, good, good_served),
        silent_server() as (
            silent_url,
            accepted,
        ),
    ):
        cases = {
            "refused": f"http://127.0.0.1:{refused_port()}",
            "timeout": silent_url,
            "5xx": bad_served.url,
            "429": bad_served.url,
        }
        for case, url in cases.items():
            if case == "5xx":
                bad_fake.server_error(times=1)
            if case == "429":
                bad_fake.rate_limit(times=3, retry_after=0.05)  # 1 try + 2 retries, all refused
            cfg = config(channel(url, "first", priority=10), channel(good_served.url, "second", priority=0))
            async with run_gateway(cfg, tmp_path / case) as gw:
                key = await gw.token(quota=100)
                good_before = len(good_fake.creates())
                started = time.monotonic()
                status, task = await gw.post("/v1/video/generations", key, json=BODY)
                assert time.monotonic() - started < 10, case  # bounded by the timeouts
                if case == "timeout":
                    # The silent upstream may have created the video and cannot be asked:
                    # the task goes nowhere else (finding 12), and nothing is charged.
                    assert status == 503 and task["error"]["code"] == "vendor_unconfirmed", task
                    assert len(good_fake.creates()) == good_before
                    await no_leaked_connections(gw)
                    continue
                assert status == 200, (case, task)
                done = await gw.wait(task["id"], key, timeout=20)
                assert done["status"] == "completed", (case, done)
                outcomes = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
                assert outcomes[-1] == ("second", "submitted"), (case, outcomes)
                assert ("first", "submitted") not in outcomes, (case, outcomes)
                assert await money(gw, task["id"]) == (1, 0), case
                await no_leaked_connections(gw)
        assert accepted, "the silent server never saw the submit"
        assert len(bad_fake.creates()) == 1 + 3
        # The good channel created exactly one video per case it took (all but the timeout).
        assert len(good_fake.creates()) == len(cases) - 1


async def test_submit_fault_on_the_only_channel_is_503_and_not_charged(tmp_path):
    async with silent_server() as (silent_url, _):
        cfg = config(channel(f"http://127.0.0.1:{refused_port()}", "dead"), channel(silent_url, "silent"))
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token(name="client", quota=100)
            status, body = await gw.post("/v1/video/generations", key, json=BODY)
            assert status == 503, body
            # The silent channel may have received the submit: 503, never sent further (finding 12).
            assert body["error"]["code"] == "vendor_unconfirmed"
            assert "not charged" in body["error"]["message"]
            token = await gw.gateway.store.token("client")
            assert token.used == 0
            ledger = await gw.gateway.store.ledger()
            assert sum(e.amount for e in ledger) == 0  # refunds are negative entries
            await no_leaked_connections(gw)


async def test_rate_limit_with_and_without_retry_after_is_retried_on_the_same_channel(tmp_path):
    async with upstream() as (fake, _, served):
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            for retry_after in (0.2, None):
                fake.rate_limit(times=1, retry_after=retry_after)
                before = len(fake.creates())
                status, task = await gw.post("/v1/video/generations", key, json=BODY)
                assert status == 200, task
                assert len(fake.creates()) - before == 2  # the 429, then the retry
                outcomes = [a.outcome for a in await gw.gateway.store.attempts(task["id"])]
                assert outcomes == ["rate_limited", "submitted"], outcomes
                assert (await gw.wait(task["id"], key))["status"] == "completed"
                assert await money(gw, task["id"]) == (1, 0)
            creates = fake.creates()
            # retry-after 0.2 s was honoured; without it the gateway backs off (0.5 s).
            assert creates[1].at - creates[0].at >= 0.15
            assert creates[3].at - creates[2].at >= 0.3


async def test_slow_reply_under_the_timeout_is_waited_for(tmp_path):
    async with upstream() as (fake, faulty, served):
        faulty.add("create", Fault("slow", seconds=0.5))
        faulty.add("retrieve", Fault("slow", seconds=0.5))
        faulty.add("content", Fault("slow", seconds=0.5))
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json=BODY)
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            assert len(fake.creates()) == 1
            assert len(faulty.injected) == 3


# -- poll-time faults -----------------------------------------------------------------


async def test_transient_poll_faults_never_fail_the_task(tmp_path):
    """5xx, 429, malformed JSON, a timeout and connection errors while polling: backed off
    and retried; the task completes, charged once, never refunded."""
    async with upstream() as (fake, faulty, served):
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            faulty.add("retrieve", Fault("status", status=500))
            faulty.add("retrieve", Fault("status", status=503))
            faulty.add("retrieve", Fault("status", status=429, headers={"retry-after": "0.1"}))
            faulty.add("retrieve", Fault("status", status=429))
            faulty.add("retrieve", Fault("malformed"))
            faulty.add("retrieve", Fault("hang"))  # timed out after outbound_timeout_seconds
            faulty.add("retrieve", Fault("status", status=502))
            status, task = await gw.post("/v1/video/generations", key, json=BODY)
            assert status == 200, task
            done = await gw.wait(task["id"], key, timeout=30)
            assert done["status"] == "completed", done
            assert not faulty.queues["retrieve"], "not every poll fault was hit"
            assert await money(gw, task["id"]) == (1, 0)
            await no_leaked_connections(gw)
            assert faulty.hanging == 0


async def test_unknown_status_word_keeps_the_task_alive(tmp_path):
    async with upstream() as (fake, _, served):
        fake.unknown_status_next("rendering", polls=3)
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            _, task = await gw.post("/v1/video/generations", key, json=BODY)
            seen: list[str] = []
            done = await gw.wait(task["id"], key, on_poll=lambda t: seen.append(t["status"]))
            assert done["status"] == "completed"
            assert "failed" not in seen
            assert await money(gw, task["id"]) == (1, 0)


async def test_vendor_that_never_finishes_fails_at_the_deadline_and_is_refunded(tmp_path):
    async with upstream(polls_to_finish=10**9) as (fake, _, served):
        async with run_gateway(config(channel(served.url, "only", deadline=2)), tmp_path) as gw:
            key = await gw.token(name="client", quota=100)
            _, task = await gw.post("/v1/video/generations", key, json=BODY)
            done = await gw.wait(task["id"], key, timeout=15)
            assert done["status"] == "failed"
            assert done["error"]["code"] == "deadline_exceeded"
            assert await money(gw, task["id"]) == (1, 1)
            assert (await gw.gateway.store.token("client")).used == 0
            retrieves = [r for r in fake.requests if r.method == "GET"]
            assert len(retrieves) > 5  # it was polled all along, then given up


async def test_vendor_reported_failure_is_refunded_once(tmp_path):
    async with upstream() as (fake, _, served):
        fake.fail_next("moderation_blocked", "The prompt was blocked.")
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            _, task = await gw.post("/v1/video/generations", key, json=BODY)
            done = await gw.wait(task["id"], key)
            assert done["status"] == "failed"
            assert done["error"]["code"] == "moderation_blocked"
            assert await money(gw, task["id"]) == (1, 1)


# -- result download faults -----------------------------------------------------------


async def test_result_that_404s_fails_with_result_unavailable_and_refund(tmp_path):
    async with upstream() as (_, faulty, served):
        faulty.add("content", Fault("status", status=404))
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            _, task = await gw.post("/v1/video/generations", key, json=BODY)
            done = await gw.wait(task["id"], key)
            assert done["status"] == "failed"
            assert done["error"]["code"] == "result_unavailable"
            assert await money(gw, task["id"]) == (1, 1)
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key)
            assert status == 409 and body["error"]["code"] == "video_failed", body
            await no_leaked_connections(gw)


async def test_result_cut_mid_stream_every_time_fails_and_refunds(tmp_path):
    async with upstream() as (_, faulty, served):
        faulty.add("content", Fault("cut"), times=3)  # fetch_attempts = 3
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            _, task = await gw.post("/v1/video/generations", key, json=BODY)
            done = await gw.wait(task["id"], key, timeout=20)
            assert done["status"] == "failed", done
            assert done["error"]["code"] == "result_unavailable"
            assert await money(gw, task["id"]) == (1, 1)
            assert not faulty.queues["content"]
            # No half file is served as the video, nor left on disk.
            status, body = await gw.get(f"/v1/videos/{task['id']}/content", key)
            assert status == 409 and body["error"]["code"] == "video_failed", body
            assert not gw.gateway.media.path(task["id"], "video").exists()
            await no_leaked_connections(gw)


async def test_transient_result_faults_are_retried_then_complete(tmp_path):
    async with upstream() as (fake, faulty, served):
        faulty.add("content", Fault("cut"))
        faulty.add("content", Fault("status", status=503))
        async with run_gateway(config(channel(served.url, "only")), tmp_path) as gw:
            key = await gw.token(quota=100)
            _, task = await gw.post("/v1/video/generations", key, json=BODY)
            done = await gw.wait(task["id"], key, timeout=20)
            assert done["status"] == "completed", done
            status, data = await gw.get(f"/v1/videos/{task['id']}/content", key, raw=True)
            assert status == 200 and data == fake.video_bytes  # the whole video, not the cut half
            assert await money(gw, task["id"]) == (1, 0)


# -- the worker survives all of it ----------------------------------------------------


async def test_many_faults_at_once_do_not_wedge_the_worker_or_leak_connections(tmp_path):
    """Twenty tasks with hangs, cuts, 5xx and malformed answers in flight together; then a
    fresh task still completes and every pooled connection is released."""
    async with upstream() as (fake, faulty, served):
        cfg = config(channel(served.url, "only"))
        cfg["worker"]["concurrency"] = 4  # fewer slots than hanging calls: a wedge would show
        async with run_gateway(cfg, tmp_path) as gw:
            key = await gw.token(quota=1000)
            faulty.add("retrieve", Fault("hang"), times=6)
            faulty.add("retrieve", Fault("malformed"), times=4)
            faulty.add("retrieve", Fault("status", status=500), times=4)
            faulty.add("content", Fault("cut"), times=4)
            faulty.add("content", Fault("status", status=502), times=4)
            ids = []
            for _ in range(20):
                status, task = await gw.post("/v1/video/generations", key, json=BODY)
                assert status == 200, task
                ids.append(task["id"])
            results = await asyncio.gather(*(gw.wait(i, key, timeout=60) for i in ids))
            statuses = [r["status"] for r in results]
            # Faults spread over 20 tasks: none gets 3 fetch failures in a row, so all complete.
            assert statuses.count("completed") + statuses.count("failed") == 20
            for r in results:
                assert r["status"] == "completed" or r["error"]["code"] == "result_unavailable", r
                assert await money(gw, r["id"]) == (1, int(r["status"] == "failed"))
            assert not any(faulty.queues.values())
            await no_leaked_connections(gw)
            await fresh_task_completes(gw, key)
            assert len(fake.creates()) == 21


def test_every_outbound_call_has_a_bounded_timeout():
    """The shared session, downloads and image fetches all carry finite timeouts."""
    from vidgate.net import HTTP

    async def check() -> None:
        http = HTTP(total_timeout=5, connect_timeout=1, image_timeout=3)
        try:
            assert http.session.timeout.total == 5 and http.session.timeout.connect == 1
            assert http.timeout.total == 5
            # Downloads may be long, so no total; but a stalled body is cut by sock_read.
            assert http.download_timeout.connect == 1 and http.download_timeout.sock_read
            assert http.image_session.timeout.total == 3
        finally:
            await http.close()

    asyncio.run(check())


async def test_no_session_is_made_after_the_http_client_closed():
    """A call still running at shutdown must not open a guarded session that nothing closes
    (an unclosed session and connector, reported later by the garbage collector)."""
    from vidgate.net import HTTP

    http = HTTP(total_timeout=5, connect_timeout=1, image_timeout=3)
    assert not http.image_session.closed
    await http.close()
    assert http.session.closed and http.image_session.closed
    with pytest.raises(RuntimeError, match="closed"):
        http.guarded_session([], user_agent="vidgate-test (webhooks)")


async def test_a_finished_video_is_still_fetched_after_the_deadline(tmp_path):
    """The deadline ends vendors that never finish, not downloads of finished videos."""
    import time as _time

    from scripted_vendor import Scripted, scripted_config

    from vidgate.worker import Worker

    vendor = Scripted()
    vendor.polls_to_finish = 1
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        store = gw.gateway.store
        await force_task_state(
            store, task["id"], phase="fetching", result={"id": "s-1"}, deadline_at=_time.time() - 1, next_poll_at=0
        )
        await Worker(gw.gateway).run_until_idle(timeout=10)
        done = (await gw.get(f"/v1/videos/{task['id']}", key))[1]
        assert done["status"] == "completed", done
