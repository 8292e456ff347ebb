"""structlog set-up: JSON lines (or readable lines on a terminal), context from
contextvars (request id, task id), and secrets redacted by key name."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

_SECRET_WORDS = ("authorization", "api_key", "apikey", "secret", "password", "token_key", "credentials", "jwt")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            event[key] = "[redacted]"
    return event


def configure(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class RateLimitFilter(logging.Filter):
    """Let at most one record per ``interval`` seconds through for each message template;
    the next one that passes says how many were suppressed. For loggers a client can make
    fire (accept errors when descriptors run out, malformed requests): one line per
    interval instead of hundreds of megabytes."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        if len(self._last) > 1000:  # templates, not values: only a misbehaving logger gets here
            self._last = {key: now}
            self._suppressed = {}
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar messages suppressed in the last {self.interval:g}s)"
        return True


RATE_LIMITED_LOGGERS = ("asyncio", "uvicorn.error")


def install_log_rate_limits(interval: float = 10.0) -> None:
    """Rate-limit the standard-library loggers of asyncio and uvicorn (see RateLimitFilter)."""
    for name in RATE_LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter(interval))
