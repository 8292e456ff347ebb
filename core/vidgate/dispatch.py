"""Choosing channels: priority, weights, circuit breakers, concurrency and rate limits.

For a submit, the channels that serve the model for the token's group are ordered by
priority (highest first) and, within a priority, by a weighted random draw (a channel of
weight 3 comes first three times as often as one of weight 1). A channel is skipped while
its breaker is open (after an account error, or three consecutive failures, for its
``cooldown_seconds``), while it is at ``max_concurrent`` unfinished tasks, or while its
``rate_per_minute`` budget is spent. When a cool-down ends, one probe request is let
through (half-open); its success closes the breaker, its failure opens it again.

What counts against a breaker: only what the vendor itself answered, as classified by
the plugin -- :class:`~vidgate.errors.VendorUnavailable` (a failure) and
:class:`~vidgate.errors.ChannelUnusable` (an account error, which opens the breaker at
once). Nothing else does, so no client can take a channel out of rotation with what it
sends: a :class:`~vidgate.errors.VendorRejected` or
:class:`~vidgate.errors.TaskFailed` is the request's fault (and proves the channel
works), a rate limit is the vendor asking us to slow down, and any other exception
escaping a plugin (``UnicodeError``, ``KeyError``, a raw ``aiohttp`` error) is a plugin
bug that may well be triggered by the input: it is logged and answered to that one
client, and never counted.

The half-open probe is a lease: every outcome resolves it -- success or a rejection
closes the breaker, a failure re-opens it, and a rate limit, a skip (concurrency or
rate budget), a plugin crash or the caller being cancelled hand the probe to the next
request -- and should anything unforeseen keep it, the lease expires after
``probe_lease`` seconds so a channel can never stay out of rotation until a restart.

Breaker and rate state live behind a :class:`DispatchState` backend: in each process
(:class:`LocalDispatchState`) by default, or in Redis (``[coordination] redis_url``,
:class:`vidgate.coordination.RedisDispatchState`) so that replicas share one breaker, one
half-open probe and one rate window. The decisions stay here; a backend only reads and
updates records atomically. The concurrency count is read from the store, so it holds
across replicas either way.
"""

from __future__ import annotations

import collections
import random
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

import attrs
import structlog

from .config import ChannelConfig, Config
from .errors import ConfigError
from .plugins import Plugins
from .vendor import Channel

log = structlog.get_logger("vidgate.dispatch")
FAILURES_TO_OPEN = 3


T = TypeVar("T")


@attrs.define
class Breaker:
    """One channel's breaker record (times on the backend's clock, see ``DispatchState.now``)."""

    failures: int = 0
    open_until: float = 0.0  # 0: closed; in the future: open; in the past: half-open
    probe_until: float = 0.0  # a half-open probe holds the channel until then (a lease)
    probe_ticket: int = 0  # which admission holds the probe
    reason: str = ""

    def state(self, now: float) -> str:
        if self.open_until == 0.0:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def reset(self) -> None:
        self.failures, self.open_until, self.probe_until, self.probe_ticket, self.reason = 0, 0.0, 0.0, 0, ""


class DispatchState(Protocol):
    """Where breaker records and rate windows live. Implementations only store: every
    decision is the Dispatcher's, passed in as ``change``."""

    def now(self) -> float:
        """The clock breaker times and rate windows use (shared backends: wall clock)."""

    async def update_breaker(self, name: str, change: Callable[[Breaker], T]) -> T:
        """Apply ``change`` to channel ``name``'s record atomically (no other update to it
        in between, in any process sharing the backend), store the mutated record, and
        return what ``change`` returned. ``change`` is synchronous and may run again if a
        concurrent update forced a retry."""

    async def breakers(self, names: Iterable[str]) -> dict[str, Breaker]:
        """The current records (a fresh Breaker for a channel never touched)."""

    async def sent_in_window(self, name: str, window: float, now: float) -> int:
        """How many sends ``note_sent`` recorded for ``name`` after ``now - window``."""

    async def note_sent(self, name: str, now: float, window: float) -> None:
        """Record one send (kept at least ``window`` seconds)."""


class LocalDispatchState:
    """This process's own breakers and rate windows (the default)."""

    def __init__(self) -> None:
        self.records: dict[str, Breaker] = collections.defaultdict(Breaker)
        self._sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def now(self) -> float:
        return time.monotonic()

    async def update_breaker(self, name: str, change: Callable[[Breaker], T]) -> T:
        return change(self.records[name])  # no await in between: atomic on one event loop

    async def breakers(self, names: Iterable[str]) -> dict[str, Breaker]:
        return {name: self.records[name] for name in names}

    async def sent_in_window(self, name: str, window: float, now: float) -> int:
        sent = self._sent[name]
        while sent and sent[0] <= now - window:
            sent.popleft()
        return len(sent)

    async def note_sent(self, name: str, now: float, window: float) -> None:
        self._sent[name].append(now)


def to_channel(cfg: ChannelConfig, plugins: Plugins) -> Channel:
    """The plugin-facing view of a configured channel: its fields read off the config by
    name (so a field added to :class:`Channel` is filled from the config of that name),
    with the vendor's default base URL and models resolved."""
    vendor = plugins.vendors[cfg.vendor]
    models = cfg.models or tuple(plugins.vendor_models(cfg.vendor))
    return Channel(
        **{
            **{field.name: getattr(cfg, field.name) for field in attrs.fields(Channel)},
            "base_url": (cfg.base_url or vendor.default_base_url or "").rstrip("/"),
            "models": tuple(dict.fromkeys((*models, *cfg.model_map.keys()))),
        }
    )


class Dispatcher:
    def __init__(
        self, config: Config, plugins: Plugins, rng: random.Random | None = None, state: DispatchState | None = None
    ) -> None:
        self.config = config
        self.state: DispatchState = state or LocalDispatchState()
        self.channels: dict[str, Channel] = {}
        self.cooldowns: dict[str, float] = {}
        for cfg in config.channels:
            if cfg.vendor not in plugins.vendors:
                log.error(
                    "channel_disabled",
                    channel=cfg.name,
                    vendor=cfg.vendor,
                    reason="no enabled plugin provides this vendor",
                )
                continue
            channel = to_channel(cfg, plugins)
            if problems := plugins.validate_channel(channel):
                index = config.channels.index(cfg)
                raise ConfigError("; ".join(f"{config.source}: channels[{index}].{problem}" for problem in problems))
            if not cfg.models:
                defaults = plugins.default_models(channel)
                channel = attrs.evolve(channel, models=tuple(dict.fromkeys((*defaults, *cfg.model_map.keys()))))
            if extra := plugins.add_channel_models(channel, plugins.channel_models(channel)):
                channel = attrs.evolve(channel, models=tuple(dict.fromkeys((*channel.models, *extra))))
            self.channels[cfg.name] = channel
            self.cooldowns[cfg.name] = cfg.cooldown_seconds
        #: ``(channel, public model)`` pairs whose vendor said the model is retired, with
        #: the vendor's words: this process stops sending the model there (until restart).
        self.retired: dict[tuple[str, str], str] = {}
        self._rng = rng or random.Random()
        net = config.network
        # Long enough for a whole submit on one channel (every retry and its back-off);
        # only a path nobody foresaw ever waits for it.
        self.probe_lease = (
            net.outbound_timeout_seconds * (net.submit_retries + 1)
            + net.max_retry_after_seconds * net.submit_retries
            + 5.0
        )

    def serving(self, model: str, group: str | None = None) -> list[Channel]:
        return [
            ch
            for ch in self.channels.values()
            if model in ch.models and (group is None or group in ch.groups) and (ch.name, model) not in self.retired
        ]

    def retire(self, channel: str, model: str, message: str) -> None:
        """The vendor of ``channel`` retired ``model``: stop routing it there.

        A vendor that switched a model off answers 404/410 for it on every call; without
        this, every request would pay that round trip (and a breaker-free failover)
        before reaching a channel that still serves it. Kept per process: a restart (or
        another replica) learns it again from the first refusal.
        """
        if (channel, model) not in self.retired:
            self.retired[channel, model] = message
            log.warning("model_retired_on_channel", channel=channel, model=model, reason=message)

    def retired_everywhere(self, model: str, group: str | None = None) -> str | None:
        """The vendor's words when every channel that served ``model`` (for ``group``) retired
        it; None while one still serves it, or when none ever did."""
        configured = [
            ch for ch in self.channels.values() if model in ch.models and (group is None or group in ch.groups)
        ]
        if configured and all((ch.name, model) in self.retired for ch in configured):
            return self.retired[configured[0].name, model]
        return None

    def models_for_group(self, group: str) -> list[str]:
        names: dict[str, None] = {}
        for ch in self.channels.values():
            if group in ch.groups:
                names.update(dict.fromkeys(ch.models))
        return sorted(names)

    def order(self, channels: Iterable[Channel]) -> list[Channel]:
        """Priority descending; weighted random order within a priority."""

        def key(ch: Channel) -> tuple[int, float]:
            weight = max(ch.weight, 0)
            # Efraimidis-Spirakis: u ** (1 / w) sorts a weighted random permutation.
            draw = self._rng.random() ** (1.0 / weight) if weight > 0 else -1.0
            return (-ch.priority, -draw)

        return sorted(channels, key=key)

    # -- admission ---------------------------------------------------------------------

    async def breaker_allows(self, name: str, now: float | None = None) -> bool:
        """Whether a request may go to the channel now (without taking the probe)."""
        now = self.state.now() if now is None else now
        b = (await self.state.breakers([name]))[name]
        state = b.state(now)
        return state == "closed" or (state == "half-open" and b.probe_until <= now)

    async def admit(self, name: str, now: float | None = None) -> int | None:
        """Let one request through: None when the breaker refuses, 0 when it is closed,
        else a probe ticket the caller must hand to :meth:`end_probe` when done."""
        now = self.state.now() if now is None else now
        ticket = secrets.randbits(62) | 1  # unique across the processes sharing the state

        def decide(b: Breaker) -> int | None:
            state = b.state(now)
            if state == "closed":
                return 0
            if state == "open" or b.probe_until > now:
                return None
            b.probe_until, b.probe_ticket = now + self.probe_lease, ticket  # the one probe
            return ticket

        verdict = await self.state.update_breaker(name, decide)
        if verdict:
            log.info("channel_probe", channel=name)
        return verdict

    async def end_probe(self, name: str, ticket: int | None) -> None:
        """The probe ``ticket`` ended without a verdict on the channel (a rate limit, a
        plugin crash, a cancelled caller): the next request probes instead. A no-op when
        the outcome already resolved it or another probe holds it."""
        if not ticket:
            return

        def release(b: Breaker) -> None:
            if b.probe_ticket == ticket:
                b.probe_until, b.probe_ticket = 0.0, 0

        await self.state.update_breaker(name, release)

    async def rate_allows(self, channel: Channel, now: float | None = None) -> bool:
        if channel.rate_per_minute is None:
            return True
        now = self.state.now() if now is None else now
        return await self.state.sent_in_window(channel.name, 60.0, now) < channel.rate_per_minute

    async def note_sent(self, channel: Channel) -> None:
        if channel.rate_per_minute is not None:
            await self.state.note_sent(channel.name, self.state.now(), 60.0)

    # -- outcomes ------------------------------------------------------------------------

    async def succeeded(self, name: str) -> None:
        def close(b: Breaker) -> bool:
            was_open = bool(b.open_until)
            b.reset()
            return was_open

        if await self.state.update_breaker(name, close):
            log.info("channel_restored", channel=name)

    async def failed(self, name: str, reason: str, *, account: bool = False) -> None:
        """Count a failure; an account error (or repeated failures) opens the breaker."""
        cooldown = self.cooldowns.get(name, 60.0)
        now = self.state.now()

        def count(b: Breaker) -> bool:
            b.failures += 1
            b.probe_until, b.probe_ticket = 0.0, 0
            if account or b.failures >= FAILURES_TO_OPEN or b.open_until:
                b.open_until = now + cooldown
                b.reason = reason
                return True
            return False

        if await self.state.update_breaker(name, count):
            log.warning("channel_out_of_rotation", channel=name, reason=reason, cooldown=cooldown)

    async def status(self) -> list[dict[str, object]]:
        now = self.state.now()
        breakers = await self.state.breakers(self.channels)
        out = []
        for name, ch in self.channels.items():
            b = breakers[name]
            out.append(
                {
                    "name": name,
                    "vendor": ch.vendor,
                    "models": list(ch.models),
                    "groups": list(ch.groups),
                    "priority": ch.priority,
                    "weight": ch.weight,
                    "state": b.state(now),
                    "probing": b.probe_until > now,
                    "reason": b.reason or None,
                }
            )
        return out
