"""The poll worker: drives every unfinished task to a terminal state.

Each tick it leases due tasks (a lease is a row-level claim with an expiry, so two
workers -- or two replicas on PostgreSQL -- never work one task at once, and a crashed
worker's tasks come back when its leases expire), and for each:

* ``submitting`` (its submit was interrupted): ask the plugin to find it at the vendor by
  our id; resubmit if the vendor never got it; fail and refund it if the vendor cannot
  tell (never risk a duplicate);
* ``polling``: call the plugin's poll; due tasks of a channel whose vendor has a batch
  poll (``vidgate_poll_many``) are polled together in one call, and a task the batch did
  not answer is polled on its own. Errors are handled per :mod:`vidgate.outcomes`:
  transient ones back off exponentially, and ``worker.max_poll_failures`` consecutive
  failed polls (or unknown status words) fail the task ``poll_failures_exceeded``;
* ``fetching``: copy the result into media storage, make a thumbnail, complete.

Any task past its deadline is failed with ``deadline_exceeded`` and refunded: the deadline
stays the outer bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import structlog

from . import billing, failpoints
from .errors import ModelRetired, TaskFailed, VendorError, VendorRateLimited
from .gateway import Gateway
from .lifecycle import TaskPhase
from .media import temp_dir
from .outcomes import UNKNOWN_STATUS, Action, Phase, as_vendor_error, failure_code, rule
from .prices import PriceError
from .store import TaskRecord
from .submitting import LeaseLost, LookupOutcome
from .thumbnail import THUMBNAIL_TYPE, make_thumbnail
from .vendor import (
    ARTIFACTS,
    PUBLIC_STATUSES,
    CallContext,
    CancelOutcome,
    CancelResult,
    Channel,
    MediaSource,
    PollResult,
)
from .wire import job_from_json, request_from_json

log = structlog.get_logger("vidgate.worker")
# How often expired media is looked for; cheap (an indexed query), so once a minute.
SWEEP_SECONDS = 60.0


class Worker:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.cfg = gateway.config.worker
        # Two pools: ``_running`` (at most ``concurrency``) holds jobs that poll or submit;
        # a job that starts copying a result moves to ``_fetching`` (at most
        # ``fetch_concurrency``), so slow downloads never starve the polling of others.
        self._running: set[asyncio.Task[None]] = set()
        self._fetching: set[asyncio.Task[None]] = set()
        self._fetch_slots = asyncio.Semaphore(self.cfg.fetch_concurrency)
        self._rng = random.Random()
        # Tasks a batch poll did not answer: polled on their own when next leased.
        self._single: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("worker_started", owner=self.gw.owner)
        from .webhooks import WebhookDelivery

        delivery = WebhookDelivery(self.gw)
        delivery.wakeup = self.gw.webhook_wakeup
        hooks = asyncio.create_task(delivery.run(stop, self.cfg.tick_seconds))
        next_sweep = 0.0
        while not stop.is_set():
            try:
                busy = await self.tick()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    await self.sweep_expired_media()
            except Exception:
                log.exception("worker_tick_failed")
                busy = False
            if busy:
                continue
            self.gw.wakeup.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.gw.wakeup.wait())]
            await asyncio.wait(waiters, timeout=self.cfg.tick_seconds, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        if self._running or self._fetching:
            await asyncio.wait(self._running | self._fetching, timeout=10)
        await hooks
        log.info("worker_stopped")

    async def tick(self) -> bool:
        """Lease and start work on due tasks; True if the lease was full (more may wait)."""
        free = self.cfg.concurrency - len(self._running)
        if free <= 0:
            await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            return True
        now = time.time()
        tasks = await self.gw.store.lease_due(
            self.gw.owner,
            now=now,
            limit=free,
            lease_seconds=self.cfg.lease_seconds,
            submit_grace=self.cfg.takeover_grace(self.gw.config.network),
        )
        batches: dict[str, list[TaskRecord]] = {}
        for task in tasks:
            if self._batchable(task, now):
                batches.setdefault(task.channel, []).append(task)
            else:
                self._single.discard(task.id)
                self._start(self.process(task))
        for name, group in batches.items():
            channel = self.gw.dispatcher.channels[name]
            size = self.gw.plugins.vendors[channel.vendor].poll_batch_size
            if len(group) < size:
                # One call carries up to ``size`` tasks: fill it with the channel's other
                # due (or nearly due) tasks rather than make another call for them soon.
                more = await self.gw.store.lease_batch(
                    self.gw.owner,
                    name,
                    now=now,
                    due_by=now + self.gw.poll_interval(channel) / 2,
                    limit=size - len(group),
                    lease_seconds=self.cfg.lease_seconds,
                )
                for task in more:
                    if self._batchable(task, now):
                        group.append(task)
                    else:
                        self._single.discard(task.id)
                        self._start(self.process(task))
            for i in range(0, len(group), size):
                self._start(self._poll_batch(channel, group[i : i + size]))
        return len(tasks) == free

    def _start(self, work: Any) -> None:
        job = asyncio.create_task(work)
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    def _batchable(self, task: TaskRecord, now: float) -> bool:
        """A task the batch poll of its channel may carry (everything else, including a
        task past its deadline or with a cancel to carry out, goes through ``process``)."""
        if task.phase != TaskPhase.POLLING or task.cancel_requested_at is not None or task.handle is None:
            return False
        if task.vendor_task_id is None or task.id in self._single:
            return False
        if task.deadline_at is not None and now > task.deadline_at:
            return False
        channel = self.gw.dispatcher.channels.get(task.channel)
        vendor = self.gw.plugins.vendors.get(task.vendor)
        return (
            channel is not None and vendor is not None and channel.vendor == vendor.name and vendor.poll_batch_size > 1
        )

    async def sweep_expired_media(self) -> int:
        """Delete stored videos past their ``expires_at``; the task itself stays."""
        expired = await self.gw.store.expired_media(time.time())
        for task_id in expired:
            await self.gw.media.delete(task_id)
            await self.gw.store.media_deleted(task_id)
            log.info("media_expired", task_id=task_id)
        return len(expired)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Process due tasks until none is due (for tests and ``vidgate worker --once``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            await self.tick()
            if self._running or self._fetching:
                await asyncio.wait(
                    self._running | self._fetching,
                    timeout=max(0.0, end - time.monotonic()),
                )
            else:
                return

    # -- one task ------------------------------------------------------------------------

    async def process(self, task: TaskRecord, polled: PollResult | None = None) -> None:
        """Work on one leased task; with ``polled`` (a batch poll's answer for it), apply
        that answer instead of polling."""
        with structlog.contextvars.bound_contextvars(task_id=task.id):
            try:
                async with self.gw.holding_lease(task.id):
                    if polled is None:
                        await self._process(task)
                    else:
                        channel = self.gw.dispatcher.channels[task.channel]
                        await self._apply(task, channel, self.gw.context(task.id, channel), polled)
            except Exception:
                # A bug must not wedge the task: back off and try again later.
                log.exception("task_processing_crashed", phase=task.phase)
                await self._backoff(task, "internal error")

    async def _poll_batch(self, channel: Channel, tasks: list[TaskRecord]) -> None:
        """Poll ``tasks`` (all on ``channel``) in one ``vidgate_poll_many`` call, then apply
        each answer as its own job; tasks left unanswered are polled on their own next."""
        answers: dict[str, PollResult] | None = None
        try:
            async with contextlib.AsyncExitStack() as leases:
                for task in tasks:
                    await leases.enter_async_context(self.gw.holding_lease(task.id))
                ctx = self.gw.context("", channel)
                handles = {task.vendor_task_id: task.handle or {} for task in tasks if task.vendor_task_id}
                try:
                    answers = await self.gw.plugins.poll_many(channel.vendor, handles, ctx)
                except Exception as exc:
                    error = as_vendor_error(exc)
                    if not isinstance(exc, VendorError):
                        log.warning("batch_poll_crashed", channel=channel.name, error=f"{type(exc).__name__}: {exc}")
                    await self.gw.breaker_effect(channel, rule(Phase.POLL, error), error)
                    log.warning("batch_poll_failed", channel=channel.name, tasks=len(tasks), error=error.message)
                else:
                    if answers is None:
                        log.error("batch_poll_missing", channel=channel.name, vendor=channel.vendor)
                    failpoints.hit("poll.after_vendor")
        finally:
            answers = answers or {}
            unanswered = [task for task in tasks if task.vendor_task_id not in answers]
            for task in unanswered:
                self._single.add(task.id)
                await self._release(task, next_poll_at=time.time())
            if unanswered:
                log.info("batch_poll_fallback", channel=channel.name, tasks=len(unanswered))
                self.gw.wakeup.set()
            for task in tasks:
                if task.vendor_task_id in answers:
                    self._start(self.process(task, answers[task.vendor_task_id]))

    async def _process(self, task: TaskRecord) -> None:
        now = time.time()
        # The deadline bounds the vendor's work. Once the vendor has finished, copying the
        # result is bounded by fetch_attempts instead: a finished video is not thrown away.
        if task.deadline_at is not None and now > task.deadline_at and task.phase != TaskPhase.FETCHING:
            await self._fail(task, "deadline_exceeded", "The vendor did not finish the task in time.")
            return
        channel = self.gw.dispatcher.channels.get(task.channel)
        if channel is None or task.vendor not in self.gw.plugins.vendors:
            # The channel was removed from the config or its plugin failed to load. Keep
            # the task until its deadline: the operator may restore the channel.
            log.warning("task_channel_unavailable", channel=task.channel, vendor=task.vendor)
            await self._release(task, next_poll_at=now + 30)
            return
        ctx = self.gw.context(task.id, channel)
        if task.cancel_requested_at is not None and task.phase == TaskPhase.POLLING:
            # The API that recorded the cancel is asking the vendor right now, most likely:
            # step in (for an API that died mid-cancel) only after the takeover grace, so
            # the vendor is not asked twice.
            handoff = task.cancel_requested_at + self.cfg.takeover_grace(self.gw.config.network)
            if now < handoff:
                await self._release(task, next_poll_at=handoff)
                return
            await self.gw.carry_out_cancel(task)
        elif task.phase == TaskPhase.SUBMITTING:
            await self._recover(task, channel, ctx)
        elif task.phase == TaskPhase.POLLING:
            await self._poll(task, channel, ctx)
        elif task.phase == TaskPhase.FETCHING:
            await self._fetch(task, channel, ctx)
        else:
            log.error("task_in_unknown_phase", phase=task.phase)
            await self._release(task, next_poll_at=now + 60)

    async def _give_up_interrupted_submit(self, task: TaskRecord, channel: Channel) -> None:
        """A submit cut short by a restart, at a vendor that cannot be asked whether it
        received it: refund rather than risk running (and billing) it twice."""
        if task.cancel_requested_at is not None:
            await self.gw.store.add_attempt(task.id, channel.name, "cancel_cancelled", "never confirmed by the vendor")
            await self.gw.store.cancel(task.id, refund=True, reason="cancelled during an interrupted submit", usage={})
            return
        await self._fail(
            task,
            "submit_interrupted",
            "The gateway restarted before the vendor confirmed this task; it was refunded. Please submit again.",
        )

    async def _recover(self, task: TaskRecord, channel: Channel, ctx: CallContext) -> None:
        """Take over a submit that was cut short: the vendor's task if the submit engine's
        lookup finds it, a new submit if the vendor says it never got it; never a second
        task when the vendor cannot tell."""
        stored = await self.gw.store.task_job(task.id)
        assert stored is not None
        job = job_from_json(stored)
        # A job may refer to the request's images by index instead of holding them again.
        if request_json := await self.gw.store.task_request(task.id):
            ctx.request = await asyncio.to_thread(request_from_json, request_json)
        try:
            lookup = await self.gw.submitter.look_up(task, channel, job, ctx)
            if lookup.outcome is LookupOutcome.CANNOT_ASK:
                await self._give_up_interrupted_submit(task, channel)
                return
            if lookup.outcome is LookupOutcome.FAILED:
                assert lookup.error is not None
                raise lookup.error
            submission = lookup.submission
            if submission is None:
                log.info("task_resubmitting", channel=channel.name)
                source = await self.gw.store.get_task(task.derived_from) if task.derived_from else None
                submission = await self.gw.submitter.send(task, channel, job, source, ctx)
        except LeaseLost:
            log.warning("recovery_taken_over")  # this worker stalled; another has the task
            return
        except TaskFailed as exc:
            await self._fail(task, exc.code, exc.message)
            return
        except VendorError as exc:
            await self._backoff(task, exc.message, exc)
            return
        await self.gw.store.add_attempt(task.id, channel.name, "recovered", submission.vendor_task_id)
        delay = self.gw.next_poll_delay(channel, submission.poll_after)
        if not await self.gw.store.submitted(
            task.id,
            handle=submission.handle,
            vendor_task_id=submission.vendor_task_id,
            next_poll_at=time.time() + delay,
            owner=self.gw.owner,
        ):
            await self.gw.submitter.superseded(task, channel, submission, ctx)
            return
        log.info("task_recovered", vendor_task_id=submission.vendor_task_id)
        if task.cancel_requested_at is not None:
            recovered = await self.gw.store.get_task(task.id)
            if recovered is not None and not recovered.finished:
                await self.gw.carry_out_cancel(recovered)

    async def _poll(self, task: TaskRecord, channel: Channel, ctx: CallContext) -> None:
        assert task.handle is not None
        try:
            result = await self.gw.plugins.poll(channel.vendor, task.handle, ctx)
        except Exception as exc:
            if not isinstance(exc, VendorError):
                log.warning("plugin_poll_crashed", error=f"{type(exc).__name__}: {exc}")
            await self._poll_failed(task, channel, as_vendor_error(exc))
            return
        failpoints.hit("poll.after_vendor")
        if not isinstance(result, PollResult):
            await self._strike(task, f"plugin returned {type(result).__name__} from poll")
            return
        await self._apply(task, channel, ctx, result)

    async def _poll_failed(self, task: TaskRecord, channel: Channel, exc: VendorError) -> None:
        """A poll raised ``exc``: do what the phase table says."""
        found = rule(Phase.POLL, exc)
        await self.gw.breaker_effect(channel, found, exc)
        if found.action is Action.FAIL_AFTER_GRACE:
            since = time.time() - (task.submitted_at or task.created_at)
            if since >= self.cfg.not_found_grace_seconds:
                await self._fail(task, failure_code(found, exc), f"The vendor no longer knows this task: {exc.message}")
                return
            log.info("vendor_task_not_found_yet", seconds_since_submit=round(since, 1))
        elif found.action is Action.FAIL_TASK:
            if isinstance(exc, ModelRetired):
                self.gw.dispatcher.retire(channel.name, task.model, exc.message)
            await self._fail(task, failure_code(found, exc), exc.message)
            return
        if found.strike:
            await self._strike(task, exc.message, exc)
        else:
            await self._backoff(task, exc.message, exc, strike=False)

    async def _strike(
        self,
        task: TaskRecord,
        reason: str,
        exc: VendorError | None = None,
        *,
        next_poll_at: float | None = None,
        **fields: Any,
    ) -> None:
        """Count a failed poll; the ``max_poll_failures``-th in a row fails the task."""
        if task.poll_failures + 1 >= self.cfg.max_poll_failures:
            await self._fail(
                task,
                "poll_failures_exceeded",
                f"The vendor's status could not be read {self.cfg.max_poll_failures} times in a row (last: {reason}).",
                **fields,
            )
            return
        if next_poll_at is not None:
            log.warning("task_poll_failed", error=reason, failures=task.poll_failures + 1)
            await self.gw.store.retry_later(
                task.id, self.gw.owner, next_poll_at=next_poll_at, poll_failures=task.poll_failures + 1, **fields
            )
            return
        await self._backoff(task, reason, exc, **fields)

    async def _apply(self, task: TaskRecord, channel: Channel, ctx: CallContext, result: PollResult) -> None:
        next_poll = time.time() + self.gw.next_poll_delay(channel, result.poll_after)
        if result.channel_unusable:
            log.warning("channel_unusable_reported", channel=channel.name, reason=result.channel_unusable)
            await self.gw.dispatcher.failed(channel.name, result.channel_unusable, account=True)
        if result.status not in PUBLIC_STATUSES:
            word = result.vendor_status or result.status
            log.warning("unknown_vendor_status", vendor_status=word)
            assert UNKNOWN_STATUS.strike
            await self._strike(
                task, f"unknown vendor status {word!r}", next_poll_at=next_poll, vendor_status=result.vendor_status
            )
            return
        if result.status == "failed":
            error = result.error
            await self._fail(
                task,
                error.code if error else "vendor_failed",
                error.message if error else "The vendor reported that the task failed.",
                vendor_status=result.vendor_status,
            )
            return
        if result.status == "cancelled":
            # Cancelled at the vendor (its console, another client): nothing more to bill.
            await self.gw.store.add_attempt(task.id, channel.name, "cancel_cancelled", "reported by the vendor")
            await self.gw.end_cancelled(task, CancelResult(CancelOutcome.CANCELLED, "reported by the vendor"))
            return
        if result.status == "completed":
            usage = billing.actual_facts(await self.gw.billed_facts(task), result.usage)
            updated = await self.gw.store.result_ready(
                task.id, result=result.result or {}, usage=usage, vendor_status=result.vendor_status
            )
            if updated:
                task.phase, task.result, task.usage = TaskPhase.FETCHING, result.result or {}, usage
                await self._fetch(task, channel, ctx)
            return
        progress = task.progress if result.progress is None else max(task.progress, min(int(result.progress), 99))
        status = result.status if not (task.status == "in_progress" and result.status == "queued") else task.status
        await self.gw.store.progressed(
            task.id,
            self.gw.owner,
            # Unchanged (most polls): a plain update, batched with the worker's others.
            status=None if status == task.status else status,
            progress=progress,
            vendor_status=result.vendor_status,
            next_poll_at=next_poll,
        )

    async def _fetch(self, task: TaskRecord, channel: Channel, ctx: CallContext) -> None:
        job = asyncio.current_task()
        if job is not None and job in self._running:
            self._running.discard(job)
            self._fetching.add(job)
            job.add_done_callback(self._fetching.discard)
        if self._fetch_slots.locked():
            # Every download slot is busy: come back soon rather than wait holding the lease.
            await self._release(task, next_poll_at=time.time() + 1.0)
            return
        async with self._fetch_slots:
            await self._fetch_result(task, channel, ctx)

    async def _fetch_result(self, task: TaskRecord, channel: Channel, ctx: CallContext) -> None:
        assert task.handle is not None
        media = self.gw.media
        try:
            source = await self.gw.plugins.fetch_result(channel.vendor, task.handle, task.result or {}, "video", ctx)
            if source is None:
                raise TaskFailed("The vendor reported success but gave no video.", code="result_unavailable")
            video = await media.put(task.id, "video", source.chunks, source.content_type)
            if video.size == 0:
                raise TaskFailed("The vendor's video was empty.", code="result_unavailable")
        except Exception as exc:
            # The bytes stream outside the plugin call, so raw errors can surface here too.
            if not isinstance(exc, VendorError):
                log.warning("result_download_crashed", error=f"{type(exc).__name__}: {exc}")
            error = as_vendor_error(exc)
            found = rule(Phase.FETCH, error)
            await self.gw.breaker_effect(channel, found, error)
            if found.action is Action.FAIL_TASK:
                await self._fail(task, failure_code(found, error), error.message)
                return
            failures = task.fetch_failures + (1 if found.strike else 0)
            if failures >= self.gw.config.worker.fetch_attempts:
                await self._fail(task, "result_unavailable", f"Could not download the vendor's result: {error.message}")
                return
            task.fetch_failures = failures
            await self._backoff(task, error.message, error, strike=False, attempt=failures, fetch_failures=failures)
            return
        failpoints.hit("fetch.after_download")
        stored: dict[str, Any] = {"video": {"size": video.size, "content_type": video.content_type}}
        thumb = await self._thumbnail(task, channel, ctx)
        if thumb is not None:
            stored["thumbnail"] = thumb
        # Beyond video and thumbnail, only the variants the completion lists are asked
        # for: a plugin written before them may answer any variant with its video.
        listed = (task.result or {}).get("artifacts")
        for variant in ARTIFACTS:
            if (
                variant not in stored
                and isinstance(listed, list)
                and variant in listed
                and (extra := await self._artifact(task, channel, ctx, variant)) is not None
            ):
                stored[variant] = extra
        now = time.time()
        finished = await self.gw.store.complete(
            task.id,
            media=stored,
            expires_at=now + self.gw.config.media.retention_hours * 3600,
            settle_to=await self._actual_charge(task),
        )
        if finished:
            log.info("task_completed", bytes=video.size)
        else:
            latest = await self.gw.store.get_task(task.id)
            if latest is not None and latest.status != "completed":
                await media.delete(task.id)  # cancelled meanwhile: a cancelled task has no media

    async def _actual_charge(self, task: TaskRecord) -> int:
        """The charge for the usage the vendor reported (the estimate if it cannot be priced)."""
        token = await self.gw.store.token(task.token_id)
        try:
            return billing.charge(
                self.gw.config, task.model, await self.gw.billed_facts(task), token.group if token else "default"
            )
        except PriceError as exc:
            log.error("price_failed", model=task.model, error=str(exc), facts=task.usage)
            return task.charge

    async def _artifact(
        self, task: TaskRecord, channel: Channel, ctx: CallContext, variant: str
    ) -> dict[str, Any] | None:
        """Copy one more artifact (last frame, spritesheet, audio) if the vendor has it.
        Only the video is required: a failure here leaves the variant out."""
        try:
            source = await self.gw.plugins.fetch_result(
                channel.vendor, task.handle or {}, task.result or {}, variant, ctx
            )
            if source is None:
                return None
            stored = await self.gw.media.put(task.id, variant, source.chunks, source.content_type)
        except Exception as exc:
            log.warning("artifact_failed", variant=variant, error=str(exc))
            return None
        return {"size": stored.size, "content_type": stored.content_type}

    async def _thumbnail(self, task: TaskRecord, channel: Channel, ctx: CallContext) -> dict[str, Any] | None:
        media = self.gw.media
        try:
            source: MediaSource | None = await self.gw.plugins.fetch_result(
                channel.vendor, task.handle or {}, task.result or {}, "thumbnail", ctx
            )
            if source is not None:
                thumb = await media.put(task.id, "thumbnail", source.chunks, source.content_type)
                return {"size": thumb.size, "content_type": thumb.content_type}
        except Exception as exc:  # the video is what matters; a thumbnail is a nicety
            log.warning("vendor_thumbnail_failed", error=str(exc))
        try:
            # Object storage: the video comes back to a temp file (the thumbnail needs its
            # index, often at the end); local storage hands out its own file.
            async with media.local_copy(task.id, "video") as video_path, temp_dir() as tmp:
                target = tmp / "thumbnail"
                await asyncio.to_thread(make_thumbnail, video_path, target)
                thumb = await media.put_file(task.id, "thumbnail", target, THUMBNAIL_TYPE)
            return {"size": thumb.size, "content_type": THUMBNAIL_TYPE}
        except Exception as exc:
            log.warning("thumbnail_failed", error=str(exc))
            return None

    # -- outcomes ------------------------------------------------------------------------

    async def _fail(self, task: TaskRecord, code: str, message: str, **fields: Any) -> None:
        finished = await self.gw.store.fail(task.id, code=code, message=message, **fields)
        if finished:
            log.info("task_failed", error_code=code, error=message)

    async def _backoff(
        self,
        task: TaskRecord,
        reason: str,
        exc: VendorError | None = None,
        *,
        strike: bool = True,
        attempt: int | None = None,
        **fields: Any,
    ) -> None:
        """Try again after an exponential, jittered delay. ``strike`` counts the failure in
        ``poll_failures`` (callers in the poll phase go through :meth:`_strike`, which
        enforces the limit); ``attempt`` sets the exponent otherwise."""
        failures = task.poll_failures + 1 if strike else task.poll_failures
        exponent = attempt if attempt is not None else task.poll_failures + 1
        delay = min(self.cfg.max_backoff_seconds, 1.0 * 2 ** min(exponent, 10))
        if isinstance(exc, VendorRateLimited) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.cfg.max_backoff_seconds))
        delay *= 0.75 + self._rng.random() / 2  # jitter, so retries do not stampede
        log.warning(
            "task_transient_error",
            phase=task.phase,
            error=reason,
            vendor_code=getattr(exc, "vendor_code", None),
            request_id=getattr(exc, "request_id", None),
            failures=failures,
            retry_in=round(delay, 2),
        )
        await self.gw.store.retry_later(
            task.id, self.gw.owner, next_poll_at=time.time() + delay, poll_failures=failures, **fields
        )

    async def _release(self, task: TaskRecord, *, next_poll_at: float) -> None:
        await self.gw.store.postpone(task.id, self.gw.owner, next_poll_at=next_poll_at)


async def poll_now(gateway: Gateway, channel_name: str, vendor_task_id: str) -> bool:
    """Make a task due at once (a vendor callback hinted that it changed)."""
    task = await gateway.store.task_by_vendor_id(channel_name, vendor_task_id)
    if task is None or task.finished:
        return False
    await gateway.store.make_due(task.id)
    gateway.wake_worker()
    return True
