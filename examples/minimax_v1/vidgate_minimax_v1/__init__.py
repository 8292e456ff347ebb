"""vidgate vendor plugin for MinimaxV1.

The entry point ``minimax_v1 = "vidgate_minimax_v1:plugin"`` (group ``vidgate``) exposes :data:`plugin`;
``vidgate_minimax_v1.fake`` holds a fake MinimaxV1 server for tests.
"""

from .plugin import MinimaxV1

plugin = MinimaxV1()

__all__ = ["MinimaxV1", "plugin"]
