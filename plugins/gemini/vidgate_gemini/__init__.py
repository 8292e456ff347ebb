"""vidgate vendor plugin for Google Gemini Omni on the Interactions API.

The entry point ``gemini = "vidgate_gemini:plugin"`` exposes :data:`plugin`. A faithful
fake of the Interactions API for tests lives in :mod:`vidgate_gemini.fake`.
"""

from .mapping import MODELS
from .plugin import GeminiPlugin

plugin = GeminiPlugin()

__all__ = ["MODELS", "GeminiPlugin", "plugin"]
