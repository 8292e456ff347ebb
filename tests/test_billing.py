"""Charges: from what the vendor makes, atomic with the task, refunded exactly once."""

import asyncio

from scripted_vendor import Scripted, scripted_config

from vidgate import TaskError
from vidgate.billing import to_micro
from vidgate.testing import force_task_state, run_gateway
from vidgate.worker import Worker

PRICED = {"scripted-1": {"price_per_second": 0.1}, "scripted-2": {"price_per_request": 1.0}}


async def test_price_uses_what_is_sent_and_group_ratio(tmp_path):
    config = scripted_config(models=PRICED, groups=[{"name": "default", "ratio": 2.0}])
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": Scripted()}, run_worker=False) as gw:
        key = await gw.token("t", quota=100)
        # seconds absent: the plugin resolves its default (4 s); that is what is billed
        status, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        assert status == 200 and task["seconds"] == "4"
        status, _ = await gw.post(
            "/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p", "seconds": 8}
        )
        status, _ = await gw.post("/v1/video/generations", key, json={"model": "scripted-2", "prompt": "p"})
        token = await gw.gateway.store.token("t")
        assert token.used == to_micro(0.1 * 4 * 2 + 0.1 * 8 * 2 + 1.0 * 2)
        charges = [e.amount for e in await gw.gateway.store.ledger() if e.kind == "charge"]
        assert sum(charges) == token.used


async def test_insufficient_quota_is_429_before_any_vendor_call(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(models=PRICED), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("poor", quota=0.3)
        status, answer = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        assert status == 429 and answer["error"]["code"] == "insufficient_quota"
        assert vendor.submitted == []


async def test_concurrent_submits_never_overspend(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    async with run_gateway(scripted_config(models=PRICED), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("t", quota=1.0)  # 0.4 per task: two fit
        body = {"model": "scripted-1", "prompt": "p"}
        results = await asyncio.gather(*(gw.post("/v1/video/generations", key, json=body) for _ in range(25)))
        statuses = sorted(s for s, _ in results)
        assert statuses.count(200) == 2 and statuses.count(429) == 23
        token = await gw.gateway.store.token("t")
        assert token.used == to_micro(0.8) <= token.quota
        ledger = await gw.gateway.store.ledger()
        assert sum(e.amount for e in ledger) == token.used
        assert len(vendor.submitted) == 2


async def test_failed_task_is_refunded_once_even_if_processed_twice(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 1
    vendor.fail_with = TaskError("vendor_failed", "the vendor gave up")
    async with run_gateway(
        scripted_config(models=PRICED), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False
    ) as gw:
        key = await gw.token("t", quota=10)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        record = await gw.gateway.store.get_task(task["id"])
        # Two workers racing on the same task (as after a lease expiry).
        w1, w2 = Worker(gw.gateway), Worker(gw.gateway)
        await asyncio.gather(w1.process(record), w2.process(record), w1.process(record))
        final = (await gw.get(f"/v1/videos/{task['id']}", key))[1]
        assert final["status"] == "failed"
        assert final["error"] == {"code": "vendor_failed", "message": "the vendor gave up"}
        ledger = await gw.gateway.store.ledger()
        assert [e.kind for e in ledger] == ["charge", "refund"]
        assert (await gw.gateway.store.token("t")).used == 0


async def test_task_stored_before_usage_billing_settles_from_its_job(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 1
    vendor.actual_usage = {"seconds": 4}
    async with run_gateway(
        scripted_config(models=PRICED), tmp_path, extra_plugins={"scripted": vendor}, run_worker=False
    ) as gw:
        key = await gw.token("t", quota=10)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        # A row from before usage billing has no usage facts: they come from the stored job.
        await force_task_state(gw.gateway.store, task["id"], usage=None)
        record = await gw.gateway.store.get_task(task["id"])
        assert record.usage is None
        await Worker(gw.gateway).process(record)
        final = await gw.gateway.store.get_task(task["id"])
        assert final.status == "completed"
        assert final.usage["seconds"] == 4 and final.usage["count"] == 1
        assert (await gw.gateway.store.token("t")).used == to_micro(0.1 * 4)


async def test_metadata_cannot_change_the_billed_model(tmp_path):
    async with run_gateway(scripted_config(models=PRICED), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token("t", quota=10)
        status, answer = await gw.post(
            "/v1/video/generations",
            key,
            json={"model": "scripted-1", "prompt": "p", "metadata": {"model": "scripted-2"}},
        )
        assert status == 400 and answer["error"]["param"] == "metadata.model"
        assert (await gw.gateway.store.token("t")).used == 0


def test_compute_seconds_is_a_usage_fact():
    # Vendors that bill hardware time report it apart from the clip length.
    from vidgate.billing import actual_facts, charge
    from vidgate.config import parse_config

    config = parse_config({"models": {"m": {"price": "0.5 * compute_seconds + 0 * seconds"}}})
    facts = actual_facts({"seconds": 5, "count": 1}, {"compute_seconds": 12.5, "bogus": 1})
    assert facts == {"seconds": 5, "count": 1, "compute_seconds": 12.5}
    assert charge(config, "m", facts, "default") == to_micro(6.25)
