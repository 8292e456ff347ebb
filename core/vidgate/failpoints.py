"""Crash injection for tests: ``VIDGATE_FAILPOINTS=submit.after_vendor,...`` makes the
process SIGKILL itself when it reaches a named point, exactly like a power cut there.

Points: ``submit.before_vendor`` (task row stored, vendor not called),
``submit.after_vendor`` (vendor accepted, its id not yet recorded),
``poll.after_vendor`` (a poll answered, nothing recorded), ``fetch.after_download``
(video stored in media, task not yet completed), ``webhook.before_delivery`` (a
webhook event leased and signed, not yet sent).
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(p.strip() for p in os.environ.get("VIDGATE_FAILPOINTS", "").split(",") if p.strip())


def hit(point: str) -> None:
    if point in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
