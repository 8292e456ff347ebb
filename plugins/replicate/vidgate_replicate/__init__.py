"""vidgate vendor plugin for Replicate's predictions API."""

from .plugin import Replicate

plugin = Replicate()

__all__ = ["Replicate", "plugin"]
