"""vidgate vendor plugin for ByteDance Seedance (BytePlus ModelArk and Volcengine Ark).

The entry point ``seedance = "vidgate_seedance:plugin"`` (group ``vidgate``) exposes :data:`plugin`.
``vidgate_seedance.fake`` holds a faithful fake Ark server for integration tests.
"""

from .mapping import MODELS, PLATFORMS
from .plugin import Seedance

plugin = Seedance()

__all__ = ["MODELS", "PLATFORMS", "Seedance", "plugin"]
