"""Replicas sharing state through the local Redis server (``[coordination] redis_url``).

Each test is two gateways on one store with one Redis key prefix of their own; the
prefix's keys are deleted afterwards. Without a Redis server the tests skip, except in
CI (``CI=true``), where they fail.
"""

import asyncio
import collections
import contextlib
import json
import os
import secrets

import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate import ChannelUnusable
from vidgate.testing import run_gateway

REDIS_URL = os.environ.get("VIDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SUBMIT = {"model": "scripted-1", "prompt": "a fox"}


@pytest.fixture
async def redis_prefix():
    """A key prefix of this test's own on the local Redis; its keys go afterwards."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs Redis at {REDIS_URL}: {exc}") from exc
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = "vidgate-test-" + secrets.token_hex(6)
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + ":*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def config(prefix, channels, **sections):
    data = scripted_config(channels, coordination={"redis_url": REDIS_URL, "key_prefix": prefix})
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


@contextlib.asynccontextmanager
async def two_gateways(tmp_path, cfg_a, cfg_b, vendor, *, worker_a=False, worker_b=False):
    """Gateways A and B: one SQLite store (WAL, two connections sets), one Redis prefix."""
    async with run_gateway(cfg_a, tmp_path, extra_plugins={"scripted": vendor}, run_worker=worker_a) as a:
        async with run_gateway(cfg_b, tmp_path, extra_plugins={"scripted": vendor}, run_worker=worker_b) as b:
            yield a, b


async def test_breaker_and_probe_shared(tmp_path, redis_prefix):
    vendor = Scripted()
    vendor.submit_errors["main"] = collections.deque([ChannelUnusable("balance exhausted", vendor_code=1102)])
    channels = [
        {"name": "main", "vendor": "scripted", "priority": 10, "cooldown_seconds": 0.5},
        {"name": "spare", "vendor": "scripted"},
    ]
    cfg = config(redis_prefix, channels)
    async with two_gateways(tmp_path, cfg, cfg, vendor) as (a, b):
        key = await a.token()
        assert (await a.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        # The account error on A opened the breaker for B too: B goes straight to spare.
        status, task = await b.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        attempts = await b.gateway.store.attempts(task["id"])
        assert [(x.channel, x.outcome, x.detail) for x in attempts][:1] == [("main", "skipped", "out of rotation")]
        assert [ch for ch, _ in vendor.submitted] == ["spare", "spare"]
        assert {s["state"] for s in await b.gateway.dispatcher.status() if s["name"] == "main"} == {"open"}

        await asyncio.sleep(0.6)  # the cool-down ends
        # Half-open: of many concurrent callers on both gateways exactly one is the probe.
        callers = [gw.gateway.dispatcher.admit("main") for gw in (a, b) for _ in range(10)]
        assert sum(1 for ticket in await asyncio.gather(*callers) if ticket) == 1
        # The probe (taken by either) failing reopens the breaker for both.
        await b.gateway.dispatcher.failed("main", "still broken")
        assert not await a.gateway.dispatcher.breaker_allows("main")
        await asyncio.sleep(0.6)
        assert await a.gateway.dispatcher.admit("main")  # A probes now
        assert await b.gateway.dispatcher.admit("main") is None  # the one probe is A's
        await a.gateway.dispatcher.succeeded("main")  # the probe succeeded: closed for both
        assert await b.gateway.dispatcher.breaker_allows("main")
        assert await b.gateway.dispatcher.breaker_allows("main")


async def test_rate_window_shared(tmp_path, redis_prefix):
    vendor = Scripted()
    cfg = config(redis_prefix, [{"name": "main", "vendor": "scripted", "rate_per_minute": 3}])
    async with two_gateways(tmp_path, cfg, cfg, vendor) as (a, b):
        key = await a.token()
        for gw in (a, b, a):
            assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        # Each gateway alone sent at most two: only the shared window makes this a 429.
        status, answer = await b.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 429, answer
        assert answer["error"]["code"] == "rate_limit_exceeded"
        assert len(vendor.submitted) == 3


async def test_callback_on_a_wakes_worker_on_b(tmp_path, redis_prefix):
    vendor = Scripted()
    vendor.polls_to_finish = 1
    channels = [{"name": "main", "vendor": "scripted"}]
    # B's worker sleeps 30 s between idle ticks: only a wake-up makes it poll sooner.
    cfg_b = config(redis_prefix, channels, worker={"tick_seconds": 30.0})
    async with two_gateways(tmp_path, config(redis_prefix, channels), cfg_b, vendor, worker_b=True) as (a, b):
        await asyncio.sleep(0.2)  # B's worker has made its first tick and sleeps
        key = await a.token()
        status, task = await a.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        await asyncio.sleep(0.3)
        assert vendor.polls == {}  # nobody polls it on their own
        vendor_id = vendor.known[task["id"]]
        status, _ = await a.post(
            "/v1/callbacks/main", data=json.dumps({"id": vendor_id}), headers={"Content-Type": "application/json"}
        )
        assert status == 200
        done = await a.wait(task["id"], key, timeout=10)
        assert done["status"] == "completed"
        assert vendor.polls == {vendor_id: 1}


async def test_event_stream_on_b_sees_change_on_a(tmp_path, redis_prefix):
    vendor = Scripted()
    vendor.polls_to_finish = 3
    channels = [{"name": "main", "vendor": "scripted", "options": {"poll_interval": 0.3}}]
    # B re-reads a watched task only every 30 s: its stream can only be woken by Redis.
    cfg_b = config(redis_prefix, channels, server={"events_poll_seconds": 30.0, "events_keepalive_seconds": 30.0})
    async with two_gateways(tmp_path, config(redis_prefix, channels), cfg_b, vendor) as (a, b):
        key = await a.token()
        status, task = await a.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        seen = []
        async with b.http.get(
            b.url + f"/v1/videos/{task['id']}/events", headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            assert resp.status == 200
            first = await resp.content.readline()
            assert first.startswith(b"id:") or first.startswith(b"event:"), first

            from vidgate.worker import Worker

            stop = asyncio.Event()
            worker = asyncio.create_task(Worker(a.gateway).run(stop))  # A changes the task
            try:
                async with asyncio.timeout(15):
                    async for line in resp.content:
                        if line.startswith(b"event:"):
                            seen.append(line.split(b":", 1)[1].strip().decode())
            finally:
                stop.set()
                await worker
    assert seen[-1] == "video.completed", seen
    assert "video.in_progress" in seen, seen


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("coordination", {"redis_url": "http://127.0.0.1:6379"}, "coordination.redis_url"),
        ("coordination", {"key_prefix": ""}, "coordination.key_prefix"),
        ("server", {"workers": 0}, "server.workers"),
    ],
)
def test_bad_settings_are_named(section, values, message):
    from vidgate.config import parse_config
    from vidgate.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_config({section: values})


async def test_unreachable_redis_is_a_clear_error_at_start(tmp_path):
    from processes import free_port

    from vidgate.errors import ConfigError

    cfg = scripted_config(coordination={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with pytest.raises(ConfigError, match="coordination.redis_url: cannot reach Redis"):
        async with run_gateway(cfg, tmp_path, extra_plugins={"scripted": Scripted()}):
            pass
