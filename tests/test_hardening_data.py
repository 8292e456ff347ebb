"""Hardening of request data, logs and tokens (issue 11, findings 13, 15, 16, 18, 19).

* JSON bodies with ``NaN``/``Infinity`` (or numbers too large for a float) are a 400.
* Control characters in ``prompt`` and NUL anywhere in stored strings are a 400 naming the
  field, on SQLite and PostgreSQL.
* ``metadata`` has its own size limit; the request and job blobs are not read by GET/list.
* Token names are unique; an ambiguous name from an old database is refused, ids work.
* A channel's credential values never reach the logs, whatever a plugin logs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import structlog
from scripted_vendor import Scripted, scripted_config
from test_secrets import captured_logs, png

from vidgate import CallContext, Submission, VendorJob
from vidgate.store import DuplicateTokenName, Store
from vidgate.store.db import connect
from vidgate.store.schema import MIGRATIONS
from vidgate.testing import run_gateway, serve_app
from vidgate_kling.fake import FakeKling
from vidgate_sora.fake import FakeVideosAPI
from vidgate_veo.fake import FakeVeo

GOOD = {"model": "scripted-1", "prompt": "a red fox"}


def store_config(store_url: str | None, **extra: Any) -> dict[str, Any]:
    config = scripted_config(**extra)
    if store_url is not None and store_url.startswith("postgresql"):
        config["store"] = {"url": store_url}
    return config


# -- 19: NaN and Infinity ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "scripted-1", "prompt": "a fox", "seconds": NaN}',
        b'{"model": "scripted-1", "prompt": "a fox", "metadata": {"cfg": Infinity}}',
        b'{"model": "scripted-1", "prompt": "a fox", "metadata": {"cfg": [-Infinity]}}',
        b'{"model": "scripted-1", "prompt": "a fox", "metadata": {"cfg": 1e999}}',
    ],
)
async def test_non_finite_numbers_in_a_json_body_are_400(tmp_path, raw):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        for path in ("/v1/video/generations", "/v1/videos"):
            status, body = await gw.post(path, key, data=raw, headers={"Content-Type": "application/json"})
            assert status == 400, body
            assert body["error"]["code"] == "invalid_json"
        assert vendor.submitted == []


async def test_non_finite_numbers_in_multipart_metadata_are_400(tmp_path):
    vendor = Scripted()
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        form = {"model": "scripted-1", "prompt": "a fox", "metadata": '{"cfg": NaN}'}
        status, body = await gw.post("/v1/videos", key, data=form)
        assert status == 400 and body["error"]["param"] == "metadata", body
        # A flattened metadata[k]=NaN is not JSON, so it stays the text "NaN".
        status, task = await gw.post(
            "/v1/videos", key, data={"model": "scripted-1", "prompt": "a fox", "metadata[cfg]": "NaN"}
        )
        assert status == 200, task
        assert (await gw.gateway.store.task_request(task["id"]))["metadata"] == {"cfg": "NaN"}


# -- 16: NUL and control characters, on both stores -----------------------------------------


@pytest.mark.parametrize(
    "body, param",
    [
        ({**GOOD, "prompt": "a fox\x00"}, "prompt"),
        ({**GOOD, "prompt": "a \x1b[31mred\x1b[0m fox"}, "prompt"),
        ({**GOOD, "prompt": "a fox\x7f"}, "prompt"),
        ({**GOOD, "metadata": {"style": "noir\x00"}}, "metadata.style"),
        ({**GOOD, "metadata": {"sty\x00le": "noir"}}, "metadata"),
        ({**GOOD, "metadata": {"a": {"b": ["x", "y\x00"]}}}, "metadata.a.b[1]"),
        ({**GOOD, "image": "https://example.com/a\x00.png"}, "image"),
    ],
)
async def test_nul_and_control_characters_are_400_on_both_stores(tmp_path, store_url, body, param):
    vendor = Scripted()
    async with run_gateway(store_config(store_url), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        for path in ("/v1/video/generations", "/v1/videos"):
            status, answer = await gw.post(path, key, json=body)
            assert status == 400, answer
            assert answer["error"]["param"] == param, answer
        # The connection and the store still work, and newlines and tabs are fine.
        status, task = await gw.post("/v1/videos", key, json={**GOOD, "prompt": "a fox\n\tin snow\r\n"})
        assert status == 200, task
        assert vendor.submitted and len(vendor.submitted) == 1


async def test_nul_in_a_remix_prompt_is_400(tmp_path, store_url):
    vendor = Scripted()
    async with run_gateway(store_config(store_url), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        status, task = await gw.post("/v1/videos", key, json=GOOD)
        assert status == 200
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed"
        status, answer = await gw.post(f"/v1/videos/{task['id']}/remix", key, json={"prompt": "again\x00"})
        assert status == 400 and answer["error"]["param"] == "prompt", answer
        status, remix = await gw.post(f"/v1/videos/{task['id']}/remix", key, json={"prompt": "again, at night"})
        assert status == 200, remix


# -- 18: metadata limit, blobs out of the task row -------------------------------------------


async def test_metadata_over_its_limit_is_400_naming_metadata(tmp_path):
    vendor = Scripted()
    config = scripted_config(server={"max_metadata_bytes": 4096})
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        big = {"notes": "x" * 5000}
        status, answer = await gw.post("/v1/video/generations", key, json={**GOOD, "metadata": big})
        assert status == 400 and answer["error"]["param"] == "metadata", answer
        assert answer["error"]["code"] == "too_large"
        status, answer = await gw.post(
            "/v1/videos", key, data={"model": "scripted-1", "prompt": "a fox", "metadata[notes]": "x" * 5000}
        )
        assert status == 400 and answer["error"]["param"] == "metadata", answer
        # Images do not count against it.
        image = base64.b64encode(png(64, 64)).decode()
        status, task = await gw.post(
            "/v1/video/generations", key, json={**GOOD, "metadata": {"notes": "x" * 3000}, "image": image}
        )
        assert status == 200, task


async def test_the_default_metadata_limit_is_64_kib(tmp_path):
    async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        status, answer = await gw.post(
            "/v1/video/generations", key, json={**GOOD, "metadata": {"notes": "x" * (64 * 1024)}}
        )
        assert status == 400 and answer["error"]["param"] == "metadata", answer
        status, task = await gw.post(
            "/v1/video/generations", key, json={**GOOD, "metadata": {"notes": "x" * (60 * 1024)}}
        )
        assert status == 200, task


class _Reads:
    """Wraps the store's database: every row any query returns, for inspection."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def start(self) -> None:
        real_all, real_one = self.db.fetchall, self.db.fetchone

        async def fetchall(sql: str, *args: Any) -> list[dict[str, Any]]:
            rows = await real_all(sql, *args)
            self.rows += [(sql, r) for r in rows]
            return rows

        async def fetchone(sql: str, *args: Any) -> dict[str, Any] | None:
            row = await real_one(sql, *args)
            if row is not None:
                self.rows.append((sql, row))
            return row

        self.db.fetchall, self.db.fetchone = fetchall, fetchone

    def stop(self) -> None:
        del self.db.fetchall, self.db.fetchone

    def largest_value(self) -> int:
        return max((len(v) for _, r in self.rows for v in r.values() if isinstance(v, str)), default=0)


async def test_get_and_list_never_read_the_request_blob(tmp_path, store_url):
    vendor = Scripted()
    async with run_gateway(store_config(store_url), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        image = base64.b64encode(png(256, 256)).decode()
        metadata = {"notes": "n" * (60 * 1024)}
        status, task = await gw.post("/v1/videos", key, json={**GOOD, "metadata": metadata, "image": image})
        assert status == 200, task
        await gw.wait(task["id"], key)
        stored = await gw.gateway.store.task_request(task["id"])
        assert stored["metadata"] == metadata  # the blob is kept, for remix and recovery
        reads = _Reads(gw.gateway.store.db)
        reads.start()
        try:
            for path in (f"/v1/videos/{task['id']}", f"/v1/video/generations/{task['id']}", "/v1/videos"):
                status, _ = await gw.get(path, key)
                assert status == 200
        finally:
            reads.stop()
        assert reads.rows, "the wrapper saw the reads"
        assert not any("task_blobs" in sql for sql, _ in reads.rows)
        assert not any("request" in row or "job" in row for _, row in reads.rows)
        assert reads.largest_value() < 4096  # no blob decoded: the hot row is small


async def test_old_task_rows_move_to_task_blobs_and_duplicate_names_survive(store_url):
    """A database made by the first schema: its request/job columns move to task_blobs,
    and two tokens of one name are kept (new ones may not take the name)."""
    db = await connect(store_url)
    try:
        await db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
        for sql in MIGRATIONS[0]:
            await db.execute(sql)
        await db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (1, ?)", time.time())
        for i, created in enumerate((1.0, 2.0)):
            await db.execute(
                "INSERT INTO tokens (id, name, key_hash, key_hint, grp, used, created_at) VALUES (?, 'dup', ?, 'h',"
                " 'default', 0, ?)",
                f"tok_{i}",
                f"hash{i}",
                created,
            )
        await db.execute(
            "INSERT INTO tasks (id, token_id, model, vendor, channel, status, phase, request, job, created_at,"
            " updated_at) VALUES ('video_old', 'tok_0', 'm', 'v', 'c', 'queued', 'polling', ?, ?, 1, 1)",
            '{"model": "m", "prompt": "old"}',
            '{"payload": {"a": 1}}',
        )
    finally:
        await db.close()
    store = await Store.open(store_url)
    try:
        assert await store.task_request("video_old") == {"model": "m", "prompt": "old"}
        assert await store.task_job("video_old") == {"payload": {"a": 1}}
        assert (await store.get_task("video_old")).status == "queued"
        assert [t.id for t in await store.tokens_named("dup")] == ["tok_0", "tok_1"]
        assert await store.token("dup") is None  # ambiguous
        with pytest.raises(DuplicateTokenName):
            await store.create_token(name="dup", key_hash="h3", key_hint="x", group="default", quota=None)
        await store.create_token(name="fresh", key_hash="h4", key_hint="x", group="default", quota=None)
        with pytest.raises(DuplicateTokenName):
            await store.create_token(name="fresh", key_hash="h5", key_hint="x", group="default", quota=None)
    finally:
        await store.close()


# -- 15: tokens revoke by name --------------------------------------------------------------


CLI_CONFIG = """
    [store]
    url = "sqlite:///{db}"

    [[groups]]
    name = "default"

    [[channels]]
    name = "local-a"
    vendor = "local"
"""


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        env=os.environ,
    )


def test_token_names_are_unique_on_create(tmp_path):
    cfg = tmp_path / "vidgate.toml"
    cfg.write_text(textwrap.dedent(CLI_CONFIG.format(db=tmp_path / "x.db")))
    cli("tokens", "create", "--config", str(cfg), "--name", "alice")
    second = cli("tokens", "create", "--config", str(cfg), "--name", "alice", check=False)
    assert second.returncode == 1 and "already exists" in second.stderr and "alice" in second.stderr
    assert cli("tokens", "list", "--config", str(cfg)).stdout.count("alice") == 1


def test_revoke_refuses_an_ambiguous_name_and_accepts_ids(tmp_path):
    """Two tokens of one name (a database from before names were unique): revoke and
    set-quota by that name refuse, listing the ids; by id each one is reached."""
    db_path = tmp_path / "x.db"
    cfg = tmp_path / "vidgate.toml"
    cfg.write_text(textwrap.dedent(CLI_CONFIG.format(db=db_path)))
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
    for sql in MIGRATIONS[0]:
        con.execute(sql)
    con.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    for i in range(2):
        con.execute(
            "INSERT INTO tokens (id, name, key_hash, key_hint, grp, used, created_at)"
            " VALUES (?, 'bob', ?, 'h', 'default', 0, ?)",
            (f"tok_bob{i}", f"hash{i}", float(i)),
        )
    con.commit()
    con.close()
    for command in (("revoke", "bob"), ("set-quota", "bob", "5")):
        out = cli("tokens", command[0], "--config", str(cfg), *command[1:], check=False)
        assert out.returncode == 1, out
        assert "tok_bob0" in out.stderr and "tok_bob1" in out.stderr and "id" in out.stderr
    assert "revoked" not in cli("tokens", "list", "--config", str(cfg)).stdout
    assert "revoked tok_bob0" in cli("tokens", "revoke", "--config", str(cfg), "tok_bob0").stdout
    assert "revoked tok_bob1" in cli("tokens", "revoke", "--config", str(cfg), "tok_bob1").stdout
    assert "already revoked" in cli("tokens", "revoke", "--config", str(cfg), "tok_bob1").stdout
    assert "quota of tok_bob1" in cli("tokens", "set-quota", "--config", str(cfg), "tok_bob1", "5").stdout
    listing = cli("tokens", "list", "--config", str(cfg)).stdout
    assert listing.count("revoked") == 2


# -- 13: no credential in what a plugin logs -------------------------------------------------

SORA_KEY = "sk-sora-echoed-7d1f3a9b"
KLING_AK = "AK-kling-echoed-41c2"
KLING_SK = "SK-kling-echoed-93e8"
VEO_KEY = "AIza-veo-echoed-5c6d7e"
LOCAL_KEY = "local-secret-0f9e8d"


def assert_no_secret(logged: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in logged, f"{secret!r} was logged"


async def test_kling_echoed_credentials_are_not_logged(tmp_path):
    kling = FakeKling(access_key=KLING_AK, secret_key=KLING_SK, send_callbacks=False)
    async with serve_app(kling.app) as served:
        kling.base_url = served.url
        config = {
            "plugins": {"enabled": ["kling"]},
            "channels": [
                {
                    "name": "kling",
                    "vendor": "kling",
                    "base_url": served.url,
                    "credentials": {"access_key": KLING_AK, "secret_key": KLING_SK},
                    "options": {"poll_interval": 0.05},
                }
            ],
        }
        with captured_logs() as buf:
            async with run_gateway(config, tmp_path) as gw:
                key = await gw.token()
                kling.fail_creates(1201, message=f"bad parameter; your key {KLING_AK} / {KLING_SK} is fine")
                status, _ = await gw.post(
                    "/v1/video/generations", key, json={"model": "kling-v1-6", "prompt": "a fox", "seconds": 5}
                )
                assert status == 400
                kling.fail_next_task(f"Failure: account {KLING_AK} secret {KLING_SK}")
                status, task = await gw.post(
                    "/v1/video/generations", key, json={"model": "kling-v1-6", "prompt": "a fox", "seconds": 5}
                )
                assert status == 200, task
                done = await gw.wait(task["id"], key)
                assert done["status"] == "failed"
        logged = buf.getvalue()
        assert "kling_error" in logged and "kling_task_failed" in logged  # the lines were written
        assert "[redacted]" in logged
        assert_no_secret(logged, KLING_AK, KLING_SK)


async def test_sora_echoed_credential_is_not_logged(tmp_path):
    sora = FakeVideosAPI(api_keys={SORA_KEY})
    async with serve_app(sora.app) as served:
        config = {
            "plugins": {"enabled": ["sora"]},
            "channels": [
                {
                    "name": "sora",
                    "vendor": "sora",
                    "base_url": served.url + "/v1",
                    "credentials": {"api_key": SORA_KEY},
                    "options": {"poll_interval": 0.05},
                }
            ],
        }
        with captured_logs() as buf:
            async with run_gateway(config, tmp_path) as gw:
                key = await gw.token()
                sora.fail_next("invalid_key", f"Generation refused for key {SORA_KEY}")
                status, task = await gw.post(
                    "/v1/video/generations", key, json={"model": "sora-2", "prompt": "a fox", "seconds": "4"}
                )
                assert status == 200, task
                assert (await gw.wait(task["id"], key))["status"] == "failed"
        logged = buf.getvalue()
        assert "task_failed" in logged
        assert_no_secret(logged, SORA_KEY)


async def test_veo_echoed_credential_is_not_logged(tmp_path):
    fake = FakeVeo(api_key=VEO_KEY)
    async with fake.serve():
        fake.outcome = "error"
        fake.error_message = f"Internal error for API key {VEO_KEY}"
        config = {
            "plugins": {"enabled": ["veo"]},
            "channels": [
                {
                    "name": "veo",
                    "vendor": "veo",
                    "base_url": fake.url,
                    "credentials": {"api_key": VEO_KEY},
                    "options": {"poll_interval": 0.05, "surface": "gemini"},
                }
            ],
        }
        with captured_logs() as buf:
            async with run_gateway(config, tmp_path) as gw:
                key = await gw.token()
                status, task = await gw.post("/v1/video/generations", key, json={"model": "veo-3", "prompt": "a fox"})
                assert status == 200, task
                assert (await gw.wait(task["id"], key))["status"] == "failed"
        logged = buf.getvalue()
        assert "task_failed" in logged
        assert_no_secret(logged, VEO_KEY)


async def test_local_channel_credential_is_not_logged(tmp_path):
    """The local plugin has no vendor to echo anything: its credential-bearing channel's
    value must not appear even though the client's metadata quotes it (what a plugin
    passes on to its logs from a request is scrubbed as well)."""
    config = {
        "plugins": {"enabled": ["local"]},
        "channels": [{"name": "local", "vendor": "local", "credentials": {"api_key": LOCAL_KEY}}],
    }
    with captured_logs() as buf:
        async with run_gateway(config, tmp_path) as gw:
            key = await gw.token()
            status, task = await gw.post(
                "/v1/video/generations", key, json={"model": "local-v1", "prompt": "a fox", "seconds": 1}
            )
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
            # The plugin's own log lines (ctx.log) are written with the channel bound.
            assert "local render submitted" in buf.getvalue()
    assert_no_secret(buf.getvalue(), LOCAL_KEY)


class Chatty(Scripted):
    """A plugin that logs what its vendor said, quoting the credential, through ctx.log,
    a logger of its own, and a task it starts (contextvars carry the scrubbing there)."""

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        secret = ctx.channel.credentials["api_key"]
        ctx.log.warning("vendor_said", message=f"key {secret} accepted", nested={"echo": [secret, 1]})
        own = structlog.get_logger("chatty")
        own.warning("own_logger", detail=f"Bearer {secret}")

        async def later() -> None:
            structlog.get_logger("chatty").warning("from_a_task", detail=secret)

        await asyncio.create_task(later())
        try:
            raise RuntimeError(f"vendor echoed {secret}")
        except RuntimeError:
            own.exception("with_traceback")
        return await super().submit(job, ctx)


async def test_every_plugin_log_line_is_scrubbed(tmp_path):
    secret = "chatty-secret-0123456789"
    config = scripted_config(channels=[{"name": "main", "vendor": "scripted", "credentials": {"api_key": secret}}])
    with captured_logs() as buf:
        async with run_gateway(config, tmp_path, extra_plugins={"scripted": Chatty()}) as gw:
            key = await gw.token()
            status, task = await gw.post("/v1/video/generations", key, json=GOOD)
            assert status == 200, task
            # Outside a vendor call nothing is scrubbed (and nothing costs anything).
            structlog.get_logger("outside").warning("outside_call", detail="chatty-secret-0123456789")
    logged = buf.getvalue()
    for event in ("vendor_said", "own_logger", "from_a_task", "with_traceback"):
        assert event in logged
    lines = [line for line in logged.splitlines() if "outside_call" not in line]
    assert secret not in "\n".join(lines)
    assert "_vidgate_scrub" not in logged
    assert any("outside_call" in line and secret in line for line in logged.splitlines())
