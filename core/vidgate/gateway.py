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
import hashlib
import json
import os
import secrets
import socket
import time
from pathlib import Path
from collections.abc import AsyncIterator
from typing import Any

import structlog

from . import billing, failpoints
from .auth import hash_key, key_hint, new_key
from .config import Config
from .dispatch import Dispatcher
from .errors import (
    APIError,
    ChannelUnusable,
    RequestInvalid,
    TaskFailed,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
    forbidden,
    invalid,
    not_found,
    unauthorized,
)
from .media import LocalMedia, MediaStorage, open_media
from .net import HTTP, parse_networks
from .plugins import Plugins
from .request import VideoRequest
from .store import DuplicateIdempotencyKey, InsufficientQuota, Store, TaskRecord, TokenRecord
from .vendor import CallContext, Channel, Model, VendorJob
from .wire import job_to_json, request_to_json

log = structlog.get_logger("vidgate.gateway")



def new_task_id() -> str:
    # 192 bits of randomness: unguessable, so ids leak nothing about other tasks.
    return "video_" + secrets.token_hex(24)


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class Gateway:
    """Everything one gateway process holds: config, plugins, store, media, HTTP."""

    def __init__(
        self, config: Config, plugins: Plugins, store: Store, http: HTTP, dispatcher: Dispatcher | None = None,
        media: MediaStorage | None = None,
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.store = store
        self.http = http
        self.media: MediaStorage = media if media is not None else LocalMedia(Path(config.media.path))
        self.dispatcher = dispatcher or Dispatcher(config, plugins)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.workdir = config.data_dir / "vendors"
        self.channel_state: dict[str, dict[str, Any]] = {}
        # Set when a task becomes due sooner than the worker expects (a callback).
        self.wakeup = asyncio.Event()

    @classmethod
    async def start(cls, config: Config, *, extra_plugins: dict[str, object] | None = None) -> Gateway:
        plugins = Plugins.load(enabled=config.plugins.enabled, extra=extra_plugins)
        dispatcher = Dispatcher(config, plugins)  # validates every channel before anything opens
        store = await Store.open(config.store.url)
        try:
            media = await open_media(config.media)
        except BaseException:
            await store.close()
            raise
        net = config.network
        http = HTTP(
            total_timeout=net.outbound_timeout_seconds,
            connect_timeout=net.connect_timeout_seconds,
            image_timeout=net.image_fetch_timeout_seconds,
            download_idle_timeout=net.download_idle_timeout_seconds,
            allowed_networks=parse_networks(net.allow_image_networks),
        )
        return cls(config, plugins, store, http, dispatcher, media)

    async def close(self) -> None:
        await self.plugins.shutdown()
        await self.http.close()
        await self.media.close()
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
            name=name, key_hash=hash_key(key), key_hint=key_hint(key), group=group, quota=quota, models=models,
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

    def context(self, task_id: str, channel: Channel) -> CallContext:
        vendor = self.plugins.vendors[channel.vendor]
        workdir = self.workdir / vendor.name
        callback_url = None
        if self.config.server.public_url:
            callback_url = f"{self.config.server.public_url.rstrip('/')}/v1/callbacks/{channel.name}"
        return CallContext(
            channel=channel,
            http=self.http.session,
            task_id=task_id,
            log=log.bind(task_id=task_id, vendor=channel.vendor, channel=channel.name),
            workdir=workdir,
            timeout=self.http.timeout,
            callback_url=callback_url,
            state=self.channel_state.setdefault(channel.name, {}),
            fetch_image=self.http.fetch_image,
            download=self.http.download,
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
                400, "invalid_request_error", "model", "model_not_found", retryable=False,
            )
        if token.models is not None and name not in token.models:
            raise forbidden(f"This API key may not use the model '{name}'.", "model")
        channels = self.dispatcher.serving(name, token.group)
        if not channels:
            raise forbidden(f"The model '{name}' is not available to this API key's group.", "model")
        return channels

    def _plan(self, request: VideoRequest, channel: Channel) -> tuple[Model, VendorJob]:
        model = self.plugins.model(request.model, channel.vendor)
        assert model is not None
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
    ) -> TaskRecord:
        if idempotency_key is not None:
            existing = await self.store.task_by_idempotency_key(token.id, idempotency_key)
            if existing is not None:
                return self._replay(existing, fingerprint)

        if remix_source is not None:
            channels = [self.dispatcher.channels[remix_source.channel]] if remix_source.channel in self.dispatcher.channels else []
            if not channels:
                raise APIError("The channel that made this video is no longer configured.", 409, "invalid_request_error", None, "channel_gone")
        else:
            channels = self.dispatcher.order(self._resolve_model(token, request.model))
        first = channels[0]
        model, job = self._plan(request, first)
        charge = billing.price(self.config, request.model, job, token.group)
        if token.remaining is not None and charge > token.remaining:
            raise APIError(
                "You exceeded your current quota: this task costs more than the key's remaining balance.",
                429, "insufficient_quota", None, "insufficient_quota", retryable=False,
            )
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
            request=request_to_json(request),
            prompt=request.prompt,
            seconds=job.seconds,
            size=job.size,
            resolution=job.resolution,
            job=job_to_json(job),
            charge=charge,
            remixed_from=remix_source.id if remix_source else None,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            deadline_at=now + self.deadline(first),
            next_poll_at=now + self.config.worker.lease_seconds,
            lease_owner=self.owner,
            lease_until=now + self.config.worker.lease_seconds,
        )
        try:
            await self.store.create_task(task)
        except InsufficientQuota:
            raise APIError(
                "You exceeded your current quota: this task costs more than the key's remaining balance.",
                429, "insufficient_quota", None, "insufficient_quota", retryable=False,
            ) from None
        except DuplicateIdempotencyKey:
            existing = await self.store.task_by_idempotency_key(token.id, idempotency_key or "")
            assert existing is not None
            return self._replay(existing, fingerprint)

        structlog.contextvars.bind_contextvars(task_id=task.id)
        async with self.holding_lease(task.id):
            return await self._dispatch(task, request, channels, job, remix_source, token.group)

    def _replay(self, existing: TaskRecord, fingerprint: str | None) -> TaskRecord:
        if existing.request_hash != fingerprint:
            raise APIError(
                "This Idempotency-Key was already used with a different request body.",
                409, "invalid_request_error", None, "idempotency_key_reused", retryable=False,
            )
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
                if billing.price(self.config, task.model, job, group) != task.charge:
                    await self.store.add_attempt(task.id, channel.name, "skipped", "would bill differently")
                    continue
            if not self.dispatcher.breaker_allows(channel.name):
                await self.store.add_attempt(task.id, channel.name, "skipped", "out of rotation")
                continue
            if channel.max_concurrent is not None:
                # The task's own row counts while it sits on this channel.
                others = await self.store.count_active(channel.name) - (current == channel.name)
                if others >= channel.max_concurrent:
                    await self.store.add_attempt(task.id, channel.name, "skipped", "at max_concurrent")
                    continue
            if not self.dispatcher.rate_allows(channel):
                rate_limited += 1
                await self.store.add_attempt(task.id, channel.name, "skipped", "rate_per_minute reached")
                continue
            tried += 1
            current = channel.name
            await self.store.update_task(task.id, channel=channel.name, vendor=channel.vendor, job=job_to_json(job))
            try:
                submission = await self._submit_with_retries(task, channel, job, remix_source)
            except VendorRejected as exc:
                await self.store.add_attempt(task.id, channel.name, "rejected", self._detail(exc))
                self.dispatcher.succeeded(channel.name)  # the channel works; the request is bad
                await self._abandon(task, "invalid_request", exc.message)
                raise APIError(exc.message, 400, "invalid_request_error", exc.param, "vendor_rejected", retryable=False) from None
            except TaskFailed as exc:
                await self.store.add_attempt(task.id, channel.name, "rejected", self._detail(exc))
                await self._abandon(task, exc.code, exc.message)
                raise APIError(exc.message, 400, "invalid_request_error", exc.param, exc.code, retryable=False) from None
            except VendorRateLimited as exc:
                rate_limited += 1
                last_error = exc
                await self.store.add_attempt(task.id, channel.name, "rate_limited", self._detail(exc))
                continue
            except ChannelUnusable as exc:
                last_error = exc
                self.dispatcher.failed(channel.name, exc.message, account=True)
                await self.store.add_attempt(task.id, channel.name, "channel_error", self._detail(exc))
                continue
            except VendorUnavailable as exc:
                last_error = exc
                self.dispatcher.failed(channel.name, exc.message)
                await self.store.add_attempt(task.id, channel.name, "unavailable", self._detail(exc))
                # A timeout may hide a task the vendor did create: look for it by our id
                # before sending the task anywhere else, or it would run (and bill) twice.
                found = await self._lookup_after_unclear_submit(task, channel, job)
                if found is None:
                    continue
                submission = found
            except Exception as exc:  # a plugin bug must not become a 500 or lose the task
                log.exception("plugin_submit_crashed", channel=channel.name)
                self.dispatcher.failed(channel.name, f"plugin error: {type(exc).__name__}")
                await self.store.add_attempt(task.id, channel.name, "plugin_error", f"{type(exc).__name__}: {exc}")
                last_error = VendorUnavailable(f"plugin error: {type(exc).__name__}")
                continue
            self.dispatcher.succeeded(channel.name)
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
                lease_owner=None,
                lease_until=None,
            )
            self.wakeup.set()
            log.info("task_submitted", channel=channel.name, vendor=channel.vendor, model=task.model)
            stored = await self.store.get_task(task.id)
            assert stored is not None
            return stored

        all_limited = tried == 0 and rate_limited > 0 or (rate_limited > 0 and rate_limited == tried)
        reason = last_error.message if last_error else "no channel is available"
        await self._abandon(task, "no_channel", reason)
        if all_limited:
            raise APIError(
                "Every channel serving this model is rate-limited; retry later.",
                429, "rate_limit_error", None, "rate_limit_exceeded", retryable=True,
                headers={"Retry-After": "5"},
            )
        raise APIError(
            "No channel could take the task right now; you were not charged. Retry later.",
            503, "server_error", None, "no_channel_available", retryable=True,
        )

    async def _lookup_after_unclear_submit(self, task: TaskRecord, channel: Channel, job: VendorJob) -> Any:
        ctx = self.context(task.id, channel)
        try:
            found = await self.plugins.recover(channel.vendor, job, ctx)
        except Exception as exc:  # the lookup is best effort; the submit already failed
            ctx.log.warning("lookup_after_failed_submit_failed", error=str(exc))
            return None
        if found is NotImplemented:
            return None
        if found is not None:
            ctx.log.info("submit_found_after_error", vendor_task_id=found.vendor_task_id)
            await self.store.add_attempt(task.id, channel.name, "found", found.vendor_task_id)
        return found

    async def _submit_with_retries(
        self, task: TaskRecord, channel: Channel, job: VendorJob, remix_source: TaskRecord | None
    ) -> Any:
        ctx = self.context(task.id, channel)
        retries = self.config.network.submit_retries
        for attempt in range(retries + 1):
            self.dispatcher.note_sent(channel)
            failpoints.hit("submit.before_vendor")
            try:
                if remix_source is not None:
                    assert remix_source.handle is not None
                    submission = await self.plugins.remix(channel.vendor, remix_source.handle, job, ctx)
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

    async def _abandon(self, task: TaskRecord, code: str, message: str) -> None:
        """A submit no channel accepted: refund, and hide the row from the client."""
        await self.store.finish_task(
            task.id, status="failed", refund=True, reason=f"not submitted: {code}",
            hidden=True, idempotency_key=None, error_code=code, error_message=message,
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
            raise APIError(
                f"Video '{task.id}' is still {task.status}; only completed or failed videos can be deleted.",
                409, "invalid_request_error", None, "video_not_finished", retryable=False,
            )
        await self.media.delete(task.id)
        # The row stays, hidden and stripped of media, so the ledger keeps its task and a
        # client paginating with this id as ``after`` does not lose its place.
        await self.store.update_task(task.id, only_if_active=False, hidden=True, media=None, idempotency_key=None)
        return task

    def remix_capable(self, task: TaskRecord) -> bool:
        model = self.plugins.model(task.model, task.vendor)
        return bool(model and model.supports_remix)

    def check_remix(self, task: TaskRecord) -> None:
        if task.status != "completed":
            raise APIError(
                f"Video '{task.id}' is {task.status}; only completed videos can be remixed.",
                409, "invalid_request_error", None, "video_not_finished", retryable=False,
            )
        if not self.remix_capable(task):
            raise invalid(f"The model '{task.model}' does not support remix.", "video_id", "remix_not_supported")
