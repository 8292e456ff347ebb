"""Plugin discovery and loading: failures are reported by name and never fatal."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from scripted_vendor import Scripted

from vidgate import Model, Vendor, hookimpl
from vidgate.errors import PluginLoadError
from vidgate.plugins import Plugins


class Other(Scripted):
    """A second plugin that wrongly claims the same vendor name."""


def test_two_plugins_claiming_one_vendor_name_both(tmp_path):
    with pytest.raises(PluginLoadError) as info:
        Plugins.load(extra={"first-dist": Scripted(), "second-dist": Other()}, entry_points=False)
    assert "first-dist" in str(info.value) and "second-dist" in str(info.value) and "'scripted'" in str(info.value)


class AsyncHooks:
    @hookimpl
    def vidgate_register_vendors(self, register):
        register(Vendor(name="asyncy", models=(Model("asyncy-1"),)))

    @hookimpl
    async def vidgate_poll(self, vendor, handle, ctx):  # wrong: must return an awaitable
        return None


def test_async_def_hookimpls_are_refused():
    plugins = Plugins.load(extra={"asyncy": AsyncHooks()}, entry_points=False)
    info = next(i for i in plugins.infos if i.name == "asyncy")
    assert info.status == "failed" and "vidgate_poll" in info.error
    assert "asyncy" not in plugins.vendors


def test_enabled_list_limits_loading():
    plugins = Plugins.load(enabled=["local"])
    statuses = {i.name: i.status for i in plugins.infos}
    assert statuses["local"] == "active"
    assert all(s == "disabled" for n, s in statuses.items() if n != "local")


def install_broken_plugin(root):
    """A distribution whose entry point fails to import, as a test 'installs' it."""
    dist = root / "vidgate_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vidgate-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vidgate]\nbroken = vidgate_broken:plugin\n")
    (root / "vidgate_broken.py").write_text(
        textwrap.dedent("""
        raise ImportError("this plugin is broken on purpose")
    """)
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def listed_plugins(cwd, env=None):
    """`vidgate plugins --json` run in `cwd`, as rows by plugin name."""
    out = subprocess.run(
        [sys.executable, "-m", "vidgate.cli", "plugins", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {row["name"]: row for row in json.loads(out.stdout)}


def test_cli_lists_plugins_and_a_broken_one(tmp_path):
    env = install_broken_plugin(tmp_path / "site")
    rows = listed_plugins(tmp_path, env)
    local = rows["local"]
    assert local["distribution"] == "vidgate-local" and local["version"] == "0.1.0"
    assert local["vendors"] == ["local"] and "local-v1" in local["models"] and local["enabled"]
    assert rows["broken"]["status"] == "failed"
    assert "broken on purpose" in rows["broken"]["error"]
    assert rows["broken"]["distribution"] == "vidgate-broken"


def test_cli_lists_every_bundled_plugin_as_active(tmp_path):
    """Each distribution under plugins/ (all installed by the README's test command) is
    listed by `vidgate plugins`, active, with its vendor and at least one model."""
    root = Path(__file__).resolve().parent.parent
    bundled = {path.parent.name for path in (root / "plugins").glob("*/pyproject.toml")}
    rows = listed_plugins(tmp_path)
    assert {"runway", "luma", "xai", "fal", "replicate"} <= bundled
    for name in sorted(bundled):
        row = rows[name]
        assert row["status"] == "active" and row["enabled"], row
        assert row["distribution"] == f"vidgate-{name}" and row["vendors"] == [name] and row["models"], row
