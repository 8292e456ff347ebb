"""Crash injection for tests: ``VIDGATE_FAILPOINTS=submit.after_vendor,...`` makes the
process SIGKILL itself when it reaches a named point, exactly like a power cut there;
``POINT:stop`` makes it SIGSTOP itself there instead (once), like a process that stalls
(a frozen VM, a swap storm), until the test sends it SIGCONT.

Points: ``submit.before_vendor`` (task row stored, vendor not called),
``submit.after_vendor`` (vendor accepted, its id not yet recorded),
``poll.after_vendor`` (a poll answered, nothing recorded), ``fetch.after_download``
(video stored in media, task not yet completed), ``webhook.before_delivery`` (a
webhook event leased and signed, not yet sent).
"""

from __future__ import annotations

import os
import signal

_POINTS = [p.strip() for p in os.environ.get("VIDGATE_FAILPOINTS", "").split(",") if p.strip()]
_ACTIVE = frozenset(p for p in _POINTS if not p.endswith(":stop"))
_STOPS = {p.removesuffix(":stop") for p in _POINTS if p.endswith(":stop")}


def hit(point: str) -> None:
    if point in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
    if point in _STOPS:
        _STOPS.discard(point)  # a stall happens once; the resumed process goes on normally
        os.kill(os.getpid(), signal.SIGSTOP)
