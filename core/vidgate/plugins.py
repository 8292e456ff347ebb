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
from collections.abc import Iterable, Mapping
from typing import Any

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
    CALLBACK_SECONDS,
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
    VendorPlugin,
)

log = structlog.get_logger("vidgate.plugins")
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
        #: The vendors registered as :class:`VendorPlugin` objects, whose methods the core
        #: awaits directly; the others answer through the hooks of :mod:`vidgate.hookspecs`.
        self.impls: dict[str, VendorPlugin] = {}
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
            registered: list[Vendor | VendorPlugin] = []
            impl.function(registered.append)
            for entry in registered:
                vendor = entry.vendor_info() if isinstance(entry, VendorPlugin) else entry
                if vendor.name in self.vendors:
                    raise PluginLoadError(
                        f"vendor {vendor.name!r} is provided by both plugin {owner[vendor.name]!r}"
                        f" and plugin {impl.plugin_name!r}; uninstall or disable one of them"
                    )
                self.vendors[vendor.name] = vendor
                if isinstance(entry, VendorPlugin):
                    self.impls[vendor.name] = entry
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
            if (impl := self.impls.get(channel.vendor)) is not None:
                answers = [impl.channel_models(channel)]
            else:
                answers = self.pm.hook.vidgate_channel_models(vendor=channel.vendor, channel=channel)
            for answer in answers:
                found.extend(m for m in answer if isinstance(m, Model))
        return found

    def default_models(self, channel: Channel) -> list[str]:
        """The public names ``channel`` serves when its config lists no ``models``: the
        vendor's registered models, narrowed by its plugin (``vidgate_default_models``)
        to those it names, aliases included."""
        names = self.vendor_models(channel.vendor)
        with scrubbing(channel_secrets(channel)):
            if (impl := self.impls.get(channel.vendor)) is not None:
                answers = [impl.default_models(channel)]
            else:
                answers = self.pm.hook.vidgate_default_models(vendor=channel.vendor, channel=channel)
        chosen = [answer for answer in answers if answer is not None]
        if not chosen:
            return names
        wanted = {str(name) for answer in chosen for name in answer}
        return [
            name
            for name in names
            if (model := self.models[name].get(channel.vendor)) is not None and wanted & {model.name, *model.aliases}
        ]

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

    # -- calling vendors -------------------------------------------------------------------

    def _start(self, verb: str, vendor: str, args: dict[str, Any]) -> Any:
        """``vendor``'s answer to ``verb`` with ``args`` (in the hookspec's order): the
        :class:`VendorPlugin`'s method, else the ``vidgate_<verb>`` hook. Raises
        :class:`VerbNotOffered` when the vendor does not offer the verb."""
        impl = self.impls.get(vendor)
        if impl is not None:
            method = _METHODS.get(verb, verb)
            if not impl.offers(method):
                raise VerbNotOffered(vendor, verb)
            return getattr(impl, method)(*args.values())
        answer = getattr(self.pm.hook, f"vidgate_{verb}")(vendor=vendor, **args)
        if answer is None:
            raise VerbNotOffered(vendor, verb)
        return answer

    async def call(self, verb: str, vendor: str, ctx: CallContext, **args: Any) -> Any:
        """Await the vendor verb ``verb`` (``submit``, ``poll``, ``cancel``...) of ``vendor``
        with ``args`` (the hookspec's arguments after ``vendor``, in its order, ``ctx``
        last). This is the one place a vendor call goes through: the channel's credentials
        are scrubbed from what it logs and raises, and the raw errors a plugin lets
        escape become the :class:`VendorError` the phase table knows
        (:func:`vidgate.outcomes.classify`). Raises :class:`VerbNotOffered`."""
        with scrubbing(channel_secrets(ctx.channel)):
            awaitable = self._start(verb, vendor, {**args, "ctx": ctx})
            if not inspect.isawaitable(awaitable):
                raise PluginLoadError(
                    f"vidgate_{verb} for vendor {vendor!r} returned {type(awaitable).__name__}, not an awaitable"
                )
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

    def validate_channel(self, channel: Channel) -> list[str]:
        """Problems with a channel's settings, as its vendor sees them."""
        problems: list[str] = []
        with scrubbing(channel_secrets(channel)):
            if (impl := self.impls.get(channel.vendor)) is not None:
                problems.extend(impl.validate_channel(channel))
            for answer in self.pm.hook.vidgate_validate_channel(vendor=channel.vendor, channel=channel):
                problems.extend(answer)
        return problems

    def validate(self, vendor: str, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        """The vendor's problems with ``request``, and those of every plugin answering the
        hook for all vendors (policy plugins)."""
        problems: list[Problem] = []
        with scrubbing(channel_secrets(channel)):
            if vendor in self.impls:
                problems.extend(self.impls[vendor].validate(request, model, channel))
            for answer in self.pm.hook.vidgate_validate_request(
                vendor=vendor, request=request, model=model, channel=channel
            ):
                problems.extend(answer)
        return problems

    def map_request(self, vendor: str, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        with scrubbing(channel_secrets(channel)):
            try:
                job = self._start("map_request", vendor, {"request": request, "model": model, "channel": channel})
            except VerbNotOffered:
                raise PluginLoadError(f"no plugin maps requests for vendor {vendor!r}") from None
        if not isinstance(job, VendorJob):
            raise PluginLoadError(f"vidgate_map_request for {vendor!r} returned {type(job).__name__}, not VendorJob")
        return job

    async def submit(self, vendor: str, job: VendorJob, ctx: CallContext) -> Submission:
        submission: Submission = await self.call("submit", vendor, ctx, job=job)
        return submission

    async def poll(self, vendor: str, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        result = await self.call("poll", vendor, ctx, handle=handle)
        return _scrubbed(result, ctx.channel) if isinstance(result, PollResult) else result

    async def poll_many(
        self, vendor: str, handles: Mapping[str, dict[str, Any]], ctx: CallContext
    ) -> dict[str, PollResult] | None:
        """One batch poll: ``{vendor_task_id: PollResult}`` for the tasks the vendor answered
        (anything else in the answer is dropped); ``None`` when the vendor has no batch poll."""
        try:
            results = await self.call("poll_many", vendor, ctx, handles=handles)
        except VerbNotOffered:
            return None
        if not isinstance(results, Mapping):
            raise PluginLoadError(f"vidgate_poll_many for {vendor!r} returned {type(results).__name__}, not a mapping")
        return {
            vendor_task_id: _scrubbed(result, ctx.channel)
            for vendor_task_id, result in results.items()
            if vendor_task_id in handles and isinstance(result, PollResult)
        }

    async def fetch_result(
        self, vendor: str, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        media: MediaSource | None = await self.call(
            "fetch_result", vendor, ctx, handle=handle, result=result, variant=variant
        )
        return media

    async def recover(self, vendor: str, job: VendorJob, ctx: CallContext) -> Submission | None:
        """The submission of a task whose submit answer was lost, or None when the vendor
        certainly never received it. Raises :class:`VerbNotOffered` when the vendor
        cannot look tasks up by our id."""
        found: Submission | None = await self.call("recover", vendor, ctx, job=job)
        return found

    async def derive(
        self, vendor: str, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext
    ) -> Submission:
        """Start a derived task (``derive``; for a remix, the older ``remix`` verb when the
        vendor has no ``derive``). ``VendorRejected`` naming ``video`` when it has neither."""
        try:
            submission: Submission = await self.call("derive", vendor, ctx, operation=operation, source=source, job=job)
            return submission
        except VerbNotOffered:
            if operation != "remix":
                raise VendorRejected(f"vendor {vendor!r} cannot {operation} videos", param="video") from None
        try:
            submission = await self.call("remix", vendor, ctx, handle=source.handle, job=job)
            return submission
        except VerbNotOffered:
            raise VendorRejected(f"vendor {vendor!r} cannot {operation} videos", param="video") from None

    async def cancel(self, vendor: str, handle: dict[str, Any], ctx: CallContext) -> CancelResult | None:
        """The vendor's answer to a cancel; ``None`` when the vendor has no cancel."""
        try:
            result = await self.call("cancel", vendor, ctx, handle=handle)
        except VerbNotOffered:
            return None
        if not isinstance(result, CancelResult) or not isinstance(result.outcome, CancelOutcome):
            raise PluginLoadError(f"vidgate_cancel for {vendor!r} returned {type(result).__name__}, not CancelResult")
        return attrs.evolve(result, message=scrub_text(result.message, ctx.channel))

    async def shutdown(self) -> None:
        answers: list[Any] = [impl.shutdown() for impl in self.impls.values() if impl._overrides("shutdown")]
        answers += self.pm.hook.vidgate_shutdown()
        for answer in answers:
            if inspect.isawaitable(answer):
                try:
                    await asyncio.wait_for(answer, timeout=10)
                except Exception as exc:  # one plugin's failure must not stop the others
                    log.warning("plugin_shutdown_failed", error=f"{type(exc).__name__}: {exc}")

    async def parse_callback(
        self, channel: Channel, body: bytes, headers: Mapping[str, str], ctx: CallContext
    ) -> CallbackResult | None:
        """The plugin's reading of a callback to ``channel`` (a plain ``str`` answer becomes
        a :class:`CallbackResult`); None when unparseable or of the wrong type. A
        :class:`VendorPlugin` that overrides ``read_callback`` is awaited (with ``ctx``,
        bounded by ``CALLBACK_SECONDS``); otherwise its or the hook's ``parse_callback``."""
        impl = self.impls.get(channel.vendor)
        with scrubbing(channel_secrets(channel)):
            if impl is not None and impl._overrides("read_callback"):
                answer = await asyncio.wait_for(impl.read_callback(body, headers, ctx), CALLBACK_SECONDS)
            elif impl is None:
                answer = self.pm.hook.vidgate_parse_callback(
                    vendor=channel.vendor, body=body, headers=headers, channel=channel
                )
            elif "channel" in inspect.signature(impl.parse_callback).parameters:
                answer = impl.parse_callback(body, headers, channel=channel)
            else:  # the older signature, without the channel
                answer = impl.parse_callback(body, headers)  # type: ignore[call-arg]
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


class VerbNotOffered(Exception):
    """The vendor does not offer this verb (a :class:`VendorPlugin` that leaves it out,
    or no hook implementation answering for the vendor)."""

    def __init__(self, vendor: str, verb: str) -> None:
        super().__init__(f"vendor {vendor!r} does not offer {verb}")
        self.vendor, self.verb = vendor, verb


#: Hook verbs whose :class:`VendorPlugin` method has another name.
_METHODS = {"validate_request": "validate"}


def _scrubbed(result: PollResult, channel: Channel) -> PollResult:
    """``result`` with no credential of ``channel`` in its error message."""
    if result.error is None:
        return result
    clean = scrub_text(result.error.message, channel)
    if clean == result.error.message:
        return result
    return attrs.evolve(result, error=attrs.evolve(result.error, message=clean))


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
