"""Task-change notifications inside one process, behind a small interface.

The store calls :meth:`TaskNotifier.notify` after every committed change to a task; event
streams and ``Prefer: wait`` requests :meth:`~TaskNotifier.wait` on it and re-read the
task from the store when woken. Waiters also re-read on a timer, so a change made by
another replica is seen without any fan-out; a shared implementation (Redis pub/sub, say)
can replace :class:`LocalNotifier` by implementing the same two methods.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class TaskNotifier(Protocol):
    def notify(self, task_id: str) -> None:
        """A task changed (called on the event loop, after the change committed)."""

    async def wait(self, task_id: str, timeout: float) -> bool:
        """Wait until ``task_id`` changes or ``timeout`` passes; True if it changed."""


class LocalNotifier:
    """Wakes waiters in this process; holds nothing for tasks nobody waits on."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, task_id: str) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()

    async def wait(self, task_id: str, timeout: float) -> bool:
        event = asyncio.Event()
        waiters = self._waiters.setdefault(task_id, set())
        waiters.add(event)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
            return event.is_set()
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(task_id, None)
