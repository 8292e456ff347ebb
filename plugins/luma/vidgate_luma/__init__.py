"""vidgate vendor plugin for Luma: the Agents API (``ray-3.2``, the default surface) and
the legacy Dream Machine API (Ray 2 family), chosen per channel with ``options.surface``.

The entry point ``luma = "vidgate_luma:plugin"`` (group ``vidgate``) exposes :data:`plugin`.
``vidgate_luma.fake`` holds faithful fakes of both surfaces (:class:`~vidgate_luma.fake.FakeLuma`
for Dream Machine, :class:`~vidgate_luma.fake.FakeLumaAgents`) for integration tests.
"""

from .client import AGENTS_BASE_URL, DREAM_MACHINE_BASE_URL
from .mapping import AGENTS_MODELS, MODELS
from .plugin import DEFAULT_BASE_URL, Luma

plugin = Luma()

__all__ = ["AGENTS_BASE_URL", "AGENTS_MODELS", "DEFAULT_BASE_URL", "DREAM_MACHINE_BASE_URL", "MODELS", "Luma", "plugin"]
