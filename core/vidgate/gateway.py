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
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import structlog

from . import billing, failpoints, outcomes
from .auth import hash_key, key_hint, new_key
from .config import Config
from .dispatch import Dispatcher
from .errors import (
    APIError,
    ChannelUnusable,
    ModelRetired,
    Problem,
    RequestInvalid,
    TaskFailed,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
    forbidden,
    invalid,
    not_found,
    request_maybe_received,
    unauthorized,
)
from .events import LocalNotifier, TaskNotifier
from .logs import SCRUB_KEY, ScrubSecrets
from .media import LocalMedia, MediaStorage, open_media
from .net import HTTP, parse_networks, url_refusal
from .plugins import Plugins, channel_secrets
from .prices import PriceError
from .request import Size, VideoRequest
from .store import DuplicateIdempotencyKey, InsufficientQuota, Store, TaskRecord, TokenRecord
from .vendor import ARTIFACTS, CallContext, CancelOutcome, CancelResult, Channel, Model, SourceTask, VendorJob
from .wire import job_from_json, job_to_json, request_from_json, request_to_json, video_object

log = structlog.get_logger("vidgate.gateway")

#: How long an Idempotency-Key replay waits for the first request's submit to finish.
REPLAY_WAIT_SECONDS = 60.0
#: ``_lookup_after_unclear_submit``: the vendor could not be asked.
UNKNOWN = object()


def _submit_outcome(error: VendorError) -> str:
    """The attempt outcome operators see for a submit that failed with ``error``."""
    for cls, outcome in (
        (VendorRejected, "rejected"),
        (TaskFailed, "rejected"),
        (VendorRateLimited, "rate_limited"),
        (ChannelUnusable, "channel_error"),
        (ModelRetired, "model_retired"),
        (TaskNotFound, "rejected"),
    ):
        if isinstance(error, cls):
            return outcome
    return "unavailable"


def quota_exceeded() -> APIError:
    """The 429 for a task that costs more than the key's remaining balance."""
    return APIError(
        "You exceeded your current quota: this task costs more than the key's remaining balance.",
        429,
        "insufficient_quota",
        None,
        "insufficient_quota",
        retryable=False,
    )


def idempotency_key_in_use() -> APIError:
    """The retryable 409 while another request with the same Idempotency-Key is submitting."""
    return APIError(
        "Another request with this Idempotency-Key is being processed; retry shortly.",
        409,
        "invalid_request_error",
        None,
        "idempotency_key_in_use",
        retryable=True,
        headers={"Retry-After": "1"},
    )


def new_task_id() -> str:
    # 192 bits of randomness: unguessable, so ids leak nothing about other tasks.
    return "video_" + secrets.token_hex(24)


def capability_problems(request: VideoRequest, model: Model) -> list[Problem]:
    """What ``request`` asks of ``model`` beyond what the model declares it can do."""
    problems: list[Problem] = []
    if model.seconds and request.seconds is not None and request.seconds not in model.seconds:
        choices = sorted(model.seconds)
        contiguous = len(choices) > 2 and choices == list(range(choices[0], choices[-1] + 1))
        shown = f"between {choices[0]} and {choices[-1]}" if contiguous else ", ".join(map(str, choices))
        problems.append(Problem("seconds", f"{model.name} makes videos of {shown} seconds, not {request.seconds}"))
    if model.sizes and request.size is not None:
        allowed = {Size.parse(s) for s in model.sizes} - {None}
        if request.size not in allowed:
            problems.append(
                Problem("size", f"{model.name} makes the sizes {', '.join(model.sizes)}, not {request.size.text}")
            )
    if request.images and not model.image_to_video:
        problems.append(Problem(request.images[0].param, f"{model.name} cannot start from an image"))
    if not request.images and not model.text_to_video:
        problems.append(
            Problem("image", f"{model.name} only makes videos from an image; send image", "missing_required_parameter")
        )
    for ref in request.references:
        if not (model.reference_videos if ref.kind == "video" else model.reference_audio):
            problems.append(Problem(ref.param, f"{model.name} does not take {ref.kind} references"))
    return problems


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


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
        store.on_task_change = self._task_changed

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
                await asyncio.sleep(lease / 3)
                await self.store.renew_lease(task_id, self.owner, time.time() + lease)

        keeper = asyncio.create_task(renew())
        try:
            yield
        finally:
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
        token = await self.store.token_by_hash(hash_key(key.strip()))
        if token is None:
            raise unauthorized("Incorrect API key provided.")
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

    def _resolve_model(self, token: TokenRecord, name: str) -> list[Channel]:
        if name not in self.plugins.models or not self.dispatcher.serving(name):
            raise APIError(
                f"The model '{name}' does not exist or is not served by this gateway.",
                400,
                "invalid_request_error",
                "model",
                "model_not_found",
                retryable=False,
            )
        if token.models is not None and name not in token.models:
            raise forbidden(f"This API key may not use the model '{name}'.", "model")
        channels = self.dispatcher.serving(name, token.group)
        if not channels:
            raise forbidden(f"The model '{name}' is not available to this API key's group.", "model")
        return channels

    def _plan(self, request: VideoRequest, channel: Channel) -> tuple[Model, VendorJob]:
        model = self.plugins.model(request.model, channel.vendor, channel.name)
        assert model is not None
        # What the model declares is the core's to enforce, before any plugin code runs.
        problems = capability_problems(request, model)
        if problems:
            raise RequestInvalid(problems)
        problems = self.plugins.validate(channel.vendor, request, model, channel)
        if problems:
            raise RequestInvalid(problems)
        return model, self.plugins.map_request(channel.vendor, request, model, channel)

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
        """Submit ``request``. A derived task (see :meth:`derive`) passes its completed
        ``source`` and ``operation``; it runs on the source's channel. ``remix_source=X``
        is the older spelling of ``source=X, operation="remix"``."""
        if remix_source is not None:
            source, operation = remix_source, "remix"
        remix_source = source
        if webhook_url is not None:
            webhook_url = await self.check_webhook_url(webhook_url)
        if idempotency_key is not None:
            existing = await self.store.task_by_idempotency_key(token.id, idempotency_key)
            if existing is not None:
                return await self._replay(existing, fingerprint)

        if remix_source is not None:
            channels = (
                [self.dispatcher.channels[remix_source.channel]]
                if remix_source.channel in self.dispatcher.channels
                else []
            )
            if not channels:
                raise APIError(
                    "The channel that made this video is no longer configured.",
                    409,
                    "invalid_request_error",
                    None,
                    "channel_gone",
                )
        else:
            channels = self.dispatcher.order(self._resolve_model(token, request.model))
        first = channels[0]
        model, job = self._plan(request, first)
        estimate = billing.estimate_facts(job)
        try:
            charge = billing.charge(self.config, request.model, estimate, token.group)
        except PriceError as exc:
            log.error("price_failed", model=request.model, error=str(exc), facts=estimate)
            raise APIError(
                f"The gateway cannot price this request for '{request.model}'; the operator was told.",
                500,
                "server_error",
                None,
                "price_error",
                retryable=False,
            ) from None
        if token.remaining is not None and charge > token.remaining:
            raise quota_exceeded()
        now = time.time()
        task = TaskRecord(
            id=new_task_id(),
            token_id=token.id,
            model=request.model,
            vendor=first.vendor,
            channel=first.name,
            status="queued",
            phase="submitting",
            created_at=now,
            updated_at=now,
            prompt=request.prompt,
            seconds=job.seconds,
            size=job.size,
            resolution=job.resolution,
            charge=charge,
            usage=estimate,
            remixed_from=remix_source.id if remix_source and operation == "remix" else None,
            derived_from=remix_source.id if remix_source else None,
            operation=operation if remix_source else None,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            webhook_url=webhook_url or token.webhook_url,
            deadline_at=now + self.deadline(first),
            next_poll_at=now + self.config.worker.lease_seconds,
            lease_owner=self.owner,
            lease_until=now + self.config.worker.lease_seconds,
        )
        for _ in range(3):
            try:
                await self.store.create_task(task, request=request_to_json(request), job=job_to_json(job))
                break
            except InsufficientQuota:
                raise quota_exceeded() from None
            except DuplicateIdempotencyKey:
                existing = await self.store.task_by_idempotency_key(token.id, idempotency_key or "")
                if existing is not None:
                    return await self._replay(existing, fingerprint)
                # The holder failed retryably meanwhile and released the key: a new attempt.
                task = attrs.evolve(task, id=new_task_id())
        else:
            raise idempotency_key_in_use()

        structlog.contextvars.bind_contextvars(task_id=task.id)
        async with self.holding_lease(task.id):
            return await self._dispatch(task, request, channels, job, remix_source, token.group)

    async def _replay(self, existing: TaskRecord, fingerprint: str | None) -> TaskRecord:
        """The answer to a retry with an Idempotency-Key already used.

        While the first request is still submitting, wait (bounded) for its outcome, so
        the retry never answers 200 for a task that then disappears. A task no vendor
        took replays the error the first request got.
        """
        if existing.request_hash != fingerprint:
            raise APIError(
                "This Idempotency-Key was already used with a different request body.",
                409,
                "invalid_request_error",
                None,
                "idempotency_key_reused",
                retryable=False,
            )
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        delay = 0.01
        while existing.phase == "submitting" and not existing.finished:
            if time.monotonic() >= deadline:
                raise idempotency_key_in_use()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
            current = await self.store.get_task(existing.id)
            assert current is not None  # task rows are never deleted
            existing = current
        if existing.hidden:
            if existing.submit_error:
                raise APIError(**existing.submit_error)
            raise not_found("The video made for this Idempotency-Key was deleted.")
        return existing

    async def _dispatch(
        self,
        task: TaskRecord,
        request: VideoRequest,
        channels: list[Channel],
        first_job: VendorJob,
        remix_source: TaskRecord | None,
        group: str,
    ) -> TaskRecord:
        rate_limited = 0
        tried = 0
        current = task.channel
        last_error: VendorError | None = None
        for channel in channels:
            job = first_job
            if channel is not channels[0]:
                try:
                    _, job = self._plan(request, channel)
                except RequestInvalid as exc:
                    await self.store.add_attempt(task.id, channel.name, "skipped", f"cannot map: {exc.message}")
                    continue
                try:
                    other = billing.price(self.config, task.model, job, group)
                except PriceError:
                    other = None
                if other != task.charge:
                    await self.store.add_attempt(task.id, channel.name, "skipped", "would bill differently")
                    continue
            if not await self.dispatcher.breaker_allows(channel.name):
                await self.store.add_attempt(task.id, channel.name, "skipped", "out of rotation")
                continue
            if channel.max_concurrent is not None:
                # The task's own row counts while it sits on this channel.
                others = await self.store.count_active(channel.name) - (current == channel.name)
                if others >= channel.max_concurrent:
                    await self.store.add_attempt(task.id, channel.name, "skipped", "at max_concurrent")
                    continue
            if not await self.dispatcher.rate_allows(channel):
                rate_limited += 1
                await self.store.add_attempt(task.id, channel.name, "skipped", "rate_per_minute reached")
                continue
            # Taken last, so a skip above never holds a half-open channel's one probe.
            ticket = await self.dispatcher.admit(channel.name)
            if ticket is None:  # another request took the probe meanwhile
                await self.store.add_attempt(task.id, channel.name, "skipped", "out of rotation")
                continue
            try:
                tried += 1
                current = channel.name
                await self.store.update_task(
                    task.id,
                    channel=channel.name,
                    vendor=channel.vendor,
                    job=job_to_json(job),
                    usage=billing.estimate_facts(job),
                )
                maybe_received = False
                try:
                    submission = await self._submit_with_retries(task, channel, job, remix_source, request)
                except Exception as exc:
                    # What each error means at submit is the phase table's (vidgate.outcomes).
                    crashed = not isinstance(exc, VendorError) and outcomes.classify(exc) is None
                    error = outcomes.as_vendor_error(exc)
                    rule = outcomes.rule(outcomes.Phase.SUBMIT, error)
                    if crashed:
                        # A plugin bug, quite possibly triggered by this request's input: it is
                        # answered to this client but never counted against the channel, or any
                        # client could take channels out of rotation (see vidgate.dispatch).
                        log.exception("plugin_submit_crashed", channel=channel.name)
                        await self.store.add_attempt(
                            task.id, channel.name, "plugin_error", f"{type(exc).__name__}: {exc}"
                        )
                    else:
                        await self.breaker_effect(channel, rule, error)
                        await self.store.add_attempt(task.id, channel.name, _submit_outcome(error), self._detail(error))
                    if rule.action is outcomes.Action.REJECT_CLIENT:
                        code = outcomes.failure_code(rule, error)
                        answer = APIError(
                            error.message, 400, "invalid_request_error", error.param, code, retryable=False
                        )
                        await self._abandon(
                            task, "invalid_request" if isinstance(error, VendorRejected) else code, answer
                        )
                        raise answer from None
                    last_error = error
                    if rule.action is outcomes.Action.RETRY_SAME_CHANNEL:
                        rate_limited += 1  # already retried on this channel by _submit_with_retries
                        continue
                    maybe_received = isinstance(error, VendorUnavailable) and error.maybe_received
                    if crashed:
                        maybe_received = request_maybe_received(exc)
                    if not maybe_received:
                        continue
                if maybe_received:
                    # The vendor may have created the task: look for it by our id before
                    # sending the task anywhere else, or it would run (and bill) twice.
                    found = await self._lookup_after_unclear_submit(task, channel, job, request)
                    if found is None:
                        continue  # the vendor says it has no such task
                    if found is UNKNOWN:
                        unconfirmed = APIError(
                            "The vendor did not confirm whether it accepted the task, so it was not sent"
                            " elsewhere; you were not charged. Retry later.",
                            503,
                            "server_error",
                            None,
                            "vendor_unconfirmed",
                            retryable=True,
                        )
                        await self._abandon(task, "vendor_unconfirmed", unconfirmed)
                        raise unconfirmed
                    submission = found
                await self.dispatcher.succeeded(channel.name)
            finally:
                await self.dispatcher.end_probe(channel.name, ticket)
            await self.store.add_attempt(task.id, channel.name, "submitted", submission.vendor_task_id)
            delay = self.next_poll_delay(channel, submission.poll_after)
            now = time.time()
            await self.store.update_task(
                task.id,
                phase="polling",
                handle=submission.handle,
                vendor_task_id=submission.vendor_task_id,
                next_poll_at=now + delay,
                deadline_at=now + self.deadline(channel),
                submitted_at=now,
                lease_owner=None,
                lease_until=None,
            )
            self.wakeup.set()
            log.info("task_submitted", channel=channel.name, vendor=channel.vendor, model=task.model)
            stored = await self.store.get_task(task.id)
            assert stored is not None
            if stored.cancel_requested_at is not None:
                # Cancelled while the submit was in flight: the handle is known now.
                stored = await self.carry_out_cancel(stored)
            return stored

        all_limited = tried == 0 and rate_limited > 0 or (rate_limited > 0 and rate_limited == tried)
        if all_limited:
            refusal = APIError(
                "Every channel serving this model is rate-limited; retry later.",
                429,
                "rate_limit_error",
                None,
                "rate_limit_exceeded",
                retryable=True,
                headers={"Retry-After": "5"},
            )
        else:
            refusal = APIError(
                "No channel could take the task right now; you were not charged. Retry later.",
                503,
                "server_error",
                None,
                "no_channel_available",
                retryable=True,
            )
        await self._abandon(
            task, "no_channel", refusal, last_error.message if last_error else "no channel is available"
        )
        raise refusal

    async def _lookup_after_unclear_submit(
        self, task: TaskRecord, channel: Channel, job: VendorJob, request: VideoRequest | None = None
    ) -> Any:
        """The vendor's task for ``task`` (a Submission), None when the vendor says it has
        none, or :data:`UNKNOWN` when it cannot be asked (no ``recover``, or it failed)."""
        ctx = self.context(task.id, channel, request)
        try:
            found = await self.plugins.recover(channel.vendor, job, ctx)
        except Exception as exc:  # the lookup is best effort; the submit already failed
            ctx.log.warning("lookup_after_failed_submit_failed", error=str(exc))
            await self.store.add_attempt(task.id, channel.name, "lookup_failed", f"{type(exc).__name__}")
            return UNKNOWN
        if found is NotImplemented:
            await self.store.add_attempt(task.id, channel.name, "unconfirmed", "the vendor cannot be asked")
            return UNKNOWN
        if found is not None:
            ctx.log.info("submit_found_after_error", vendor_task_id=found.vendor_task_id)
            await self.store.add_attempt(task.id, channel.name, "found", found.vendor_task_id)
        return found

    async def _submit_with_retries(
        self,
        task: TaskRecord,
        channel: Channel,
        job: VendorJob,
        remix_source: TaskRecord | None,
        request: VideoRequest | None = None,
    ) -> Any:
        ctx = self.context(task.id, channel, request)
        retries = self.config.network.submit_retries
        for attempt in range(retries + 1):
            await self.dispatcher.note_sent(channel)
            failpoints.hit("submit.before_vendor")
            try:
                if remix_source is not None:
                    submission = await self.derive_call(task, remix_source, job, ctx)
                else:
                    submission = await self.plugins.submit(channel.vendor, job, ctx)
                failpoints.hit("submit.after_vendor")
                return submission
            except VendorRateLimited as exc:
                if attempt == retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else 0.5 * 2**attempt
                delay = min(max(delay, 0.0), self.config.network.max_retry_after_seconds)
                ctx.log.info("submit_rate_limited", attempt=attempt + 1, retry_in=delay, vendor_code=exc.vendor_code)
                await self.store.add_attempt(task.id, channel.name, "rate_limited", self._detail(exc))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _detail(exc: VendorError) -> str:
        parts = [exc.message]
        if exc.vendor_code is not None:
            parts.append(f"vendor_code={exc.vendor_code}")
        if exc.request_id:
            parts.append(f"request_id={exc.request_id}")
        return " ".join(parts)

    async def _abandon(self, task: TaskRecord, code: str, error: APIError, reason: str | None = None) -> None:
        """A submit no channel accepted: refund, hide the row from the client, and keep the
        answer ``error`` for replays.

        Like Stripe and OpenAI, only a final answer is kept for the Idempotency-Key: a 4xx
        replays as the same 4xx, while a retryable one (5xx, 429) releases the key, so a
        later retry with it is a new attempt. Requests already waiting on this one still
        get ``error`` (they hold the task id).
        """
        fields: dict[str, Any] = {
            "hidden": True,
            "error_code": code,
            "error_message": reason or error.message,
            "submit_error": {
                "message": error.message,
                "status": error.status,
                "type": error.type,
                "param": error.param,
                "code": error.code,
                "retryable": error.retryable,
                "headers": dict(error.headers),
            },
        }
        if error.retryable:
            fields["idempotency_key"] = None
        await self.store.finish_task(task.id, status="failed", refund=True, reason=f"not submitted: {code}", **fields)

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
            raise APIError(
                f"Video '{task.id}' is still {task.status}; only completed or failed videos can be deleted.",
                409,
                "invalid_request_error",
                None,
                "video_not_finished",
                retryable=False,
            )
        await self.media.delete(task.id)
        # The row stays, hidden and stripped of media, so the ledger keeps its task and a
        # client paginating with this id as ``after`` does not lose its place.
        await self.store.update_task(task.id, only_if_active=False, hidden=True, media=None, idempotency_key=None)
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
        if not task.finished and task.phase != "fetching":
            recorded = await self.store.request_cancel(task.id)
            assert recorded is not None
            if recorded.cancel_requested_at is not None and task.cancel_requested_at is None:
                await self.store.add_attempt(task.id, task.channel, "cancel_requested", "by the client")
            task = recorded
            if not task.finished and task.phase != "submitting" and task.handle is not None:
                task = await self.carry_out_cancel(task)
        if task.status == "cancelled":
            return task
        if task.finished or task.phase == "fetching":
            raise APIError(
                f"Video '{task.id}' is already {'completed' if task.phase == 'fetching' else task.status};"
                " it can no longer be cancelled.",
                409,
                "invalid_request_error",
                None,
                "video_finished",
                retryable=False,
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
                    result = CancelResult(CancelOutcome.REFUSED, f"cancel failed: {self._detail(exc)}")
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
            await self.store.finish_task(
                task.id, status="failed", refund=True, reason=code, error_code=code, error_message=exc.message
            )
            return await self.store.get_task(task.id)
        if polled.status == "completed":
            await self.store.update_task(
                task.id,
                phase="fetching",
                result=polled.result or {},
                status="in_progress",
                progress=99,
                next_poll_at=time.time(),
                cancel_requested_at=None,
                usage=billing.actual_facts(await self.billed_facts(task), polled.usage),
            )
            self.wakeup.set()
        elif polled.status == "failed":
            error = polled.error
            await self.store.finish_task(
                task.id,
                status="failed",
                refund=True,
                reason=error.code if error else "vendor_failed",
                error_code=error.code if error else "vendor_failed",
                error_message=error.message if error else "The vendor reported that the task failed.",
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
        fields: dict[str, Any] = {"media": None}
        if result.outcome is CancelOutcome.CANCELLED:
            done = await self.store.finish_task(
                task.id,
                status="cancelled",
                refund=True,
                reason="cancelled before the vendor billed",
                usage={},
                **fields,
            )
        elif result.outcome is CancelOutcome.CANCELLED_AFTER_START and result.usage is not None:
            facts = billing.actual_facts(await self.billed_facts(task), result.usage)
            token = await self.store.token(task.token_id)
            try:
                amount = billing.charge(self.config, task.model, facts, token.group if token else "default")
            except PriceError as exc:
                log.error("price_failed", model=task.model, error=str(exc), facts=facts)
                amount = task.charge
            done = await self.store.finish_task(
                task.id,
                status="cancelled",
                settle_to=amount,
                reason="cancelled: the vendor bills the work done",
                usage=facts,
                **fields,
            )
        elif billing.refund_unconfirmed_cancel(self.config, task.model):
            done = await self.store.finish_task(
                task.id,
                status="cancelled",
                refund=True,
                reason="cancelled (refund_on_unconfirmed_cancel = full)",
                usage={},
                **fields,
            )
        else:
            done = await self.store.finish_task(task.id, status="cancelled", **fields)
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
            raise APIError(
                f"Video '{task.id}' is {task.status}; only completed videos can be {done}.",
                409,
                "invalid_request_error",
                param if param != "video_id" else None,
                "video_not_finished",
                retryable=False,
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
    ) -> TaskRecord:
        """A new task made from the caller's completed task ``source_id`` (``operation``:
        remix, extend or edit). 404 for another token's task, 409 for an unfinished one,
        400 naming ``param`` for a model that cannot do it. It runs on the source's
        channel and is billed as a new task on what the plugin maps. ``seconds`` is the
        new clip's length (extend); remix and edit keep the source's."""
        source = await self.task_for(token, source_id)
        if token.models is not None and source.model not in token.models:
            # The source's channel is reused as is, so apply the key's model list here.
            raise forbidden(f"This API key may not use the model '{source.model}'.", "model")
        self.check_derivable(source, operation, param)
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
            model=source.model,
            prompt=prompt,
            seconds=seconds if seconds is not None else source.seconds,
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
