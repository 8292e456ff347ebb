"""Batch polling, the poll failure policy and the errors-by-phase table, over HTTP."""

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from scripted_vendor import BatchScripted, Scripted, scripted_config

from vidgate import ChannelUnusable, ModelRetired, PollResult, TaskNotFound, VendorError, VendorUnavailable, errors
from vidgate.config import parse_config
from vidgate.outcomes import TABLE, Action, Phase, classify, rule
from vidgate.testing import run_gateway
from vidgate.worker import Worker

PRICED = {"scripted-1": {"price_per_second": 0.1}}
BODY = {"model": "scripted-1", "prompt": "a fox"}


@contextlib.asynccontextmanager
async def worker_running(gw):
    stop = asyncio.Event()
    job = asyncio.create_task(Worker(gw.gateway).run(stop))
    try:
        yield
    finally:
        stop.set()
        await job


async def submit(gw, key, n=1):
    ids = []
    for _ in range(n):
        status, task = await gw.post("/v1/video/generations", key, json=BODY)
        assert status == 200, task
        ids.append(task["id"])
    return ids


async def refunded(gw, task_id):
    return any(e.kind == "refund" and e.task_id == task_id for e in await gw.gateway.store.ledger())


# -- batch polling -----------------------------------------------------------------------


async def run_fifty(tmp_path, vendor):
    """50 in-flight tasks on one channel (poll interval 1 s), each needing 3 status
    observations; returns the upstream status calls per poll interval."""
    vendor.polls_to_finish = 3
    config = scripted_config(channels=[{"name": "main", "vendor": "scripted", "options": {"poll_interval": 1.0}}])
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}, run_worker=False) as gw:
        key = await gw.token()
        ids = await submit(gw, key, 50)
        async with worker_running(gw):
            done = await asyncio.gather(*(gw.wait(i, key, timeout=60) for i in ids))
        assert [t["status"] for t in done] == ["completed"] * 50
    return vendor.status_calls / vendor.polls_to_finish


async def test_batch_verb_polls_fifty_tasks_in_one_call_per_interval(tmp_path):
    vendor = BatchScripted()
    per_interval = await run_fifty(tmp_path, vendor)
    assert per_interval <= 2, vendor.batch_sizes
    assert vendor.single_polls == 0
    assert max(vendor.batch_sizes) > 16  # more than one lease's worth of tasks per call


async def test_without_the_batch_verb_each_task_is_polled(tmp_path):
    vendor = Scripted()
    vendor.poll_after = None
    assert await run_fifty(tmp_path, vendor) == 50


async def test_tasks_missing_from_the_batch_answer_are_polled_alone(tmp_path):
    vendor = BatchScripted()
    vendor.batch_omit = {"s-2"}
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        ids = await submit(gw, key, 3)
        done = [await gw.wait(i, key) for i in ids]
        assert [t["status"] for t in done] == ["completed"] * 3
        assert vendor.single_polls == vendor.polls_to_finish  # only s-2, each time


async def test_a_failed_batch_call_falls_back_to_per_task_polls(tmp_path):
    vendor = BatchScripted()
    vendor.batch_script.extend(TimeoutError() for _ in range(100))  # the list endpoint is down
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        ids = await submit(gw, key, 3)
        done = [await gw.wait(i, key) for i in ids]
        assert [t["status"] for t in done] == ["completed"] * 3
        assert vendor.single_polls >= 3 * vendor.polls_to_finish
        task = await gw.gateway.store.get_task(ids[0])
        assert task.poll_failures == 0  # a failed batch is no strike against its tasks


# -- poll failure policy ---------------------------------------------------------------


def fast(**worker):
    return {"max_backoff_seconds": 0.01, **worker}


async def test_twenty_consecutive_malformed_polls_fail_and_refund(tmp_path):
    vendor = Scripted()
    # A JSON decode error escaping the plugin is a malformed answer (classified by the core).
    vendor.poll_script.extend(json.JSONDecodeError("Expecting value", "<html>", 0) for _ in range(25))
    config = scripted_config(models=PRICED, worker=fast())  # default max_poll_failures = 20
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token(quota=10)
        [task_id] = await submit(gw, key)
        done = await gw.wait(task_id, key)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "poll_failures_exceeded", done
        assert len(vendor.poll_script) == 5  # exactly 20 polls were made
        assert await refunded(gw, task_id)
        assert (await gw.gateway.store.token("test")).used == 0


async def test_a_successful_poll_resets_the_count(tmp_path):
    vendor = Scripted()
    vendor.polls_to_finish = 2
    down = VendorUnavailable("HTTP 502")
    vendor.poll_script.extend([down, down, PollResult(status="in_progress", progress=10), down, down])
    config = scripted_config(worker=fast(max_poll_failures=3))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        [task_id] = await submit(gw, key)
        done = await gw.wait(task_id, key)
        assert done["status"] == "completed", done  # 4 failures, never 3 in a row


async def test_unknown_status_words_count_as_failed_polls(tmp_path):
    vendor = Scripted()
    vendor.poll_script.extend(PollResult.unknown("RENDERING_V2") for _ in range(3))
    config = scripted_config(
        worker=fast(max_poll_failures=3),
        channels=[{"name": "main", "vendor": "scripted", "options": {"poll_interval": 0.01}}],
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        [task_id] = await submit(gw, key)
        done = await gw.wait(task_id, key)
        assert done["error"]["code"] == "poll_failures_exceeded"
        assert "RENDERING_V2" in done["error"]["message"]


async def test_not_found_within_the_grace_is_transient(tmp_path):
    vendor = Scripted()
    vendor.poll_script.extend(TaskNotFound("HTTP 404: no such task") for _ in range(3))
    config = scripted_config(worker=fast(max_backoff_seconds=0.1, not_found_grace_seconds=2))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        [task_id] = await submit(gw, key)
        done = await gw.wait(task_id, key)
        assert done["status"] == "completed", done
        assert not vendor.poll_script


async def test_not_found_after_the_grace_fails_the_task_at_once(tmp_path):
    vendor = Scripted()
    vendor.poll_script.extend(TaskNotFound("HTTP 404: no such task") for _ in range(100))
    config = scripted_config(models=PRICED, worker={"max_backoff_seconds": 0.5, "not_found_grace_seconds": 2})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token(quota=10)
        [task_id] = await submit(gw, key)
        done = await gw.wait(task_id, key)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "vendor_task_lost", done
        task = await gw.gateway.store.get_task(task_id)
        assert task.completed_at - task.submitted_at >= 2  # not before the grace ended
        polls = 100 - len(vendor.poll_script)
        assert 1 < polls < 20  # polled (not-found, transient) during the grace, then failed at once
        assert await refunded(gw, task_id)


async def test_retired_model_fails_with_the_vendors_message_without_retries(tmp_path):
    vendor = Scripted()
    vendor.poll_script.append(ModelRetired("Model s1 is no longer available", http_status=410))
    async with run_gateway(scripted_config(models=PRICED), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token(quota=10)
        [task_id] = await submit(gw, key)
        done = await gw.wait(task_id, key)
        assert done["error"]["code"] == "model_retired"
        assert done["error"]["message"] == "Model s1 is no longer available"
        assert vendor.single_polls == 1
        assert await refunded(gw, task_id)
        # The only channel no longer serves the model: the next request is told so at once.
        status, body = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "again"})
        assert status == 503 and body["error"]["code"] == "model_retired"


async def test_account_error_while_polling_keeps_the_task_and_opens_the_breaker(tmp_path):
    vendor = Scripted()
    vendor.poll_script.extend([ChannelUnusable("insufficient balance"), ChannelUnusable("insufficient balance")])
    config = scripted_config(worker=fast(max_backoff_seconds=0.3))
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        [task_id] = await submit(gw, key)
        for _ in range(200):
            if len(vendor.poll_script) < 2:
                break
            await asyncio.sleep(0.02)
        assert len(vendor.poll_script) < 2  # the account error was seen while polling
        status, answer = await gw.post("/v1/video/generations", key, json=BODY)
        assert status == 503 and answer["error"]["code"] == "no_channel_available", answer
        done = await gw.wait(task_id, key)
        assert done["status"] == "completed"
        assert len(vendor.submitted) == 1


async def test_raw_transport_errors_from_a_plugin_are_transient(tmp_path):
    vendor = Scripted()
    vendor.poll_script.extend(
        [
            TimeoutError(),
            aiohttp.ServerDisconnectedError(),
            ConnectionRefusedError(111, "refused"),
            ValueError("not json"),
        ]
    )
    async with run_gateway(scripted_config(worker=fast()), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        [task_id] = await submit(gw, key)
        assert (await gw.wait(task_id, key))["status"] == "completed"


def test_worker_keys_default_to_twenty_failures_and_two_minutes():
    worker = parse_config({}).worker
    assert worker.max_poll_failures == 20
    assert worker.not_found_grace_seconds == 120
    with pytest.raises(errors.ConfigError, match="worker.max_poll_failures"):
        parse_config({"worker": {"max_poll_failures": 0}})


# -- the table -------------------------------------------------------------------------

CLASSES = [
    c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, VendorError) and c is not VendorError
]


def test_every_error_class_has_a_rule_in_every_phase():
    for phase in Phase:
        for cls in CLASSES:
            assert (phase, cls) in TABLE, (phase, cls)


def test_the_table_is_documented_row_by_row():
    docs = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    for cls in CLASSES:
        cells = [TABLE[(phase, cls)] for phase in Phase]
        line = next((ln for ln in docs.splitlines() if ln.startswith(f"| `{cls.__name__}` |")), None)
        assert line is not None, cls
        for cell in cells:
            assert cell.action.value in line, (cls, cell)


def test_classification_of_raw_exceptions():
    assert isinstance(classify(TimeoutError()), VendorUnavailable)
    assert classify(TimeoutError()).maybe_received
    refused = classify(ConnectionRefusedError(111, "refused"))
    assert isinstance(refused, VendorUnavailable) and not refused.maybe_received
    assert isinstance(classify(json.JSONDecodeError("x", "y", 0)), VendorUnavailable)
    info = aiohttp.RequestInfo(aiohttp.client.URL("http://v"), "GET", {}, aiohttp.client.URL("http://v"))
    assert isinstance(classify(aiohttp.ClientResponseError(info, (), status=404)), TaskNotFound)
    assert isinstance(classify(aiohttp.ClientResponseError(info, (), status=401)), ChannelUnusable)
    assert classify(KeyError("bug")) is None  # a plugin bug is not a vendor answer
    assert rule(Phase.POLL, ChannelUnusable("x")).action is Action.RETRY_BACKOFF
