"""The gateway's service layer: tokens, submit with dispatch and billing, task access.

The HTTP endpoints and the CLI call this; it calls plugins only through
:class:`vidgate.plugins.Plugins`. Submit order, which the rest of the design relies on:

1. validate and map the request for the first channel that can take it;
2. store the task row with its charge (one transaction) -- nothing reaches a vendor
   before that;
3. call the vendor; on a retryable error try the next channel, never one already tried;
4. record the vendor's handle, then answer the client.

A crash between 2 and 4 leaves a row in phase ``submitting`` whose lease expires; the
worker then recovers it (see :mod:`vidgate.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

from . import billing, outcomes
from .auth import hash_key, key_hint, new_key
from .config import Config
from .dispatch import Dispatcher
from .errors import (
    VendorError,
    conflict,
    forbidden,
    invalid,
    not_found,
    unauthorized,
)
from .events import LocalNotifier, TaskNotifier
from .lifecycle import TaskPhase
from .logs import SCRUB_KEY, ScrubSecrets
from .media import LocalMedia, MediaStorage, open_media
from .net import HTTP, parse_networks, url_refusal
from .plugins import Plugins, channel_secrets
from .prices import PriceError
from .request import Size, VideoRequest
from .store import Store, TaskRecord, TokenRecord
from .submitting import SubmitEngine, request_fingerprint
from .vendor import ARTIFACTS, CallContext, CancelOutcome, CancelResult, Channel, SourceTask, VendorJob
from .wire import job_from_json, request_from_json, video_object

log = structlog.get_logger("vidgate.gateway")


class Gateway:
    """Everything one gateway process holds: config, plugins, store, media, HTTP."""

    def __init__(
        self,
        config: Config,
        plugins: Plugins,
        store: Store,
        http: HTTP,
        dispatcher: Dispatcher | None = None,
        media: MediaStorage | None = None,
        coordination: Any = None,
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.store = store
        self.http = http
        self.media: MediaStorage = (
            media if media is not None else LocalMedia(Path(config.media.path), config.media.max_result_bytes)
        )
        self.dispatcher = dispatcher or Dispatcher(config, plugins)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.workdir = config.data_dir / "vendors"
        self.channel_state: dict[str, dict[str, Any]] = {}
        self.result_networks = {
            ch.name: parse_networks(
                config.network.allow_result_networks if ch.allow_result_networks is None else ch.allow_result_networks
            )
            for ch in config.channels
        }
        # Set when a task becomes due sooner than the worker expects (a callback).
        self.wakeup = asyncio.Event()
        # Wakes event streams and `Prefer: wait` requests when a task changes.
        self.notifier: TaskNotifier = LocalNotifier()
        # Set when a webhook event may have been queued (the delivery loop's doorbell).
        self.webhook_wakeup = asyncio.Event()
        self.webhook_networks = parse_networks(config.webhooks.allow_networks)
        # A RedisCoordination when replicas share state ([coordination] redis_url).
        self.coordination = coordination
        if coordination is not None:
            from .coordination import RedisNotifier

            notifier = RedisNotifier(coordination)
            self.notifier = notifier
            coordination.on_wake = self.wakeup.set

            def on_task_change(task_id: str) -> None:
                notifier.notify_local(task_id)
                self.webhook_wakeup.set()

            coordination.on_task_change = on_task_change
        store.render_task = self.render_task
        store.token_cache.ttl = config.server.auth_cache_seconds
        store.on_task_change = self._task_changed
        self.submitter = SubmitEngine(self)

    def _task_changed(self, task_id: str) -> None:
        self.notifier.notify(task_id)
        self.webhook_wakeup.set()

    def wake_worker(self) -> None:
        """A task became due now: wake this process's worker, and every replica's."""
        self.wakeup.set()
        if self.coordination is not None:
            self.coordination.wake_workers()

    def public_base_url(self) -> str:
        """Where clients reach this gateway (``[server] public_url``, else host and port)."""
        server = self.config.server
        return (server.public_url or f"http://{server.host}:{server.port}").rstrip("/")

    def content_url(self, task: TaskRecord, base: str | None = None) -> str:
        return f"{(base or self.public_base_url()).rstrip('/')}/v1/videos/{task.id}/content"

    def render_task(self, task: TaskRecord, base: str | None = None) -> dict[str, Any]:
        """The public task object (what clients, event streams and webhooks see)."""
        return video_object(task, self.content_url(task, base))

    async def check_webhook_url(self, url: object, param: str = "webhook_url") -> str:
        """A client's webhook URL, or a 400 naming ``param``: http(s), at most 2048
        characters, and (unless ``[webhooks] allow_networks`` says otherwise) a public address."""
        if not isinstance(url, str) or not url.strip():
            raise invalid(f"{param} must be a non-empty http(s) URL.", param)
        url = url.strip()
        if len(url) > 2048:
            raise invalid(f"{param} is longer than 2048 characters.", param)
        problem = await url_refusal(url, self.webhook_networks)
        if problem is not None:
            raise invalid(f"{param} {problem}.", param, "invalid_webhook_url")
        return url

    @classmethod
    async def start(cls, config: Config, *, extra_plugins: dict[str, object] | None = None) -> Gateway:
        plugins = Plugins.load(enabled=config.plugins.enabled, extra=extra_plugins)
        coordination = state = None
        if config.coordination.redis_url:
            from .coordination import RedisCoordination, RedisDispatchState

            coordination = RedisCoordination(config.coordination.redis_url, config.coordination.key_prefix)
            state = RedisDispatchState(coordination)
        dispatcher = Dispatcher(config, plugins, state=state)  # validates every channel before anything opens
        store = await Store.open(config.store.url)
        try:
            media = await open_media(config.media)
            if coordination is not None:
                await coordination.start()
        except BaseException:
            if coordination is not None:
                await coordination.close()
            await store.close()
            raise
        net = config.network
        http = HTTP(
            total_timeout=net.outbound_timeout_seconds,
            connect_timeout=net.connect_timeout_seconds,
            image_timeout=net.image_fetch_timeout_seconds,
            download_idle_timeout=net.download_idle_timeout_seconds,
            download_timeout=net.download_timeout_seconds,
            download_min_bytes_per_second=net.download_min_bytes_per_second,
            download_rate_window_seconds=net.download_rate_window_seconds,
            max_result_bytes=config.media.max_result_bytes,
            allowed_networks=parse_networks(net.allow_image_networks),
            result_networks=parse_networks(net.allow_result_networks),
        )
        return cls(config, plugins, store, http, dispatcher, media, coordination)

    async def close(self) -> None:
        await self.plugins.shutdown()
        await self.http.close()
        await self.media.close()
        if self.coordination is not None:
            await self.coordination.close()
        await self.store.close()

    @contextlib.asynccontextmanager
    async def holding_lease(self, task_id: str) -> AsyncIterator[None]:
        """Keep renewing our lease on a task while the body runs.

        Leases are short so that a killed process's tasks come back quickly; a live
        process keeps them by renewing every third of the lease.
        """
        lease = self.config.worker.lease_seconds

        async def renew() -> None:
            while True:
                await self.store.renew_lease(task_id, self.owner, time.time() + lease)
                await asyncio.sleep(lease / 3)

        # Most bodies (a submit) end long before the first renewal: a timer, not a task
        # per call, until one is due.
        keeper: asyncio.Task[None] | None = None

        def start() -> None:
            nonlocal keeper
            keeper = asyncio.create_task(renew())

        timer = asyncio.get_running_loop().call_later(lease / 3, start)
        try:
            yield
        finally:
            timer.cancel()
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await keeper

    # -- tokens ------------------------------------------------------------------------

    async def create_token(
        self,
        name: str,
        group: str = "default",
        quota: int | None = None,
        models: list[str] | None = None,
        expires_at: float | None = None,
    ) -> tuple[TokenRecord, str]:
        """Create a token; returns the record and the key (shown once, stored hashed)."""
        if self.config.group(group) is None:
            raise ValueError(f"group {group!r} is not defined in the config")
        key = new_key()
        token = await self.store.create_token(
            name=name,
            key_hash=hash_key(key),
            key_hint=key_hint(key),
            group=group,
            quota=quota,
            models=models,
            expires_at=expires_at,
        )
        return token, key

    async def authenticate(self, authorization: str | None) -> TokenRecord:
        if not authorization:
            raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
        key_hash = hash_key(key.strip())
        cache = self.store.token_cache
        token = cache.get(key_hash)
        if token is None:
            token = await self.store.token_by_hash(key_hash)
            if token is None:
                raise unauthorized("Incorrect API key provided.")
            cache.put(key_hash, token)
        if token.revoked_at is not None:
            raise unauthorized("This API key has been revoked.")
        if token.expires_at is not None and token.expires_at < time.time():
            raise unauthorized("This API key has expired.")
        return token

    def models_for(self, token: TokenRecord) -> list[str]:
        names = self.dispatcher.models_for_group(token.group)
        if token.models is not None:
            names = [n for n in names if n in token.models]
        return names

    # -- context for vendor calls --------------------------------------------------------

    def context(self, task_id: str, channel: Channel, request: VideoRequest | None = None) -> CallContext:
        vendor = self.plugins.vendors[channel.vendor]
        workdir = self.workdir / vendor.name
        callback_url = None
        if self.config.server.public_url:
            callback_url = f"{self.config.server.public_url.rstrip('/')}/v1/callbacks/{channel.name}"
        return CallContext(
            channel=channel,
            http=self.http.session,
            task_id=task_id,
            # Whatever a plugin logs through ctx.log, even outside a call, has the
            # channel's credential values scrubbed (see logs.ScrubSecrets).
            log=log.bind(
                task_id=task_id,
                vendor=channel.vendor,
                channel=channel.name,
                **{SCRUB_KEY: ScrubSecrets(channel_secrets(channel))},
            ),
            workdir=workdir,
            timeout=self.http.timeout,
            callback_url=callback_url,
            state=self.channel_state.setdefault(channel.name, {}),
            request=request,
            fetch_image=self.http.fetch_image,
            download=functools.partial(self.http.download, allowed_networks=self.result_networks.get(channel.name)),
        )

    def poll_interval(self, channel: Channel) -> float:
        override = channel.options.get("poll_interval")
        if isinstance(override, (int, float)) and override > 0:
            return float(override)
        return self.plugins.vendors[channel.vendor].poll_interval

    def next_poll_delay(self, channel: Channel, hint: float | None) -> float:
        """The vendor's hint when it gives one, never longer than an operator's
        ``poll_interval`` option; otherwise the channel's poll interval."""
        interval = self.poll_interval(channel)
        if hint is None:
            return interval
        if "poll_interval" in channel.options:
            return min(max(hint, 0.0), interval)
        return max(hint, 0.0)

    def deadline(self, channel: Channel) -> float:
        override = channel.options.get("deadline")
        if isinstance(override, (int, float)) and override > 0:
            return float(override)
        return self.plugins.vendors[channel.vendor].deadline

    # -- submit ------------------------------------------------------------------------

    async def submit(
        self,
        token: TokenRecord,
        request: VideoRequest,
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        remix_source: TaskRecord | None = None,
        webhook_url: str | None = None,
        source: TaskRecord | None = None,
        operation: str | None = None,
    ) -> TaskRecord:
        """Submit ``request`` for ``token`` (see :meth:`vidgate.submitting.SubmitEngine.submit`)."""
        if webhook_url is not None:
            webhook_url = await self.check_webhook_url(webhook_url)
        return await self.submitter.submit(
            token,
            request,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            source=source if remix_source is None else remix_source,
            operation=operation if remix_source is None else "remix",
            webhook_url=webhook_url,
        )

    # -- access ------------------------------------------------------------------------

    async def task_for(self, token: TokenRecord, task_id: str) -> TaskRecord:
        """The caller's visible task, or 404 (also for another token's task)."""
        task = await self.store.get_task(task_id) if len(task_id) < 200 else None
        if task is None or task.token_id != token.id or task.hidden:
            raise not_found(f"No video found with id '{task_id[:100]}'.")
        return task

    async def delete(self, token: TokenRecord, task_id: str) -> TaskRecord:
        task = await self.task_for(token, task_id)
        if not task.finished:
            raise conflict(
                f"Video '{task.id}' is still {task.status}; only completed or failed videos can be deleted.",
                "video_not_finished",
            )
        await self.media.delete(task.id)
        # The row stays, hidden and stripped of media, so the ledger keeps its task and a
        # client paginating with this id as ``after`` does not lose its place.
        await self.store.hide(task.id)
        return task

    # -- cancel --------------------------------------------------------------------------

    async def cancel(self, token: TokenRecord, task_id: str) -> TaskRecord:
        """The client cancels its task. Answers the task; 409 when it finished otherwise.

        The request is recorded first, then carried out if the task has a vendor handle.
        A submit in flight checks the record after storing its handle, so whichever of the
        two comes second carries the cancel out.
        """
        task = await self.task_for(token, task_id)
        if task.status == "cancelled":
            return task
        if not task.finished and task.phase != TaskPhase.FETCHING:
            recorded = await self.store.request_cancel(task.id)
            assert recorded is not None
            if recorded.cancel_requested_at is not None and task.cancel_requested_at is None:
                await self.store.add_attempt(task.id, task.channel, "cancel_requested", "by the client")
            task = recorded
            if not task.finished and task.phase != TaskPhase.SUBMITTING and task.handle is not None:
                task = await self.carry_out_cancel(task)
        if task.status == "cancelled":
            return task
        if task.finished or task.phase == TaskPhase.FETCHING:
            raise conflict(
                f"Video '{task.id}' is already {'completed' if task.phase == TaskPhase.FETCHING else task.status};"
                " it can no longer be cancelled.",
                "video_finished",
            )
        return task  # still being submitted: cancelled as soon as the vendor answers

    async def carry_out_cancel(self, task: TaskRecord) -> TaskRecord:
        """Ask the vendor to stop ``task`` and end it accordingly (exactly once, however
        many callers race: every ending is a conditional update of an unfinished task)."""
        channel = self.dispatcher.channels.get(task.channel)
        result: CancelResult | None = None
        if channel is not None and task.vendor in self.plugins.vendors and task.handle is not None:
            ctx = self.context(task.id, channel)
            try:
                result = await self.plugins.cancel(channel.vendor, task.handle, ctx)
            except VendorError as exc:
                found = outcomes.rule(outcomes.Phase.CANCEL, exc)
                await self.breaker_effect(channel, found, exc)
                if found.action is outcomes.Action.LEARN_ENDING:
                    result = CancelResult(CancelOutcome.FINISHED, f"the vendor no longer has the task: {exc.message}")
                else:
                    result = CancelResult(CancelOutcome.REFUSED, f"cancel failed: {outcomes.attempt_detail(exc)}")
            except Exception as exc:  # a plugin bug must not keep the client's task alive
                log.exception("plugin_cancel_crashed", task_id=task.id)
                result = CancelResult(CancelOutcome.REFUSED, f"plugin error: {type(exc).__name__}: {exc}")
            if result is None:
                result = CancelResult(CancelOutcome.REFUSED, "the vendor has no cancel")
            if result.outcome is CancelOutcome.FINISHED:
                ended = await self._learn_ending(task, channel, ctx)
                if ended is not None:
                    await self.store.add_attempt(task.id, channel.name, "cancel_too_late", result.message)
                    return ended
                result = CancelResult(CancelOutcome.REFUSED, f"{result.message} (but it is still running)")
        elif result is None:
            result = CancelResult(CancelOutcome.REFUSED, "the channel or its plugin is gone")
        await self.store.add_attempt(task.id, task.channel, f"cancel_{result.outcome.value}", result.message)
        await self.end_cancelled(task, result)
        final = await self.store.get_task(task.id)
        assert final is not None
        return final

    async def _learn_ending(self, task: TaskRecord, channel: Channel, ctx: CallContext) -> TaskRecord | None:
        """The vendor finished before the cancel: poll once and let the task end as it did
        (a completed one goes on to be fetched). None if it turns out to be running."""
        try:
            polled = await self.plugins.poll(channel.vendor, task.handle or {}, ctx)
        except VendorError as exc:
            found = outcomes.rule(outcomes.Phase.POLL, exc)
            if found.action is not outcomes.Action.FAIL_TASK:
                return None
            code = outcomes.failure_code(found, exc)
            await self.store.fail(task.id, code=code, message=exc.message)
            return await self.store.get_task(task.id)
        if polled.status == "completed":
            await self.store.result_ready(
                task.id,
                result=polled.result or {},
                usage=billing.actual_facts(await self.billed_facts(task), polled.usage),
                due_now=True,
                clear_cancel=True,
            )
            self.wakeup.set()
        elif polled.status == "failed":
            error = polled.error
            await self.store.fail(
                task.id,
                code=error.code if error else "vendor_failed",
                message=error.message if error else "The vendor reported that the task failed.",
            )
        elif polled.status != "cancelled":
            return None
        else:
            await self.end_cancelled(task, CancelResult(CancelOutcome.CANCELLED, "the vendor had cancelled it"))
        return await self.store.get_task(task.id)

    async def billed_facts(self, task: TaskRecord) -> dict[str, Any]:
        """The task's usage facts so far (tasks stored before usage billing: from the job)."""
        if task.usage is not None:
            return dict(task.usage)
        # The job is not part of the row: read it from the store.
        job = await self.store.task_job(task.id)
        return billing.estimate_facts(job_from_json(job)) if job else {}

    async def end_cancelled(self, task: TaskRecord, result: CancelResult) -> bool:
        """Finish ``task`` as cancelled, billing exactly what the vendor will bill."""
        if result.outcome is CancelOutcome.CANCELLED:
            done = await self.store.cancel(task.id, refund=True, reason="cancelled before the vendor billed", usage={})
        elif result.outcome is CancelOutcome.CANCELLED_AFTER_START and result.usage is not None:
            facts = billing.actual_facts(await self.billed_facts(task), result.usage)
            token = await self.store.token(task.token_id)
            try:
                amount = billing.charge(self.config, task.model, facts, token.group if token else "default")
            except PriceError as exc:
                log.error("price_failed", model=task.model, error=str(exc), facts=facts)
                amount = task.charge
            done = await self.store.cancel(
                task.id, settle_to=amount, reason="cancelled: the vendor bills the work done", usage=facts
            )
        elif billing.refund_unconfirmed_cancel(self.config, task.model):
            done = await self.store.cancel(
                task.id, refund=True, reason="cancelled (refund_on_unconfirmed_cancel = full)", usage={}
            )
        else:
            done = await self.store.cancel(task.id)
        if done:
            await self.media.delete(task.id)
            log.info("task_cancelled", task_id=task.id, outcome=result.outcome.value)
        return done

    async def breaker_effect(self, channel: Channel, found: outcomes.Rule, exc: VendorError) -> None:
        """Apply what ``exc`` does to the channel's breaker, per the phase table."""
        if found.breaker is outcomes.BreakerEffect.OPEN:
            await self.dispatcher.failed(channel.name, exc.message, account=True)
        elif found.breaker is outcomes.BreakerEffect.COUNT:
            await self.dispatcher.failed(channel.name, exc.message)
        elif found.breaker is outcomes.BreakerEffect.SUCCESS:
            await self.dispatcher.succeeded(channel.name)

    # -- derived tasks (remix, extend, edit) ---------------------------------------------

    def remix_capable(self, task: TaskRecord) -> bool:
        return self.can_derive(task, "remix")

    def can_derive(self, task: TaskRecord, operation: str) -> bool:
        model = self.plugins.model(task.model, task.vendor, task.channel)
        return bool(model and model.can(operation))

    def check_remix(self, task: TaskRecord) -> None:
        self.check_derivable(task, "remix", "video_id")

    def check_derivable(self, task: TaskRecord, operation: str, param: str) -> None:
        """409 unless ``task`` is completed; 400 naming ``param`` unless its model can
        make ``operation`` from it."""
        if task.status != "completed":
            done = {"remix": "remixed", "extend": "extended", "edit": "edited"}[operation]
            raise conflict(
                f"Video '{task.id}' is {task.status}; only completed videos can be {done}.",
                "video_not_finished",
                param=param if param != "video_id" else None,
            )
        if not self.can_derive(task, operation):
            raise invalid(
                f"The model '{task.model}' does not support {operation}.", param, f"{operation}_not_supported"
            )

    async def derive(
        self,
        token: TokenRecord,
        source_id: str,
        operation: str,
        *,
        prompt: str,
        seconds: int | None = None,
        param: str = "video",
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        model: str | None = None,
    ) -> TaskRecord:
        """A new task made from the caller's completed task ``source_id`` (``operation``:
        remix, extend or edit). 404 for another token's task, 409 for an unfinished one,
        400 naming ``param`` for a model that cannot do it. It runs on the source's
        channel and is billed as a new task on what the plugin maps. ``seconds`` is the
        new clip's length (extend); remix and edit keep the source's. ``model`` (the
        client's, when it names one) is the model the new task runs on and is priced and
        charged for: one the source's channel serves that can make ``operation``."""
        source = await self.task_for(token, source_id)
        self.check_derivable(source, operation, param)
        model = self._derived_model(token, source, operation, model)
        if fingerprint is not None:
            # One key, one derived task: the same body on another source or operation differs.
            fingerprint = request_fingerprint({"operation": operation, "source": source.id, "body": fingerprint})
        stored = await self.store.task_request(source.id)
        assert stored is not None
        base = await asyncio.to_thread(request_from_json, stored)  # inline images are decoded here
        if operation == "remix":
            size = base.size
        else:
            # Extend and edit continue or change the very frames made: keep their size.
            size = Size.parse(source.size) if source.size else base.size
        unified = VideoRequest(
            model=model,
            prompt=prompt,
            seconds=seconds if seconds is not None else source.seconds,
            seconds_given=seconds is not None,
            size=size,
            metadata=base.metadata,
            remix_of=source.id if operation == "remix" else None,
            operation=operation,
            derived_from=source.id,
        )
        return await self.submit(
            token,
            unified,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            source=source,
            operation=operation,
        )

    def _derived_model(self, token: TokenRecord, source: TaskRecord, operation: str, named: str | None) -> str:
        """The model a derived task of ``source`` runs on: the one the client named, else
        the source's. 403 when the key may not use it; 400 naming ``model`` when the
        source's channel does not serve it for the key's group or it cannot make
        ``operation`` (the task runs where the source's video is)."""
        name = named if named is not None else source.model
        if token.models is not None and name not in token.models:
            # The source's channel is reused as is, so apply the key's model list here.
            raise forbidden(f"This API key may not use the model '{name}'.", "model")
        if name == source.model:
            return name
        model = self.plugins.model(name, source.vendor, source.channel)
        serving = {ch.name for ch in self.dispatcher.serving(name, token.group)} if model else set()
        if model is None or source.channel not in serving:
            raise invalid(
                f"The model '{name}' cannot work on video '{source.id}': the channel that made it does not serve"
                f" '{name}'. Name the video's own model '{source.model}', or leave model out.",
                "model",
                "model_not_found",
            )
        if not model.can(operation):
            raise invalid(f"The model '{name}' does not support {operation}.", "model", f"{operation}_not_supported")
        return name

    async def source_task(self, task: TaskRecord, media: dict[str, Path]) -> SourceTask:
        """What ``vidgate_derive`` gets of a source task: handle, result, job, media files."""
        job = await self.store.task_job(task.id)
        return SourceTask(
            id=task.id,
            handle=dict(task.handle or {}),
            result=dict(task.result or {}),
            job=job_from_json(job) if job else None,
            prompt=task.prompt,
            seconds=task.seconds,
            size=task.size,
            media=media,
        )

    async def derive_call(self, task: TaskRecord, source: TaskRecord, job: VendorJob, ctx: CallContext) -> Any:
        """Ask the plugin to start the derived ``task`` of ``source``, with the source's
        stored media as local files for the duration of the call (object storage is
        copied to temporary files; local storage hands out its own)."""
        async with contextlib.AsyncExitStack() as stack:
            media = {
                variant: await stack.enter_async_context(self.media.local_copy(source.id, variant))
                for variant in (source.media or {})
                if variant in ARTIFACTS
            }
            return await self.plugins.derive(
                ctx.channel.vendor, task.operation or "remix", await self.source_task(source, media), job, ctx
            )
