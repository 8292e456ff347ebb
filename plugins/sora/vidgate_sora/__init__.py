"""vidgate-sora: the OpenAI Videos API (Sora 2) as a vidgate vendor.

Speaks ``POST /videos``, ``GET /videos/{id}``, ``GET /videos/{id}/content`` and
``POST /videos/{id}/remix`` to OpenAI or any OpenAI-compatible upstream (a reseller,
another gateway, another vidgate). :mod:`vidgate_sora.fake` is a faithful fake of that
API for tests.
"""

from __future__ import annotations

from .plugin import Sora, plugin

__all__ = ["Sora", "plugin"]
