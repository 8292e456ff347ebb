"""Models a channel defines in its own config (``vidgate_channel_models``) are routable
on that channel only, with the rules the plugin made of them."""

from __future__ import annotations

import argparse
from typing import Any

from scripted_vendor import Scripted, scripted_config

from vidgate import Channel, Model
from vidgate.testing import run_gateway


class Catalogue(Scripted):
    """A queue-like vendor: ``options.extra_models = {name = seconds}`` adds models."""

    def channel_models(self, channel: Channel) -> list[Model]:
        extra: dict[str, Any] = dict(channel.options.get("extra_models") or {})
        return [Model(name, vendor_model=f"up/{name}", seconds=tuple(secs)) for name, secs in extra.items()]


def two_channels() -> dict[str, Any]:
    return scripted_config(
        [
            {"name": "a", "vendor": "scripted", "options": {"extra_models": {"config-only": [6]}}},
            {"name": "b", "vendor": "scripted", "priority": 5},
        ]
    )


async def test_a_config_only_model_completes_on_its_channel_only(tmp_path):
    vendor = Catalogue()
    async with run_gateway(two_channels(), tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        _, listed = await gw.get("/v1/models", key)
        assert "config-only" in [m["id"] for m in listed["data"]]
        status, task = await gw.post(
            "/v1/video/generations", key, json={"model": "config-only", "prompt": "a fox", "seconds": 6}
        )
        assert status == 200, task
        done = await gw.wait(task["id"], key)
        assert done["status"] == "completed", done
        # Channel b has a higher priority but does not define the model: a served it.
        assert vendor.submitted == [("a", {"model": "up/config-only", "prompt": "a fox", "seconds": 6})]
        # The channel's rules are enforced by the core like a registered model's.
        status, err = await gw.post(
            "/v1/video/generations", key, json={"model": "config-only", "prompt": "a fox", "seconds": 8}
        )
        assert status == 400 and err["error"]["param"] == "seconds", err


async def test_without_the_hook_a_config_only_name_is_unknown(tmp_path):
    async with run_gateway(two_channels(), tmp_path, extra_plugins={"scripted": Scripted()}) as gw:
        key = await gw.token()
        status, err = await gw.post("/v1/video/generations", key, json={"model": "config-only", "prompt": "a fox"})
        assert status == 400 and err["error"]["code"] == "model_not_found", err


def test_check_config_knows_channel_models(tmp_path, monkeypatch, capsys):
    from vidgate import cli
    from vidgate.plugins import Plugins

    load = Plugins.load
    monkeypatch.setattr(Plugins, "load", lambda **_: load(extra={"scripted": Catalogue()}, entry_points=False))
    path = tmp_path / "vidgate.toml"
    path.write_text(
        '[[channels]]\nname = "a"\nvendor = "scripted"\nmodels = ["config-only", "nope-1"]\n'
        "[channels.options.extra_models]\n'config-only' = [6]\n",
        encoding="utf-8",
    )
    # _check_config itself: cli.main would point the process's logging at capsys.
    assert cli._check_config(argparse.Namespace(path=str(path))) == 1
    err = capsys.readouterr().err
    # The channel's own model is known; a name nobody defines is still reported.
    assert "'nope-1' is not a model" in err and "config-only" not in err, err


class TwoApis(Scripted):
    """A vendor whose channels each reach one API (``options.api``): "one" serves
    scripted-1, "two" serves scripted-2."""

    def default_models(self, channel: Channel) -> list[str]:
        return ["scripted-1"] if channel.options.get("api") == "one" else ["scripted-2"]


async def test_a_channel_without_models_serves_what_its_plugin_says_it_can(tmp_path):
    """``vidgate_default_models`` narrows what a channel without ``models`` serves; an
    operator's ``models`` list still wins."""
    config = scripted_config(
        [
            {"name": "one", "vendor": "scripted", "options": {"api": "one"}, "priority": 5},
            {"name": "two", "vendor": "scripted", "options": {"api": "two"}},
            {
                "name": "listed",
                "vendor": "scripted",
                "options": {"api": "one"},
                "models": ["scripted-2"],
                "priority": 3,
            },
        ]
    )
    vendor = TwoApis()
    async with run_gateway(config, tmp_path, extra_plugins={"scripted": vendor}) as gw:
        key = await gw.token()
        for model in ("scripted-2", "scripted-1", "scripted-2"):
            status, task = await gw.post("/v1/video/generations", key, json={"model": model, "prompt": model})
            assert status == 200, task
            assert (await gw.wait(task["id"], key))["status"] == "completed"
    # Channel one comes first by priority but serves scripted-1 only; "listed" reaches the
    # same API as one but its operator listed scripted-2, and it outranks two.
    by_channel = [(channel, body["model"]) for channel, body in vendor.submitted]
    assert by_channel == [("listed", "s2"), ("one", "s1"), ("listed", "s2")]
