"""vidgate vendor plugin for Luma's Dream Machine API.

The entry point ``luma = "vidgate_luma:plugin"`` (group ``vidgate``) exposes :data:`plugin`.
``vidgate_luma.fake`` holds a faithful fake Luma server for integration tests.
"""

from .mapping import MODELS
from .plugin import DEFAULT_BASE_URL, Luma

plugin = Luma()

__all__ = ["DEFAULT_BASE_URL", "MODELS", "Luma", "plugin"]
