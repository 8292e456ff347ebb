"""vidgate-sora: the OpenAI Videos API (Sora 2 schema) as a vidgate vendor.

Speaks ``POST /videos``, ``GET /videos/{id}``, ``GET /videos/{id}/content``,
``POST /videos/{id}/remix``, ``POST /videos/extensions`` and ``POST /videos/edits`` to
OpenAI-compatible upstreams (OpenAI's own API shut down on 2026-09-24): Azure OpenAI v1,
vLLM-Omni, SGLang, relays, another vidgate. :mod:`vidgate_sora.fake` is a faithful fake
of that API for tests.
"""

from __future__ import annotations

from .plugin import Sora, plugin

__all__ = ["Sora", "plugin"]
