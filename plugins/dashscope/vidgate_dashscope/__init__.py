"""vidgate vendor plugin for Alibaba DashScope / Model Studio video synthesis.

The entry point ``dashscope = "vidgate_dashscope:plugin"`` (group ``vidgate``) exposes
:data:`plugin`. ``vidgate_dashscope.fake`` holds a faithful fake DashScope server.
"""

from .client import DEFAULT_BASE_URL
from .mapping import MODELS
from .plugin import DashScope

plugin = DashScope()

__all__ = ["DEFAULT_BASE_URL", "MODELS", "DashScope", "plugin"]
