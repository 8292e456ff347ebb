"""vidgate-xai: xAI Grok Imagine video as a vidgate vendor.

Speaks xAI's REST video API: ``POST /v1/videos/generations`` (text, image, reference
images), ``POST /v1/videos/edits`` and ``/v1/videos/extensions`` (derived tasks) and
``GET /v1/videos/{request_id}``. :mod:`vidgate_xai.fake` is a faithful fake of it for tests.
"""

from __future__ import annotations

from .plugin import XAI, plugin

__all__ = ["XAI", "plugin"]
