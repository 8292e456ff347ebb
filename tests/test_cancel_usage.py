"""Plugin contract v2, items 1 and 2: cancel, and usage-fact billing settled on completion."""

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate import CancelOutcome, CancelResult
from vidgate.billing import to_micro
from vidgate.config import parse_config
from vidgate.errors import ConfigError
from vidgate.testing import run_gateway
from vidgate.worker import Worker

LOCAL_PRICED = {"models": {"local-v1": {"price": "0.5 * seconds"}}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: only its exit status is left for the parent.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # reaped between the kill(0) and the read
        return False
    return not stat.split(") ", 1)[-1].startswith("Z")


async def _until(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


# -- cancel on the local vendor ----------------------------------------------------------


async def test_local_cancel_mid_render_kills_it_and_charges_nothing(tmp_path):
    async with run_gateway(LOCAL_PRICED, tmp_path) as gw:
        key = await gw.token("alice", quota=100)
        other = await gw.token("bob", quota=100)
        _, task = await gw.post(
            "/v1/videos", key, json={"model": "local-v1", "prompt": "long", "seconds": 12, "size": "1280x720"}
        )
        assert (await gw.gateway.store.token("alice")).used == to_micro(6.0)  # the estimate, pre-deducted
        running = await gw.wait(task["id"], key, until=("in_progress",))
        pid_file = tmp_path / "data" / "vendors" / "local" / "jobs" / f"{task['id']}.pid"
        await _until(pid_file.exists)
        pid = int(pid_file.read_text())
        assert _alive(pid)

        assert (await gw.post(f"/v1/videos/{task['id']}/cancel", other))[0] == 404
        status, cancelled = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 200 and cancelled["status"] == "cancelled", cancelled
        assert cancelled["progress"] < 99 and cancelled["url"] is None
        assert cancelled["usage"] == {"cost": 0.0}
        await _until(lambda: not _alive(pid), timeout=10)

        # Idempotent, on both surfaces; the progress stays where it stopped.
        again = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert again == (200, cancelled)
        await asyncio.sleep(0.6)  # longer than local's poll interval: a live task would move
        assert (await gw.get(f"/v1/videos/{task['id']}", key))[1] == cancelled
        assert running["progress"] <= cancelled["progress"]
        status, body = await gw.get(f"/v1/videos/{task['id']}/content", key)
        assert status == 409 and body["error"]["code"] == "video_cancelled"

        assert (await gw.gateway.store.token("alice")).used == 0
        assert [e.kind for e in await gw.gateway.store.ledger()] == ["charge", "refund"]
        outcomes = [a.outcome for a in await gw.gateway.store.attempts(task["id"])]
        assert outcomes == ["submitted", "cancel_requested", "cancel_cancelled"]
        assert not (tmp_path / "data" / "media" / task["id"]).exists()


async def test_cancel_of_a_finished_task_is_409(tmp_path):
    async with run_gateway(LOCAL_PRICED, tmp_path) as gw:
        key = await gw.token(quota=100)
        _, task = await gw.post(
            "/v1/videos", key, json={"model": "local-v1", "prompt": "p", "seconds": 1, "size": "160x90"}
        )
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed"
        status, body = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 409 and body["error"]["code"] == "video_finished"
        assert (await gw.get(f"/v1/videos/{task['id']}", key))[1]["status"] == "completed"
        assert (await gw.post("/v1/videos/video_nope/cancel", key))[0] == 404


# -- cancel on scripted vendors ----------------------------------------------------------


async def test_cancel_during_submit_takes_effect_once_the_handle_is_known(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    vendor.submit_gate = asyncio.Event()
    config = scripted_config(models={"scripted-1": {"price": "0.1 * seconds"}})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("t", quota=10)
        submit = asyncio.create_task(gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"}))
        await asyncio.wait_for(vendor.submit_entered.wait(), 10)
        listed = (await gw.get("/v1/videos", key))[1]["data"]
        task_id = listed[0]["id"]
        status, pending = await gw.post(f"/v1/videos/{task_id}/cancel", key)
        assert status == 200 and pending["status"] == "queued"  # recorded, not yet carried out
        assert vendor.cancels == []
        vendor.submit_gate.set()
        status, answered = await submit
        assert status == 200 and answered["status"] == "cancelled" and answered["id"] == task_id
        assert vendor.cancels == [{"id": "s-1"}]
        assert (await gw.gateway.store.token("t")).used == 0
        outcomes = [a.outcome for a in await gw.gateway.store.attempts(task_id)]
        assert outcomes == ["cancel_requested", "submitted", "cancel_cancelled"]


async def test_a_cancel_being_carried_out_is_not_sent_again_by_the_worker(tmp_path):
    """The API that recorded a cancel is asking the vendor; the worker, finding the task
    due with a cancel recorded, must not send a second one (it steps in only after the
    takeover grace, for an API that died mid-cancel)."""
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    config = scripted_config(models={"scripted-1": {"price": "0.1 * seconds"}})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("t", quota=10)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        await gw.wait(task["id"], key, until=("in_progress",))
        vendor.cancel_gate = asyncio.Event()
        cancel = asyncio.create_task(gw.post(f"/v1/videos/{task['id']}/cancel", key))
        await _until(lambda: len(vendor.cancels) == 1, timeout=10)
        await asyncio.sleep(0.5)  # ten poll intervals: a worker that steps in does so by now
        vendor.cancel_gate.set()
        status, cancelled = await cancel
        assert status == 200 and cancelled["status"] == "cancelled"
        assert vendor.cancels == [{"id": "s-1"}]


@pytest.mark.parametrize(
    ("answer", "policy", "used", "kinds"),
    [
        (CancelResult(CancelOutcome.REFUSED, "running"), "none", 0.4, ["charge"]),
        (CancelResult(CancelOutcome.REFUSED, "running"), "full", 0.0, ["charge", "refund"]),
        (
            CancelResult(CancelOutcome.CANCELLED_AFTER_START, "half", usage={"seconds": 2}),
            "none",
            0.2,
            ["charge", "settle"],
        ),
        (CancelResult(CancelOutcome.CANCELLED_AFTER_START, "no usage said"), "full", 0.0, ["charge", "refund"]),
    ],
)
async def test_unconfirmed_cancels_are_billed_per_the_operator_setting(tmp_path, answer, policy, used, kinds):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    vendor.cancel_answer = answer
    config = scripted_config(
        models={"scripted-1": {"price": "0.1 * seconds"}}, billing={"refund_on_unconfirmed_cancel": policy}
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("t", quota=10)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        status, cancelled = await gw.post(f"/v1/video/generations/{task['id']}/cancel", key)
        assert status == 200 and cancelled["status"] == "cancelled"
        assert cancelled["usage"]["cost"] == pytest.approx(used)
        assert (await gw.gateway.store.token("t")).used == to_micro(used)
        assert [e.kind for e in await gw.gateway.store.ledger()] == kinds


async def test_vendor_finished_first_so_the_task_completes(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 10_000
    vendor.cancel_answer = CancelResult(CancelOutcome.FINISHED, "too late")
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        vendor.poll_script.append(__import__("vidgate").PollResult(status="completed", result={"id": "s-1"}))
        status, body = await gw.post(f"/v1/videos/{task['id']}/cancel", key)
        assert status == 409 and body["error"]["code"] == "video_finished"
        assert (await gw.wait(task["id"], key))["status"] == "completed"


async def test_a_cancel_racing_a_completion_ends_the_task_once(tmp_path):
    for attempt in range(6):
        vendor = Scripted()
        vendor.polls_to_finish = 1
        config = scripted_config(models={"scripted-1": {"price": "0.1 * seconds"}})
        async with run_gateway(
            config, tmp_path / str(attempt), extra_plugins={"scripted": vendor}, run_worker=False
        ) as gw:
            key = await gw.token("t", quota=10)
            _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
            record = await gw.gateway.store.get_task(task["id"])
            worker = Worker(gw.gateway)
            _, (status, body) = await asyncio.gather(
                worker.process(record), gw.post(f"/v1/videos/{task['id']}/cancel", key)
            )
            final = (await gw.get(f"/v1/videos/{task['id']}", key))[1]
            kinds = [e.kind for e in await gw.gateway.store.ledger()]
            if final["status"] == "completed":
                assert status == 409 and kinds == ["charge"]
            else:
                assert final["status"] == "cancelled" and status == 200 and kinds == ["charge", "refund"]
                assert not (tmp_path / str(attempt) / "data" / "media" / task["id"]).exists()


# -- usage and prices ---------------------------------------------------------------------


async def test_local_price_expression_with_group_ratio_and_cli_usage(tmp_path):
    config = {
        **LOCAL_PRICED,
        "groups": [{"name": "default"}, {"name": "vip", "ratio": 2.0}],
        "plugins": {"enabled": ["local"]},
        "channels": [{"name": "local", "vendor": "local", "groups": ["default", "vip"]}],
    }
    async with run_gateway(config, tmp_path) as gw:
        plain = await gw.token("plain", quota=20)
        vip = await gw.token("vip", group="vip", quota=20)
        body = {"model": "local-v1", "prompt": "p", "seconds": 8, "size": "160x90"}
        tasks = {name: (await gw.post("/v1/videos", k, json=body))[1] for name, k in (("plain", plain), ("vip", vip))}
        assert tasks["plain"]["usage"] is None  # not known before it is billed
        done = {name: await gw.wait(t["id"], plain if name == "plain" else vip) for name, t in tasks.items()}
        for name, cost in (("plain", 4.0), ("vip", 8.0)):
            usage = done[name]["usage"]
            assert usage["cost"] == cost
            assert (usage["seconds"], usage["width"], usage["height"], usage["frames"]) == (8, 160, 90, 192)
            assert usage["resolution"] == "90p"
            assert (await gw.gateway.store.token(name)).used == to_micro(cost)
    toml = tmp_path / "v.toml"
    toml.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "data" / "vidgate.db"}"\n[[groups]]\nname = "default"\n'
        '[[groups]]\nname = "vip"\nratio = 2.0\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vidgate.cli", "usage", "--config", str(toml), stdout=asyncio.subprocess.PIPE
    )
    out = (await proc.communicate())[0].decode()
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["plain"][1:] == ["local-v1", "1", "4.0000", "+0.0000", "0.0000", "4.0000"]
    assert rows["vip"][1:] == ["local-v1", "1", "8.0000", "+0.0000", "0.0000", "8.0000"]


@pytest.mark.parametrize(("actual", "settle"), [({"seconds": 8}, 0.4), ({"seconds": 2}, -0.2), ({}, None)])
async def test_completion_settles_to_the_actual_usage_exactly_once(tmp_path, actual, settle):
    vendor = Scripted()
    vendor.polls_to_finish = 1
    vendor.actual_usage = actual
    config = scripted_config(models={"scripted-1": {"price": "0.1 * seconds"}})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token("t", quota=10)
        _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        record = await gw.gateway.store.get_task(task["id"])
        w1, w2 = Worker(gw.gateway), Worker(gw.gateway)
        await asyncio.gather(w1.process(record), w2.process(record), w1.process(record))
        await Worker(gw.gateway).process(await gw.gateway.store.get_task(task["id"]))  # processed again, later
        final = (await gw.get(f"/v1/videos/{task['id']}", key))[1]
        assert final["status"] == "completed"
        expected = 0.4 + (settle or 0)
        assert final["usage"]["cost"] == pytest.approx(expected)
        assert final["usage"]["seconds"] == actual.get("seconds", 4)
        ledger = await gw.gateway.store.ledger()
        assert [e.kind for e in ledger] == (["charge", "settle"] if settle else ["charge"])
        if settle:
            assert ledger[1].amount == to_micro(settle)
        assert (await gw.gateway.store.token("t")).used == to_micro(expected)


def test_shorthands_are_price_expressions():
    config = parse_config({"models": {"m": {"price_per_second": 0.1, "resolution_multipliers": {"1080p": 1.5}}}})
    assert (
        config.models["m"].expression()
        == "(0.1 * seconds) * (1.5 if resolution == '1080p' else (1.5 if size == '1080p' else (1.0)))"
    )


@pytest.mark.parametrize(
    "price",
    ["0.5 *", "0.5 * minutes", "__import__('os').system('true')", "'free'", "0.1 * resolution", "seconds > 4"],
)
def test_broken_price_expression_is_a_config_error_naming_the_key(price):
    with pytest.raises(ConfigError, match=r'models\."local-v1"\.price: '):
        parse_config({"models": {"local-v1": {"price": price}}}, "vidgate.toml")


def test_refund_setting_is_checked():
    with pytest.raises(ConfigError, match="billing.refund_on_unconfirmed_cancel"):
        parse_config({"billing": {"refund_on_unconfirmed_cancel": "half"}})


async def test_cancel_and_settlement_on_postgres(tmp_path, postgres_url):
    vendor = Scripted()
    vendor.polls_to_finish = 3
    vendor.actual_usage = {"seconds": 8}
    config = scripted_config(models={"scripted-1": {"price": "0.1 * seconds"}}, store={"url": postgres_url})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token("t", quota=10)
        _, first = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        status, cancelled = await gw.post(f"/v1/video/generations/{first['id']}/cancel", key)
        assert status == 200 and cancelled["status"] == "cancelled" and cancelled["usage"] == {"cost": 0.0}
        _, second = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
        done = await gw.wait(second["id"], key)
        assert done["usage"]["cost"] == pytest.approx(0.8)
        assert sorted(e.kind for e in await gw.gateway.store.ledger()) == ["charge", "charge", "refund", "settle"]
        assert (await gw.gateway.store.token("t")).used == to_micro(0.8)
