"""Dispatch over channels: priority, weights, breakers, failover, limits."""

import asyncio
import collections

from scripted_vendor import Scripted, scripted_config

from vidgate import ChannelUnusable, ModelRetired, VendorRateLimited, VendorUnavailable
from vidgate.testing import run_gateway

SUBMIT = {"model": "scripted-1", "prompt": "a fox"}


def channels(*specs):
    return [{"name": name, "vendor": "scripted", **opts} for name, opts in specs]


async def test_priority_then_weights(tmp_path):
    vendor = Scripted()
    config = scripted_config(
        channels(
            ("heavy", {"priority": 10, "weight": 3}),
            ("light", {"priority": 10, "weight": 1}),
            ("backup", {"priority": 0}),
        )
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        for _ in range(200):
            status, _ = await gw.post("/v1/video/generations", key, json=SUBMIT)
            assert status == 200
    counts = collections.Counter(ch for ch, _ in vendor.submitted)
    assert counts["backup"] == 0
    # Binomial(200, 0.75): mean 150, sd 6.1; these bounds fail about once in 10^6 runs.
    assert 120 <= counts["heavy"] <= 180, counts
    assert counts["heavy"] + counts["light"] == 200


async def test_failover_to_next_channel_and_attempts_recorded(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["first"] = collections.deque([VendorUnavailable("boom 502")])
    config = scripted_config(channels(("first", {"priority": 10}), ("second", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed"
        attempts = await gw.gateway.store.attempts(task["id"])
        assert [(a.channel, a.outcome) for a in attempts] == [("first", "unavailable"), ("second", "submitted")]
        assert "first" not in str(done) and "s-1" not in str(done)  # no channel or vendor ids leak


async def test_account_error_opens_breaker_then_probe(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["main"] = collections.deque([ChannelUnusable("balance exhausted", vendor_code=1102)])
    config = scripted_config(channels(("main", {"priority": 10, "cooldown_seconds": 0.5}), ("spare", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        for _ in range(3):
            assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        # first went main (failed) -> spare; the next two skip main during its cool-down
        assert [ch for ch, _ in vendor.submitted] == ["spare", "spare", "spare"]
        await asyncio.sleep(0.6)
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        assert vendor.submitted[-1][0] == "main"  # the half-open probe succeeded
        assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
        assert vendor.submitted[-1][0] == "main"


async def test_no_channel_is_503_and_nothing_charged(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["only"] = collections.deque([VendorUnavailable("down")])
    config = scripted_config(channels(("only", {})), models={"scripted-1": {"price_per_second": 0.1}})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("payer", quota=10)
        status, answer = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 503 and answer["error"]["code"] == "no_channel_available"
        token = await gw.gateway.store.token("payer")
        assert token.used == 0
        status, listing = await gw.get("/v1/videos", key)
        assert listing["data"] == []  # the abandoned task is not shown to the client


async def test_all_rate_limited_is_429(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["only"] = collections.deque([VendorRateLimited("slow down", retry_after=0.01)] * 5)
    config = scripted_config(channels(("only", {})), network={"submit_retries": 1})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, answer = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 429 and answer["error"]["code"] == "rate_limit_exceeded"


async def test_rate_limited_submit_is_retried_on_the_same_channel(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["only"] = collections.deque([VendorRateLimited("slow down", retry_after=0.05)])
    async with run_gateway(scripted_config(channels(("only", {}))), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        assert (await gw.wait(task["id"], key))["status"] == "completed"


async def test_max_concurrent_sends_overflow_elsewhere(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    config = scripted_config(channels(("small", {"priority": 10, "max_concurrent": 2}), ("big", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        for _ in range(4):
            assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
    assert [ch for ch, _ in vendor.submitted] == ["small", "small", "big", "big"]


async def test_rate_per_minute_limits_a_channel(tmp_path):
    vendor = Scripted()
    config = scripted_config(channels(("metered", {"priority": 10, "rate_per_minute": 2}), ("free", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        for _ in range(3):
            assert (await gw.post("/v1/video/generations", key, json=SUBMIT))[0] == 200
    assert [ch for ch, _ in vendor.submitted] == ["metered", "metered", "free"]


async def test_groups_route_to_their_channels(tmp_path):
    vendor = Scripted()
    config = scripted_config(
        channels(("public", {"groups": ["default"]}), ("premium", {"groups": ["vip"]})),
        groups=[{"name": "default"}, {"name": "vip", "ratio": 0.5}],
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        vip = await gw.token("v", group="vip")
        plain = await gw.token("p")
        await gw.post("/v1/video/generations", vip, json=SUBMIT)
        await gw.post("/v1/video/generations", plain, json=SUBMIT)
    assert [ch for ch, _ in vendor.submitted] == ["premium", "public"]


async def test_timed_out_submit_that_the_vendor_did_create_is_not_sent_twice(tmp_path):
    vendor = Scripted()
    vendor.lose_answers = 1
    config = scripted_config(channels(("first", {"priority": 10}), ("second", {"priority": 0})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        outcomes = [(a.channel, a.outcome) for a in await gw.gateway.store.attempts(task["id"])]
        assert outcomes == [("first", "unavailable"), ("first", "found"), ("first", "submitted")]
    assert [ch for ch, _ in vendor.submitted] == ["first"]  # no second task at any vendor


async def test_the_worker_recovers_an_interrupted_submit_through_the_same_lookup(tmp_path):
    """A task left in phase 'submitting' (its process died before storing the vendor's
    answer) is looked up by the one lookup the submit path uses too: the attempt trail
    shows what the vendor said (``found``) before the worker takes the task on."""
    import time

    from vidgate.testing import force_task_state

    vendor = Scripted()
    config = scripted_config(channels(("first", {})))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        vid = vendor.known[task["id"]]
        await force_task_state(
            gw.gateway.store,
            task["id"],
            phase="submitting",
            handle=None,
            vendor_task_id=None,
            lease_owner=None,
            lease_until=None,
            next_poll_at=time.time(),
        )
        gw.gateway.wakeup.set()
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        trail = [(a.outcome, a.detail) for a in await gw.gateway.store.attempts(task["id"])]
        assert trail[-2:] == [("found", vid), ("recovered", vid)], trail
    assert len(vendor.submitted) == 1  # found, not sent again


async def test_metrics_count_tasks_attempts_and_open_channels(tmp_path):
    vendor = Scripted()
    vendor.submit_errors["first"] = collections.deque([ChannelUnusable("no balance")])
    config = scripted_config(
        channels(("first", {"priority": 10}), ("second", {"priority": 0})), server={"metrics": True}
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json=SUBMIT)
        await gw.wait(task["id"], key)
        status, text = await gw.get("/metrics", raw=True)
    text = text.decode()
    assert status == 200
    assert 'vidgate_tasks{model="scripted-1",channel="second",status="completed"} 1' in text
    assert 'vidgate_vendor_attempts_total{channel="first",outcome="channel_error"} 1' in text
    assert 'vidgate_channel_open{channel="first"} 1' in text
    assert 'vidgate_channel_open{channel="second"} 0' in text


async def test_metrics_are_off_by_default(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        status, _ = await gw.get("/metrics")
    assert status == 404


async def test_a_retired_model_leaves_its_channel_and_then_the_gateway(tmp_path):
    """A vendor's 404 for a retired model: the task moves on, the model leaves that channel
    (no second round trip there), and with no channel left the client gets a 503 that says so."""
    vendor = Scripted()
    gone = "Model s1 was retired on 2026-10-22"
    vendor.submit_errors["legacy"] = collections.deque([ModelRetired(gone, http_status=404)])
    config = scripted_config(
        channels(("legacy", {"priority": 10}), ("current", {"priority": 0})), server={"metrics": True}
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200, task
        assert (await gw.wait(task["id"], key))["status"] == "completed"
        attempts = await gw.gateway.store.attempts(task["id"])
        assert [(a.channel, a.outcome) for a in attempts] == [("legacy", "model_retired"), ("current", "submitted")]

        # The next task goes straight to the channel that still serves the model.
        status, second = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 200
        assert [a.channel for a in await gw.gateway.store.attempts(second["id"])] == ["current"]
        # The other model of the retired channel is still routed there.
        status, other = await gw.post("/v1/video/generations", key, json={**SUBMIT, "model": "scripted-2"})
        assert status == 200
        assert [ch for ch, _ in vendor.submitted][-1] in {"legacy", "current"}

        _, text = await gw.get("/metrics", raw=True)
        assert 'vidgate_channel_model_retired{channel="legacy",model="scripted-1"} 1' in text.decode()
        assert 'vidgate_channel_model_retired{channel="current"' not in text.decode()

        # The last channel retires it too: this request fails over to nothing...
        vendor.submit_errors["current"] = collections.deque([ModelRetired(gone, http_status=404)])
        status, body = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 503, body
        assert body["error"]["code"] == "model_retired"
        assert "retired" in body["error"]["message"] and gone in body["error"]["message"]
        # ...and later ones are answered at once, with no vendor call.
        sent = len(vendor.submitted)
        status, body = await gw.post("/v1/video/generations", key, json=SUBMIT)
        assert status == 503 and body["error"]["code"] == "model_retired"
        assert len(vendor.submitted) == sent and not vendor.submit_errors["current"]
