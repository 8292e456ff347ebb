"""MiniMax V1 as a vidgate plugin: an example of the plugin kit (``docs/plugins.md``).

The entry point ``minimax-v1-example = "vidgate_minimax_v1:plugin"`` (group ``vidgate``)
exposes :data:`plugin`; ``vidgate_minimax_v1.fake`` holds a fake MiniMax V1 server for tests.
"""

from .plugin import MinimaxV1

plugin = MinimaxV1()

__all__ = ["MinimaxV1", "plugin"]
