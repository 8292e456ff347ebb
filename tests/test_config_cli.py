"""Operator surfaces: config validation with precise errors, and the tokens/usage CLI."""

import os
import subprocess
import sys
import textwrap

import pytest

from vidgate.config import load_config
from vidgate.errors import ConfigError


def run(*args, env=None, cwd=None, check=True):
    return subprocess.run(
        [sys.executable, "-m", "vidgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
        check=check,
    )


def write(tmp_path, text):
    path = tmp_path / "vidgate.toml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    [store]
    url = "sqlite:///{db}"

    [[groups]]
    name = "default"

    [[groups]]
    name = "vip"
    ratio = 0.5

    [[channels]]
    name = "local-a"
    vendor = "local"
    groups = ["default", "vip"]
    priority = 10
    weight = 2
    max_concurrent = 4

    [channels.credentials]
    api_key = "${{VIDGATE_TEST_SECRET}}"

    [models.local-v1]
    price_per_second = 0.05
"""


def test_env_interpolation_and_valid_config(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGATE_TEST_SECRET", "s3cret")
    config = load_config(write(tmp_path, GOOD.format(db=tmp_path / "x.db")))
    assert config.channels[0].credentials["api_key"] == "s3cret"
    assert "s3cret" not in repr(config.channels[0])  # credentials never in reprs or logs
    assert config.group("vip").ratio == 0.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[server]\nport = 'eighty'\n", "server.port"),
        # The strict type hooks apply to every field (they were once registered too late).
        ("[server]\nport = true\n", "server.port: expected a number"),
        ("[server]\nport = 80.5\n", "server.port: expected a whole number"),
        ("[server]\nhost = 5\n", "server.host: expected a string"),
        ("[server]\nprot = 8000\n", "prot"),
        ("[[channels]]\nname = 'a'\nvendor = 'local'\nweight = -1\n", "channels[0].weight"),
        (
            "[[channels]]\nname = 'a'\nvendor = 'local'\n[[channels]]\nname = 'a'\nvendor = 'local'\n",
            "channels[1].name",
        ),
        ("[[channels]]\nname = 'a'\nvendor = 'local'\ngroups = ['nope']\n", "channels[0].groups"),
        (
            "[[channels]]\nname = 'a'\nvendor = 'local'\n[channels.credentials]\nk = '${VIDGATE_UNSET_VAR_X}'\n",
            "VIDGATE_UNSET_VAR_X",
        ),
        ("[models.m]\nprice_per_second = 1\nprice_per_request = 2\n", 'models."m"'),
        ("not toml at all = = =\n", "not valid TOML"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and expected in message, message


def test_check_config_command(tmp_path):
    env = {**os.environ, "VIDGATE_TEST_SECRET": "x"}
    good = write(tmp_path, GOOD.format(db=tmp_path / "x.db"))
    out = run("check-config", str(good), env=env)
    assert "ok" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[[channels]]\nname = 'k'\nvendor = 'nosuchvendor'\n")
    out = run("check-config", str(bad), env=env, check=False)
    assert out.returncode == 1 and "channels[0].vendor" in out.stderr and "nosuchvendor" in out.stderr


@pytest.mark.parametrize(
    "text, key",
    [
        ("[server]\nmetrics = 'false'\n", "server.metrics"),
        ("[server]\nmetrics = 1\n", "server.metrics"),
        ("[worker]\nenabled = 0\n", "worker.enabled"),
        ("[worker]\nenabled = '${VIDGATE_TEST_FLAG}'\n", "worker.enabled"),
    ],
)
def test_a_boolean_key_takes_only_true_or_false(tmp_path, text, key):
    """A string or a number in a boolean key is an error naming the key, never a truth
    value by Python's rules (where the string 'false' is true)."""
    env = {**os.environ, "VIDGATE_TEST_FLAG": "false"}
    path = write(tmp_path, text)
    out = run("check-config", str(path), env=env, check=False)
    assert out.returncode == 2, out.stdout  # a config error
    assert f"{key}: expected true or false" in out.stderr, out.stderr
    config = load_config(write(tmp_path, "[server]\nmetrics = true\n[worker]\nenabled = false\n"))
    assert config.server.metrics is True and config.worker.enabled is False


def test_tokens_and_usage_commands(tmp_path):
    env = {**os.environ, "VIDGATE_TEST_SECRET": "x"}
    cfg = str(write(tmp_path, GOOD.format(db=tmp_path / "x.db")))
    out = run("tokens", "create", "--config", cfg, "--name", "alice", "--group", "vip", "--quota", "12.5", env=env)
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("vg-") and len(key) > 30
    listing = run("tokens", "list", "--config", cfg, env=env).stdout
    assert "alice" in listing and "group=vip" in listing and "quota=12.5000" in listing
    assert key not in listing  # keys are shown once, stored hashed
    db = (tmp_path / "x.db").read_bytes()
    assert key.encode() not in db
    run("tokens", "set-quota", "--config", cfg, "alice", "unlimited", env=env)
    assert "quota=unlimited" in run("tokens", "list", "--config", cfg, env=env).stdout
    run("tokens", "revoke", "--config", cfg, "alice", env=env)
    assert "revoked" in run("tokens", "list", "--config", cfg, env=env).stdout
    bad = run("tokens", "create", "--config", cfg, "--name", "bob", "--group", "nogroup", env=env, check=False)
    assert bad.returncode == 2 and "nogroup" in bad.stderr
    usage = run("usage", "--config", cfg, env=env).stdout
    assert usage.splitlines()[0].split() == ["token", "model", "tasks", "estimated", "settled", "refunded", "net"]


def test_task_command_shows_attempts(tmp_path):
    import asyncio

    from scripted_vendor import Scripted, scripted_config

    from vidgate.testing import run_gateway

    async def make_task():
        async with run_gateway(scripted_config(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
            key = await gw.token("operator-view")
            _, task = await gw.post("/v1/video/generations", key, json={"model": "scripted-1", "prompt": "p"})
            await gw.wait(task["id"], key)
            return task["id"]

    task_id = asyncio.run(make_task())
    config = tmp_path / "view.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "data" / "vidgate.db"}"\n')
    out = run("task", "--config", str(config), task_id).stdout
    assert "operator-view" in out and "scripted / main" in out and "completed" in out
    assert "main             submitted" in out and "s-1" in out  # the vendor id, for operators only


def test_check_config_asks_the_plugin_about_each_channel(tmp_path):
    path = tmp_path / "veo.toml"
    path.write_text(
        textwrap.dedent("""
        [[channels]]
        name = "gemini"
        vendor = "veo"
        [channels.options]
        surface = "gemini"
        [[channels]]
        name = "vertex"
        vendor = "veo"
        [[channels]]
        name = "kling"
        vendor = "kling"
        [channels.credentials]
        access_key = "ak"
    """)
    )
    out = run("check-config", str(path), check=False)
    assert out.returncode == 1
    assert "channels[0].credentials.api_key is required" in out.stderr
    assert "channels[1].credentials.service_account" in out.stderr
    assert "channels[2].credentials.secret_key: required by vendor 'kling'" in out.stderr


async def test_gateway_refuses_to_start_with_an_unusable_channel(tmp_path):
    from vidgate.testing import run_gateway

    config = {"channels": [{"name": "vertex", "vendor": "veo"}]}
    with pytest.raises(ConfigError) as info:
        async with run_gateway(config, tmp_path):
            pass
    assert "channels[0].credentials.service_account" in str(info.value)
