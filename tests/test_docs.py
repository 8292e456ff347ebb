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
