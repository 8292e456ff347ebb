"""vidgate vendor plugin for Google Veo (Gemini API and Vertex AI).

The entry point ``veo = "vidgate_veo:plugin"`` exposes :data:`plugin`. A faithful fake of
both Google surfaces for tests lives in :mod:`vidgate_veo.fake`.
"""

from .models import MODELS
from .plugin import VeoPlugin

plugin = VeoPlugin()

__all__ = ["MODELS", "VeoPlugin", "plugin"]
