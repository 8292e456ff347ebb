"""Finding, loading and calling plugins.

This module is the only code that touches ``pm.hook``: the rest of the gateway calls the
typed methods of :class:`Plugins`. Loading never lets one broken plugin take the gateway
down: its import error is recorded and shown by ``vidgate plugins`` and ``/-/plugins``.
Two plugins claiming one vendor name is a start-up error naming both.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
from collections.abc import Awaitable, Iterable, Mapping
from types import NotImplementedType
from typing import Any, TypeVar

import attrs
import pluggy
import structlog

from . import hookspecs
from .errors import PluginLoadError, Problem, VendorError, VendorRejected
from .logs import scrubbing
from .markers import PROJECT
from .outcomes import classify
from .request import VideoRequest
from .vendor import (
    CallbackResult,
    CallContext,
    CancelOutcome,
    CancelResult,
    Channel,
    MediaSource,
    Model,
    PollResult,
    SourceTask,
    Submission,
    Vendor,
    VendorJob,
)

log = structlog.get_logger("vidgate.plugins")
T = TypeVar("T")
ENTRY_POINT_GROUP = "vidgate"


@attrs.define
class PluginInfo:
    """One plugin as ``vidgate plugins`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    vendors: list[str] = attrs.field(factory=list)
    models: list[str] = attrs.field(factory=list)
    status: str = "active"  # active | disabled | failed
    error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.status == "active"


def _async_hookimpls(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    bad = []
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and inspect.iscoroutinefunction(impl.function):
                bad.append(caller.name)
    return bad


class Plugins:
    """The loaded plugins, their vendors and models, and typed hook calls."""

    def __init__(self, pm: pluggy.PluginManager, infos: list[PluginInfo]) -> None:
        self.pm = pm
        self.infos = infos
        self.vendors: dict[str, Vendor] = {}
        # public model name -> vendor name -> Model
        self.models: dict[str, dict[str, Model]] = {}
        # channel name -> public model name -> Model, from vidgate_channel_models
        self.channel_only: dict[str, dict[str, Model]] = {}
        # (public name, vendor) pairs only channels define: not served by the vendor's other channels
        self._channel_names: set[tuple[str, str]] = set()
        self._build_registry()

    # -- loading -----------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        enabled: Iterable[str] | None = None,
        extra: Mapping[str, object] | None = None,
        entry_points: bool = True,
    ) -> Plugins:
        """Load plugins from the ``vidgate`` entry-point group.

        :param enabled: names (entry-point or distribution names) to load; None loads all.
        :param extra: plugins to register in-process (name -> plugin object), for tests
            and embedding; they are always enabled.
        """
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        wanted = None if enabled is None else set(enabled)
        infos: list[PluginInfo] = []
        if entry_points:
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = ep.dist
                info = PluginInfo(
                    name=ep.name,
                    distribution=dist.name if dist else None,
                    version=dist.version if dist else None,
                )
                infos.append(info)
                if wanted is not None and ep.name not in wanted and (info.distribution not in wanted):
                    info.status = "disabled"
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken plugin must not take the gateway down
                    info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
                    log.warning("plugin_load_failed", plugin=ep.name, error=info.error)
                    continue
                cls._register(pm, plugin, info)
        for name, plugin in (extra or {}).items():
            info = PluginInfo(name=name)
            infos.append(info)
            cls._register(pm, plugin, info)
        if wanted is not None:
            known = {i.name for i in infos} | {i.distribution for i in infos if i.distribution}
            for missing in sorted(wanted - known):
                infos.append(PluginInfo(name=missing, status="failed", error="not installed"))
        pm.check_pending()
        return cls(pm, infos)

    @staticmethod
    def _register(pm: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
        try:
            pm.register(plugin, name=info.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("plugin_register_failed", plugin=info.name, error=info.error)
            return
        if bad := _async_hookimpls(pm, plugin):
            pm.unregister(plugin)
            info.status = "failed"
            info.error = f"async def hook implementations are not allowed (return an awaitable): {', '.join(bad)}"
            log.warning("plugin_register_failed", plugin=info.name, error=info.error)

    def _build_registry(self) -> None:
        owner: dict[str, str] = {}
        by_name = {i.name: i for i in self.infos}
        for impl in self.pm.hook.vidgate_register_vendors.get_hookimpls():
            registered: list[Vendor] = []
            impl.function(registered.append)
            for vendor in registered:
                if vendor.name in self.vendors:
                    raise PluginLoadError(
                        f"vendor {vendor.name!r} is provided by both plugin {owner[vendor.name]!r}"
                        f" and plugin {impl.plugin_name!r}; uninstall or disable one of them"
                    )
                self.vendors[vendor.name] = vendor
                owner[vendor.name] = impl.plugin_name
                info = by_name.get(impl.plugin_name)
                for model in vendor.models:
                    for public in (model.name, *model.aliases):
                        self.models.setdefault(public, {})[vendor.name] = model
                        if info is not None:
                            info.models.append(public)
                if info is not None:
                    info.vendors.append(vendor.name)

    # -- lookups ---------------------------------------------------------------------

    def model(self, public: str, vendor: str, channel: str | None = None) -> Model | None:
        """The Model behind ``public`` for ``vendor``; a model ``channel`` defines in its
        config (:meth:`add_channel_models`) wins on that channel."""
        if channel is not None and (own := self.channel_only.get(channel, {}).get(public)) is not None:
            return own
        return self.models.get(public, {}).get(vendor)

    def channel_models(self, channel: Channel) -> list[Model]:
        """The models ``channel`` adds from its config (``vidgate_channel_models``)."""
        found: list[Model] = []
        with scrubbing(channel_secrets(channel)):
            for answer in self.pm.hook.vidgate_channel_models(vendor=channel.vendor, channel=channel):
                found.extend(m for m in answer if isinstance(m, Model))
        return found

    def add_channel_models(self, channel: Channel, models: Iterable[Model]) -> tuple[str, ...]:
        """Make ``models`` routable on ``channel``; returns their public names (with aliases)."""
        names: list[str] = []
        own = self.channel_only.setdefault(channel.name, {})
        for model in models:
            for public in (model.name, *model.aliases):
                own[public] = model
                # Known to the registry so the name resolves; the channel's own entry wins.
                vendors = self.models.setdefault(public, {})
                if channel.vendor not in vendors:
                    vendors[channel.vendor] = model
                    self._channel_names.add((public, channel.vendor))
                names.append(public)
        return tuple(names)

    def vendor_models(self, vendor: str) -> list[str]:
        """Every public name (with aliases) the vendor's plugin registered (not the names
        single channels add from their config)."""
        return [
            name
            for name, vendors in self.models.items()
            if vendor in vendors and (name, vendor) not in self._channel_names
        ]

    # -- typed hook calls ---------------------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        return [
            m
            for answer in self.pm.hook.vidgate_validate_channel(vendor=channel.vendor, channel=channel)
            for m in answer
        ]

    def validate(self, vendor: str, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        problems: list[Problem] = []
        with scrubbing(channel_secrets(channel)):
            for answer in self.pm.hook.vidgate_validate_request(
                vendor=vendor, request=request, model=model, channel=channel
            ):
                problems.extend(answer)
        return problems

    def map_request(self, vendor: str, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        with scrubbing(channel_secrets(channel)):
            job = self.pm.hook.vidgate_map_request(vendor=vendor, request=request, model=model, channel=channel)
        if job is None:
            raise PluginLoadError(f"no plugin maps requests for vendor {vendor!r}")
        if not isinstance(job, VendorJob):
            raise PluginLoadError(f"vidgate_map_request for {vendor!r} returned {type(job).__name__}, not VendorJob")
        return job

    async def _await(self, hook: str, vendor: str, awaitable: Awaitable[T] | None, ctx: CallContext) -> T:
        if awaitable is None:
            raise PluginLoadError(f"no plugin implements {hook} for vendor {vendor!r}")
        if not inspect.isawaitable(awaitable):
            raise PluginLoadError(f"{hook} for vendor {vendor!r} returned {type(awaitable).__name__}, not an awaitable")
        try:
            return await awaitable
        except VendorError as exc:
            # Vendors sometimes echo the key they were sent; whatever a plugin forwards,
            # no credential of the channel may reach a client, a log line or the store.
            scrub_credentials(exc, ctx.channel)
            raise
        except Exception as exc:
            # A raw timeout, aiohttp or JSON error means the same in every phase; what is
            # none of those (a plugin bug) propagates for the caller to log.
            found = classify(exc)
            if found is None:
                raise
            scrub_credentials(found, ctx.channel)
            raise found from exc

    async def submit(self, vendor: str, job: VendorJob, ctx: CallContext) -> Submission:
        with scrubbing(channel_secrets(ctx.channel)):
            return await self._await(
                "vidgate_submit", vendor, self.pm.hook.vidgate_submit(vendor=vendor, job=job, ctx=ctx), ctx
            )

    async def poll(self, vendor: str, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        with scrubbing(channel_secrets(ctx.channel)):
            result: PollResult = await self._await(
                "vidgate_poll", vendor, self.pm.hook.vidgate_poll(vendor=vendor, handle=handle, ctx=ctx), ctx
            )
        if isinstance(result, PollResult) and result.error is not None:
            clean = scrub_text(result.error.message, ctx.channel)
            if clean != result.error.message:
                result = attrs.evolve(result, error=attrs.evolve(result.error, message=clean))
        return result

    async def poll_many(
        self, vendor: str, handles: Mapping[str, dict[str, Any]], ctx: CallContext
    ) -> dict[str, PollResult] | None:
        """One batch poll: ``{vendor_task_id: PollResult}`` for the tasks the vendor answered
        (anything else in the answer is dropped); ``None`` when no plugin implements it."""
        with scrubbing(channel_secrets(ctx.channel)):
            answer = self.pm.hook.vidgate_poll_many(vendor=vendor, handles=handles, ctx=ctx)
            if answer is None:
                return None
            results = await self._await("vidgate_poll_many", vendor, answer, ctx)
        if not isinstance(results, Mapping):
            raise PluginLoadError(f"vidgate_poll_many for {vendor!r} returned {type(results).__name__}, not a mapping")
        clean: dict[str, PollResult] = {}
        for vendor_task_id, result in results.items():
            if vendor_task_id not in handles or not isinstance(result, PollResult):
                continue
            if result.error is not None:
                message = scrub_text(result.error.message, ctx.channel)
                if message != result.error.message:
                    result = attrs.evolve(result, error=attrs.evolve(result.error, message=message))
            clean[vendor_task_id] = result
        return clean

    async def fetch_result(
        self, vendor: str, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        with scrubbing(channel_secrets(ctx.channel)):
            return await self._await(
                "vidgate_fetch_result",
                vendor,
                self.pm.hook.vidgate_fetch_result(
                    vendor=vendor, handle=handle, result=result, variant=variant, ctx=ctx
                ),
                ctx,
            )

    async def recover(self, vendor: str, job: VendorJob, ctx: CallContext) -> Submission | None | NotImplementedType:
        """Find a task whose submit answer was lost; ``NotImplemented`` when the vendor
        cannot look tasks up by our id."""
        with scrubbing(channel_secrets(ctx.channel)):
            lookup = self.pm.hook.vidgate_recover(vendor=vendor, job=job, ctx=ctx)
            if lookup is None:
                return NotImplemented  # type: ignore[no-any-return]  # typeshed: NotImplemented subclasses Any
            found: Submission | None = await self._await("vidgate_recover", vendor, lookup, ctx)
            return found

    async def remix(self, vendor: str, handle: dict[str, Any], job: VendorJob, ctx: CallContext) -> Submission:
        with scrubbing(channel_secrets(ctx.channel)):
            return await self._await(
                "vidgate_remix",
                vendor,
                self.pm.hook.vidgate_remix(vendor=vendor, handle=handle, job=job, ctx=ctx),
                ctx,
            )

    async def derive(
        self, vendor: str, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext
    ) -> Submission:
        """Start a derived task (``vidgate_derive``; for a remix, ``vidgate_remix`` when no
        plugin derives for ``vendor``). ``VendorRejected`` naming ``video`` when neither does."""
        with scrubbing(channel_secrets(ctx.channel)):
            answer = self.pm.hook.vidgate_derive(vendor=vendor, operation=operation, source=source, job=job, ctx=ctx)
            hook = "vidgate_derive"
            if answer is None and operation == "remix":
                answer = self.pm.hook.vidgate_remix(vendor=vendor, handle=source.handle, job=job, ctx=ctx)
                hook = "vidgate_remix"
            if answer is None:
                raise VendorRejected(f"vendor {vendor!r} cannot {operation} videos", param="video")
            return await self._await(hook, vendor, answer, ctx)

    async def cancel(self, vendor: str, handle: dict[str, Any], ctx: CallContext) -> CancelResult | None:
        """The vendor's answer to a cancel; ``None`` when no plugin cancels for ``vendor``."""
        answer = self.pm.hook.vidgate_cancel(vendor=vendor, handle=handle, ctx=ctx)
        if answer is None:
            return None
        result = await self._await("vidgate_cancel", vendor, answer, ctx)
        if not isinstance(result, CancelResult) or not isinstance(result.outcome, CancelOutcome):
            raise PluginLoadError(f"vidgate_cancel for {vendor!r} returned {type(result).__name__}, not CancelResult")
        return attrs.evolve(result, message=scrub_text(result.message, ctx.channel))

    async def shutdown(self) -> None:
        for answer in self.pm.hook.vidgate_shutdown():
            if inspect.isawaitable(answer):
                try:
                    await asyncio.wait_for(answer, timeout=10)
                except Exception as exc:  # one plugin's failure must not stop the others
                    log.warning("plugin_shutdown_failed", error=f"{type(exc).__name__}: {exc}")

    def parse_callback(self, channel: Channel, body: bytes, headers: Mapping[str, str]) -> CallbackResult | None:
        """The plugin's reading of a callback to ``channel`` (a plain ``str`` answer becomes
        a :class:`CallbackResult`); None when unparseable or of the wrong type."""
        with scrubbing(channel_secrets(channel)):
            answer = self.pm.hook.vidgate_parse_callback(
                vendor=channel.vendor, body=body, headers=headers, channel=channel
            )
        if isinstance(answer, str):
            return CallbackResult(vendor_task_id=answer) if answer else None
        if not isinstance(answer, CallbackResult):
            return None
        if answer.vendor_task_id is not None and not (isinstance(answer.vendor_task_id, str) and answer.vendor_task_id):
            return None
        if answer.reply is not None and not isinstance(answer.reply, Mapping):
            return None
        if answer.vendor_task_id is None and answer.reply is None and answer.verified is not False:
            return None
        return answer


def _secret_strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _secret_strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _secret_strings(v)]
    if isinstance(value, str):
        found = [value]
        if value.lstrip().startswith("{"):  # a JSON document such as a service account
            try:
                found += _secret_strings(json.loads(value))
            except ValueError:
                pass
        # Multi-line secrets (PEM keys) may be quoted a line at a time.
        found += [line.strip() for line in value.splitlines() if len(line.strip()) >= 16]
        return found
    return []


def channel_secrets(channel: Channel) -> tuple[str, ...]:
    """Every credential value of ``channel`` worth scrubbing, longest first (so a secret
    that contains another is replaced whole)."""
    cached = _SECRETS_CACHE.get(id(channel))
    if cached is not None and cached[0] is channel:
        return cached[1]
    found = tuple(sorted({s for s in _secret_strings(channel.credentials) if len(s) >= 6}, key=len, reverse=True))
    _SECRETS_CACHE[id(channel)] = (channel, found)
    return found


# Channels live for the process (they come from the config): compute their secrets once.
_SECRETS_CACHE: dict[int, tuple[Channel, tuple[str, ...]]] = {}


def scrub_text(text: str, channel: Channel) -> str:
    """``text`` with every credential value of ``channel`` replaced by a marker."""
    for secret in channel_secrets(channel):
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def scrub_credentials(exc: VendorError, channel: Channel) -> None:
    """Scrub the error's message in place (see :func:`scrub_text`)."""
    exc.message = scrub_text(exc.message, channel)
    exc.args = (exc.message,)
