"""``vidgate new-plugin NAME``: write a plugin distribution that passes its tests as generated.

The templates beside this module are a complete small vendor (``plugin.py`` on
:mod:`vidgate.vendorhttp`, ``fake.py`` on :class:`vidgate.fakekit.FakeVendor`, and
``tests/test_contract.py`` running :class:`vidgate.contract.VendorContract`), so a new
plugin starts green and is adapted to the real API one TODO at a time.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

__all__ = ["FILES", "new_plugin"]

#: template name -> path in the generated distribution (``{pkg}`` = the package name).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "init.py.tmpl": "{pkg}/__init__.py",
    "plugin.py.tmpl": "{pkg}/plugin.py",
    "fake.py.tmpl": "{pkg}/fake.py",
    "test_contract.py.tmpl": "tests/test_contract.py",
}

_NAME = re.compile(r"[a-z][a-z0-9_]{1,30}")


def new_plugin(name: str, directory: Path) -> list[Path]:
    """Write the plugin ``name`` into ``directory`` (which must not exist or be empty).

    ``name`` is the vendor id (lower case letters, digits, ``_``); the package is
    ``vidgate_<name>``, the distribution ``vidgate-<name>`` (``_`` written ``-``). Returns the files written.
    Raises ``ValueError`` for a bad name or a non-empty directory.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"plugin name {name!r}: use 2-31 lower-case letters, digits or _, starting with a letter")
    if directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} exists and is not empty")
    words = {
        "name": name,
        "Name": name.replace("_", " ").title().replace(" ", ""),
        "Class": name.replace("_", " ").title().replace(" ", ""),
        "NAME": name.upper(),
        "dist": name.replace("_", "-"),  # distribution names use "-" (PEP 503 normalises "_" so)
    }
    here = Path(__file__).parent
    written = []
    for template, target in FILES.items():
        path = directory / target.format(pkg=f"vidgate_{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = string.Template((here / template).read_text()).substitute(words)
        path.write_text(text)
        written.append(path)
    return written
