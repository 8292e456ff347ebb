"""structlog set-up: JSON lines (or readable lines on a terminal), context from
contextvars (request id, task id), secrets redacted by key name, and a channel's
credential values scrubbed from every value logged during a vendor call."""

from __future__ import annotations

import contextlib
import functools
import json as jsonlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict

#: The credential values to scrub, set by the core around every plugin call (so loggers a
#: plugin makes itself are covered too); None outside vendor calls, where scrubbing costs nothing.
_SCRUB: ContextVar[tuple[str, ...] | None] = ContextVar("vidgate_scrub", default=None)

#: Bound on ``CallContext.log`` (see :class:`ScrubSecrets`); removed before rendering.
SCRUB_KEY = "_vidgate_scrub"


class ScrubSecrets:
    """Credential values to scrub from every event of the logger it is bound to. Its
    repr never shows them, should it ever reach a renderer that does not know it."""

    __slots__ = ("values",)

    def __init__(self, values: Iterable[str]) -> None:
        self.values = tuple(values)

    def __repr__(self) -> str:
        return "<scrubbed>"


@contextlib.contextmanager
def scrubbing(values: Iterable[str]) -> Iterator[None]:
    """Scrub ``values`` from every log event emitted in this context (tasks started
    inside it inherit it)."""
    token = _SCRUB.set(tuple(values))
    try:
        yield
    finally:
        _SCRUB.reset(token)


def _clean(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "[redacted]")
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {_clean(k, secrets): _clean(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v, secrets) for v in value]
    # Exceptions, URLs, attrs objects...: rendered with repr, so scrub that.
    text = repr(value)
    cleaned = _clean(text, secrets)
    return value if cleaned == text else cleaned


def _scrub_secrets(_: Any, __: str, event: EventDict) -> EventDict:
    bound = event.pop(SCRUB_KEY, None)
    secrets = _SCRUB.get()
    if isinstance(bound, ScrubSecrets):
        secrets = (*(secrets or ()), *bound.values)
    if not secrets:
        return event
    return {key: _clean(value, secrets) for key, value in event.items()}


_SECRET_WORDS = ("authorization", "api_key", "apikey", "secret", "password", "token_key", "credentials", "jwt")


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    # Log keys are a small fixed vocabulary: decided once per name, not on every line.
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _redact(_: Any, __: str, event: EventDict) -> EventDict:
    for key in list(event):
        if _secret_key(key):
            event[key] = "[redacted]"
    return event


def _dumps(event: Any, **kw: Any) -> str:
    """One JSON log line: orjson (every request logs one), else the standard library for
    what orjson refuses (integers beyond 64 bits), so that logging never raises."""
    try:
        return orjson.dumps(event, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return jsonlib.dumps(event, **kw)


def configure(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps) if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            _scrub_secrets,  # after format_exc_info: tracebacks quote exception messages
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
