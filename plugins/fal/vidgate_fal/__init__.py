"""vidgate vendor plugin for the fal.ai queue."""

from .plugin import Fal

plugin = Fal()

__all__ = ["Fal", "plugin"]
