"""vidgate vendor plugin for the Vidu (Shengshu) video API.

The entry point ``vidu = "vidgate_vidu:plugin"`` (group ``vidgate``) exposes :data:`plugin`.
``vidgate_vidu.fake`` holds a faithful fake Vidu server for tests.
"""

from .client import DEFAULT_BASE_URL
from .mapping import MODELS
from .plugin import Vidu

plugin = Vidu()

__all__ = ["DEFAULT_BASE_URL", "MODELS", "Vidu", "plugin"]
