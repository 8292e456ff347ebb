"""What replicas share through Redis (``[coordination] redis_url``).

Without a Redis URL each process keeps its own breakers, rate windows and wake-ups (fine
for one process, or one API process beside one worker). With it, every process that names
the same URL and ``key_prefix`` shares:

* the circuit breaker of each channel and its single half-open probe, and the
  ``rate_per_minute`` window (:class:`RedisDispatchState`, the Dispatcher's backend);
* worker wake-ups: a vendor callback received by any replica wakes every worker at once;
* task-change fan-out (:class:`RedisNotifier`): an event stream or ``Prefer: wait`` on
  one replica wakes when another replica changes the task.

Redis holds nothing that must survive: tasks, leases and the ledger stay in the store.
If Redis is unreachable, admission calls fail (the submit answers 503, nothing is
charged) and notifications fall back to the waiters' re-read timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
import structlog

from .dispatch import Breaker
from .errors import ConfigError
from .events import LocalNotifier

log = structlog.get_logger("vidgate.coordination")
T = TypeVar("T")
# Breaker records of channels nobody touches for a day are dropped.
BREAKER_TTL_SECONDS = 86400


class RedisCoordination:
    """One Redis client and one pub/sub subscription per process."""

    def __init__(self, url: str, prefix: str = "vidgate") -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
        self.prefix = prefix
        # Messages carry their sender, so a process does not act twice on its own.
        self.origin = secrets.token_hex(8)
        self.on_wake: Callable[[], None] | None = None
        self.on_task_change: Callable[[str], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._pending: set[asyncio.Task[Any]] = set()

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def start(self) -> None:
        """Check the server answers, and subscribe (returns once subscribed)."""
        from redis.exceptions import RedisError

        try:
            await self.redis.ping()
        except (OSError, RedisError) as exc:
            raise ConfigError(f"coordination.redis_url: cannot reach Redis: {exc}") from None
        self._listener = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._pending:
            await asyncio.wait(self._pending, timeout=2)
        await self.redis.aclose()

    # -- publishing ---------------------------------------------------------------------

    def _publish(self, channel: str, payload: str) -> None:
        # Callers are synchronous hooks (after a commit): publish in the background.
        async def send() -> None:
            try:
                await self.redis.publish(self.key(channel), f"{self.origin} {payload}")
            except Exception as exc:  # waiters still re-read on their timer
                log.warning("redis_publish_failed", channel=channel, error=str(exc))

        job = asyncio.get_running_loop().create_task(send())
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    def wake_workers(self) -> None:
        """Wake the worker of every replica (a task became due now)."""
        self._publish("wake", "-")

    def task_changed(self, task_id: str) -> None:
        self._publish("task", task_id)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.key("wake"), self.key("task"))
                self._ready.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis_subscription_lost", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        data = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
        origin, _, payload = data.partition(" ")
        if origin == self.origin:
            return
        if channel == self.key("wake") and self.on_wake is not None:
            self.on_wake()
        elif channel == self.key("task") and self.on_task_change is not None:
            self.on_task_change(payload)


class RedisDispatchState:
    """Breaker records as JSON strings, updated with WATCH/MULTI (optimistic, retried);
    rate windows as sorted sets of send times. Times are wall-clock (replicas' clocks
    must agree to within a small fraction of ``cooldown_seconds``: run NTP)."""

    def __init__(self, coordination: RedisCoordination) -> None:
        self.c = coordination

    def now(self) -> float:
        return time.time()

    def _breaker_key(self, name: str) -> str:
        return self.c.key("breaker", name)

    @staticmethod
    def _decode(raw: bytes | str | None) -> Breaker:
        return Breaker(**json.loads(raw)) if raw else Breaker()

    async def update_breaker(self, name: str, change: Callable[[Breaker], T]) -> T:
        from redis.exceptions import WatchError

        key = self._breaker_key(name)
        async with self.c.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    record = self._decode(await pipe.get(key))
                    result = change(record)
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    pipe.set(key, json.dumps(attrs.asdict(record)), ex=BREAKER_TTL_SECONDS)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue  # another replica updated it first: decide again on its record

    async def breakers(self, names: Iterable[str]) -> dict[str, Breaker]:
        names = list(names)
        if not names:
            return {}
        raws = await self.c.redis.mget([self._breaker_key(n) for n in names])
        return {n: self._decode(raw) for n, raw in zip(names, raws, strict=True)}

    async def sent_in_window(self, name: str, window: float, now: float) -> int:
        key = self.c.key("rate", name)
        async with self.c.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - window)
            pipe.zcard(key)
            _, count = await pipe.execute()
        return int(count)

    async def note_sent(self, name: str, now: float, window: float) -> None:
        key = self.c.key("rate", name)
        async with self.c.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {f"{now:.6f}:{secrets.token_hex(4)}": now})
            pipe.expire(key, int(window) + 1)
            await pipe.execute()


class RedisNotifier(LocalNotifier):
    """A :class:`~vidgate.events.TaskNotifier` whose changes reach every replica:
    waiters in this process wake at once, others through Redis pub/sub."""

    def __init__(self, coordination: RedisCoordination) -> None:
        super().__init__()
        self.c = coordination

    def notify(self, task_id: str) -> None:
        super().notify(task_id)
        self.c.task_changed(task_id)

    def notify_local(self, task_id: str) -> None:
        """A change another replica announced."""
        super().notify(task_id)
