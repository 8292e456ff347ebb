"""vidgate vendor plugin for the Runway API.

The entry point ``runway = "vidgate_runway:plugin"`` (group ``vidgate``) exposes :data:`plugin`.
``vidgate_runway.fake`` holds a faithful fake Runway server for integration tests.
"""

from .mapping import API_VERSION, MODELS
from .plugin import DEFAULT_BASE_URL, Runway

plugin = Runway()

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "MODELS", "Runway", "plugin"]
