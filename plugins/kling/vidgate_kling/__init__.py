"""vidgate vendor plugin for Kling AI's video API.

The entry point ``kling = "vidgate_kling:plugin"`` (group ``vidgate``) exposes :data:`plugin`.
``vidgate_kling.fake`` holds a faithful fake Kling server for integration tests.
"""

from .plugin import DEFAULT_BASE_URL, MODELS, Kling

plugin = Kling()

__all__ = ["DEFAULT_BASE_URL", "MODELS", "Kling", "plugin"]
