"""A vendor plugin is a separate distribution: installing it into an environment that has
only the core makes the gateway find it; uninstalling it removes it; the core still works.

Builds a fresh virtual environment (pip's cache keeps this to tens of seconds)."""

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


def test_install_and_uninstall_a_plugin_into_a_core_only_environment(tmp_path):
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "VIDGATE_CONFIG")}

    def run(*args: str, cwd: Path = ROOT) -> str:
        done = subprocess.run([python, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def listed() -> dict:
        return {p["name"]: p for p in json.loads(run("-m", "vidgate.cli", "plugins", "--json", cwd=tmp_path))}

    run("-m", "pip", "install", "-q", str(ROOT) + "[testing]")
    assert listed() == {}  # only the core: no vendor plugin at all
    # A non-editable install ships the web console's static files (package data).
    shipped = run("-c", "import vidgate.api.console as c; print(' '.join(sorted(c._ASSETS)))", cwd=tmp_path).split()
    assert {"index.html", "operator.html", "app.js", "api.js", "operator.js", "console.css"} <= set(shipped)

    run("-m", "pip", "install", "-q", str(ROOT / "plugins" / "kling"))
    kling = listed()["kling"]
    assert kling["distribution"] == "vidgate-kling" and kling["status"] == "active"
    assert kling["vendors"] == ["kling"] and "kling-v1" in kling["models"]

    run("-m", "pip", "uninstall", "-q", "-y", "vidgate-kling")
    assert "kling" not in listed()

    # The core's own tests need no vendor plugin.
    core_tests = [
        "tests/test_flow_scripted.py",
        "tests/test_api_errors.py",
        "tests/test_dispatch.py",
        "tests/test_billing.py",
        "tests/test_plugins.py::test_two_plugins_claiming_one_vendor_name_both",
    ]
    out = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not postgres", *core_tests)
    assert " passed" in out and "failed" not in out
