"""The console's server side over HTTP: static pages with a strict CSP, model capabilities
in /v1/models, operator authentication and the operator overview. (The pages themselves
are driven in a browser by test_console_browser.py.)"""

import os
import subprocess
import sys

import pytest
from scripted_vendor import Scripted, scripted_config

from vidgate import TaskError
from vidgate.config import parse_config
from vidgate.errors import ConfigError
from vidgate.testing import run_gateway

OPERATOR_KEY = "op-" + "k" * 40


async def test_console_pages_are_static_with_a_strict_csp(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        for path, kind in [
            ("/console", "text/html"),
            ("/console/operator", "text/html"),
            ("/console/static/app.js", "text/javascript"),
            ("/console/static/api.js", "text/javascript"),
            ("/console/static/console.css", "text/css"),
        ]:
            async with gw.http.get(gw.url + path) as r:
                assert r.status == 200, path
                assert r.headers["Content-Type"].startswith(kind)
                csp = r.headers["Content-Security-Policy"]
                assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                body = await r.text()
            if kind == "text/html":
                # No inline script or style: every script is an external module of this origin.
                assert "<script>" not in body and "style=" not in body and "<style" not in body
                assert 'type="module" src="/console/static/' in body
        for bad in ("/console/static/nope.js", "/console/static/..%2Fapi%2Fconsole.py", "/console/static/__init__.py"):
            async with gw.http.get(gw.url + bad) as r:
                assert r.status == 404, bad


async def test_models_list_capabilities(tmp_path):
    config = scripted_config(channels=[{"name": "main", "vendor": "scripted"}])
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        status, body = await gw.get("/v1/models", key)
        assert status == 200
        models = {m["id"]: m for m in body["data"]}
        one = models["scripted-1"]
        assert one["capabilities"] == {
            "text_to_video": True,
            "image_to_video": True,
            "remix": True,
            "extend": False,
            "edit": False,
        }
        assert one["seconds"] == [4, 8] and one["default_seconds"] == 4
        assert models["scripted-2"]["capabilities"]["remix"] is False
        assert models["scripted-2"]["seconds"] == []


def test_operator_keys_must_be_long():
    with pytest.raises(ConfigError, match=r"server.operator_keys\[0\]: must be at least 24 characters"):
        parse_config({"server": {"operator_keys": ["short"]}})
    assert parse_config({"server": {"operator_keys": [OPERATOR_KEY]}}).server.operator_keys == (OPERATOR_KEY,)


async def test_operator_overview(tmp_path):
    vendor = Scripted()
    config = scripted_config(
        server={"operator_keys": [OPERATOR_KEY]}, models={"scripted-1": {"price_per_request": 1.5}}
    )
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        client = await gw.token("alice")
        assert (await gw.get("/v1/operator/overview"))[0] == 401
        status, body = await gw.get("/v1/operator/overview", client)
        assert status == 403 and body["error"]["code"] == "not_operator"
        assert (await gw.get("/v1/operator/overview", "op-" + "x" * 40))[0] == 401

        _, done = await gw.post("/v1/video/generations", client, json={"model": "scripted-1", "prompt": "fine"})
        await gw.wait(done["id"], client)
        vendor.fail_with = TaskError("content_policy", "the vendor refused <b>this</b>")
        _, bad = await gw.post("/v1/video/generations", client, json={"model": "scripted-1", "prompt": "no"})
        assert (await gw.wait(bad["id"], client))["status"] == "failed"

        status, body = await gw.get("/v1/operator/overview", OPERATOR_KEY)
        assert status == 200, body
        assert body["operator"] == "[server] operator_keys"
        [channel] = body["channels"]
        assert channel["name"] == "main" and channel["state"] == "closed" and channel["in_flight"] == 0
        assert body["tasks_by_status"] == {"completed": 1, "failed": 1}
        [failure] = body["recent_failures"]
        assert failure["id"] == bad["id"] and failure["token"] == "alice"
        assert failure["error_code"] == "content_policy"
        assert [a["outcome"] for a in failure["attempts"]][:1] == ["submitted"]
        [usage] = body["usage"]
        assert (usage["token"], usage["model"], usage["tasks"]) == ("alice", "scripted-1", 2)
        assert usage["charged"] == 3.0 and usage["refunded"] == 1.5 and usage["net"] == 1.5  # the failure refunded


async def test_operator_token(tmp_path):
    async with run_gateway(None, tmp_path) as gw:
        await gw.token("plain")
        _, key = await gw.gateway.create_token("ops")
        ops = await gw.gateway.store.token("ops")
        assert ops.operator is False
        assert (await gw.get("/v1/operator/overview", key))[0] == 403
        assert await gw.gateway.store.set_token_operator(ops.id, True)
        status, body = await gw.get("/v1/operator/overview", key)
        assert status == 200 and body["operator"] == "ops"
        assert [c["name"] for c in body["channels"]] == ["local"]


def test_cli_creates_operator_tokens(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VIDGATE_CONFIG"}

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "vidgate.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert ", operator)" in cli("tokens", "create", "--name", "ops", "--operator")
    assert ", operator)" not in cli("tokens", "create", "--name", "client")
    listing = {line.split()[1]: line for line in cli("tokens", "list").splitlines()}
    assert listing["ops"].endswith("operator") and not listing["client"].endswith("operator")
