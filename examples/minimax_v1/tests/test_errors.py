"""The eight ``base_resp.status_code`` errors of MiniMax V1, each through a whole gateway
with two channels: what the client is answered, and whether the task moved on to the
second channel (a bad key, no balance, MiniMax's own transient errors) or not (a refusal
of the request itself)."""

from __future__ import annotations

import contextlib

import pytest

from vidgate.testing import run_gateway
from vidgate_minimax_v1 import plugin
from vidgate_minimax_v1.fake import FakeMinimaxV1

MODEL = "MiniMax-Hailuo-2.3"


def config(first: FakeMinimaxV1, second: FakeMinimaxV1, **first_channel):
    def channel(name, fake, priority, **extra):
        creds = {"api_key": fake.secret}
        return {"name": name, "vendor": plugin.name, "base_url": fake.url + "/v1", "credentials": creds,
                "priority": priority, "options": {"poll_interval": 0.05}, **extra}  # fmt: skip

    return {
        "plugins": {"enabled": []},
        "channels": [channel("first", first, 10, **first_channel), channel("second", second, 0)],
        "network": {"outbound_timeout_seconds": 2},
        "models": {MODEL: {"price_per_second": 1.0}},
    }


@contextlib.asynccontextmanager
async def gateway(tmp_path, **first_channel):
    async with FakeMinimaxV1().serve() as first, FakeMinimaxV1().serve() as second:
        async with run_gateway(
            config(first, second, **first_channel), tmp_path, extra_plugins={plugin.name: plugin}
        ) as gw:
            yield gw, first, second


async def create(gw, prompt="a lighthouse at dusk"):
    key = await gw.token()
    status, task = await gw.post("/v1/video/generations", key, json={"model": MODEL, "prompt": prompt, "seconds": 6})
    return key, status, task


@pytest.mark.parametrize(
    ("fault", "code"),
    [("unknown-error", 1000), ("busy", 1001), ("429", 1002), ("no-balance", 1008)],
)
async def test_the_account_or_minimax_at_fault_moves_the_task_on(tmp_path, fault, code):
    async with gateway(tmp_path) as (gw, first, second):
        first.inject("create", fault)
        key, status, task = await create(gw)
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        assert [(r.code, r.fault) for r in first.recorded("POST")][0] == (code, fault)
        assert len(first.jobs) + len(second.jobs) == 1  # one vendor job, never two


async def test_a_bad_key_1004_moves_the_task_on(tmp_path):
    async with gateway(tmp_path, credentials={"api_key": "not-the-key-0000"}) as (gw, first, second):
        key, status, task = await create(gw)
        assert status == 200 and (await gw.wait(task["id"], key))["status"] == "completed"
        assert [r.code for r in first.recorded("POST")] == [1004] and len(second.jobs) == 1


@pytest.mark.parametrize(
    ("first_channel", "fault", "code"),
    [({}, "sensitive", 1026), ({"model_map": {MODEL: "Hailuo-9"}}, None, 2013)],
)
async def test_a_refused_request_is_answered_400_and_tried_nowhere_else(tmp_path, first_channel, fault, code):
    async with gateway(tmp_path, **first_channel) as (gw, first, second):
        if fault:
            first.inject("create", fault)
        key, status, task = await create(gw)
        assert status == 400 and task["error"]["message"].startswith("MiniMax: "), task
        assert [r.code for r in first.recorded("POST")] == [code] and not second.requests


async def test_sensitive_output_1027_fails_the_task_as_content_filtered(tmp_path):
    async with gateway(tmp_path) as (gw, first, second):
        key, status, task = await create(gw, "a storm [filtered]")
        done = await gw.wait(task["id"], key)
        assert done["status"] == "failed" and done["error"]["code"] == "content_filtered", done
        assert 1027 in [r.code for r in first.recorded("GET")]
        rows = await gw.gateway.store.db.fetchall("SELECT amount FROM ledger WHERE task_id = ?", task["id"])
        assert len(rows) == 2 and sum(r["amount"] for r in rows) == 0  # charged, then refunded
