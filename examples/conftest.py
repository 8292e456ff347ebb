"""Puts each example plugin on ``sys.path`` unless it is pip-installed, so the README's
test command collects ``examples/`` too (the examples are not bundled plugins: nothing
installs them, and the README's install line names only ``plugins/``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

for example in sorted(Path(__file__).parent.glob("*/pyproject.toml")):
    package = next(example.parent.glob("vidgate_*/__init__.py")).parent.name
    if importlib.util.find_spec(package) is None:
        sys.path.insert(0, str(example.parent))
