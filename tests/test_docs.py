"""The plugin docs cover every hook with its exact signature; every hook has a docstring."""

import inspect
from pathlib import Path

import pluggy
import pytest

from vidgate import hookspecs

DOCS = Path(__file__).parent.parent / "docs" / "plugins.md"
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("vidgate_")]


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_signature(name):
    pm = pluggy.PluginManager("vidgate")
    pm.add_hookspecs(hookspecs)
    argnames = getattr(pm.hook, name).spec.argnames
    assert f"### `{name}({', '.join(argnames)})`" in DOCS.read_text()


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_docstring(name):
    assert len(inspect.getdoc(getattr(hookspecs, name)) or "") > 40


def test_readme_commands_are_marked_for_ci():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    first = readme.index("<!-- serve-command -->")
    second = readme.index("<!-- test-command -->")
    assert first < second < readme.index("## ")  # the two commands come first
    assert "vidgate serve" in readme[first:second]


def test_the_readme_test_command_installs_every_bundled_plugin():
    """A plugin added to plugins/ but left out of the README's test command would have its
    tests collected but not its package installed (or its SDK extra missing) in CI."""
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    command = readme[readme.index("<!-- test-command -->") : readme.index("<!-- /test-command -->")]
    for folder in sorted(p.parent for p in (root / "plugins").glob("*/pyproject.toml")):
        extra = "[test]" if "\ntest = " in (folder / "pyproject.toml").read_text() else ""
        wanted = f"plugins/{folder.name}{extra}"
        assert f"-e {wanted} " in command or f"-e '{wanted}' " in command, f"README test command lacks {wanted}"
