"""vidgate vendor plugin for MiniMax (Hailuo) video generation.

The entry point ``minimax = "vidgate_minimax:plugin"`` (group ``vidgate``) exposes :data:`plugin`;
``vidgate_minimax.fake`` holds a fake MiniMax server for tests.
"""

from .plugin import MiniMax

plugin = MiniMax()

__all__ = ["MiniMax", "plugin"]
