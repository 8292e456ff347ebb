"""The submit engine: from a validated request to a task a vendor has accepted.

It resolves the channels that serve the model for the token, maps and prices the request,
stores the task with its charge (the lifecycle's ``create_task``), and offers it to the
channels in order (``try_channel``) until one takes it (``submitted``) or none can
(``abandon``): what each vendor error means here is the submit row of the phase table
(:mod:`vidgate.outcomes`). Idempotency-Key replays wait for and repeat the first answer.
The :class:`~vidgate.gateway.Gateway` composes it and answers clients with it.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from . import billing, failpoints, outcomes
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
    conflict,
    forbidden,
    insufficient_quota,
    invalid,
    not_found,
    rate_limited,
    request_maybe_received,
    server_error,
    unavailable,
)
from .lifecycle import TaskPhase, TaskStatus
from .plugins import VerbNotOffered
from .prices import PriceError
from .request import Size, VideoRequest
from .store import DuplicateIdempotencyKey, InsufficientQuota, TaskRecord, TokenRecord
from .vendor import CallContext, Channel, Model, Submission, VendorJob
from .wire import job_to_json, request_to_json

if TYPE_CHECKING:
    from .config import Config
    from .dispatch import Dispatcher
    from .gateway import Gateway
    from .plugins import Plugins
    from .store import Store

log = structlog.get_logger("vidgate.submitting")

#: How long an Idempotency-Key replay waits for the first request's submit to finish.
REPLAY_WAIT_SECONDS = 60.0


class LeaseLost(Exception):
    """Another process took the task over: this one's lease on it lapsed (it stalled).
    Whatever this process was about to do to the task, it must not do it."""


class LookupOutcome(enum.Enum):
    """What :meth:`SubmitEngine.look_up` learnt of a submit whose outcome was unclear."""

    FOUND = "found"  # the vendor has the task: ``Lookup.submission``
    ABSENT = "absent"  # the vendor says it never got it
    CANNOT_ASK = "cannot_ask"  # the vendor has no lookup (no ``vidgate_recover``)
    FAILED = "failed"  # the lookup itself failed: ``Lookup.error``


@attrs.frozen
class Lookup:
    """The answer of :meth:`SubmitEngine.look_up`."""

    outcome: LookupOutcome
    submission: Submission | None = None
    error: Exception | None = None


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
    return insufficient_quota("You exceeded your current quota: this task costs more than the key's remaining balance.")


def idempotency_key_in_use() -> APIError:
    """The retryable 409 while another request with the same Idempotency-Key is submitting."""
    return conflict(
        "Another request with this Idempotency-Key is being processed; retry shortly.",
        "idempotency_key_in_use",
        retryable=True,
        retry_after=1,
    )


def model_retired(model: str, vendor_said: str) -> APIError:
    """The 503 once every channel serving ``model`` answered that its vendor retired it."""
    return unavailable(
        f"The vendor retired the model '{model}' and no channel of this gateway serves it any more"
        f" (the vendor said: {vendor_said}). Choose another model.",
        "model_retired",
        retryable=False,
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
    """What an Idempotency-Key replay must match: a hash of the request body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@attrs.define
class _Tally:
    """What one dispatch saw across its channels (for the answer when none took it)."""

    tried: int = 0
    limited: int = 0  # rate-limited: skipped on its budget, or 429 after every retry
    retired: int = 0
    current: str | None = None
    last_error: VendorError | None = None


class SubmitEngine:
    """Submits tasks for a :class:`~vidgate.gateway.Gateway` (its store, dispatcher, plugins)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    # The gateway's parts, read through it (tests and embedders may swap them).
    @property
    def store(self) -> Store:
        return self.gw.store

    @property
    def dispatcher(self) -> Dispatcher:
        return self.gw.dispatcher

    @property
    def plugins(self) -> Plugins:
        return self.gw.plugins

    @property
    def config(self) -> Config:
        return self.gw.config

    def _resolve_model(self, token: TokenRecord, name: str) -> list[Channel]:
        if (said := self.dispatcher.retired_everywhere(name, token.group)) is not None:
            raise model_retired(name, said)
        if name not in self.plugins.models or not self.dispatcher.serving(name):
            raise invalid(
                f"The model '{name}' does not exist or is not served by this gateway.", "model", "model_not_found"
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
        webhook_url: str | None = None,
        source: TaskRecord | None = None,
        operation: str | None = None,
    ) -> TaskRecord:
        """Submit ``request``: resolve and order its channels, map it, price it, store the
        task with its charge, and offer it to the channels until one takes it (with an
        ``idempotency_key``, a retry replays the first answer). A derived task passes its
        completed ``source`` and ``operation``; it runs on the source's channel."""
        remix_source = source
        if idempotency_key is not None:
            existing = await self.store.task_by_idempotency_key(token.id, idempotency_key)
            if existing is not None:
                return await self._replay(existing, fingerprint)

        channels = self._channels(token, request, remix_source)
        first = channels[0]
        model, job = self._plan(request, first)
        estimate = billing.estimate_facts(job)
        charge = self._price(request.model, estimate, token)
        now = time.time()
        task = TaskRecord(
            id=new_task_id(),
            token_id=token.id,
            model=request.model,
            vendor=first.vendor,
            channel=first.name,
            status=TaskStatus.QUEUED,
            phase=TaskPhase.SUBMITTING,
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
            deadline_at=now + self.gw.deadline(first),
            next_poll_at=now + self.config.worker.lease_seconds,
            lease_owner=self.gw.owner,
            lease_until=now + self.config.worker.lease_seconds,
        )
        task, replayed = await self._store(task, request, job, token, fingerprint)
        if replayed:
            return task
        structlog.contextvars.bind_contextvars(task_id=task.id)
        async with self.gw.holding_lease(task.id):
            try:
                return await self._dispatch(task, request, channels, job, remix_source, token.group)
            except LeaseLost:
                # This process stalled past its lease and another took the task over:
                # the client gets what that one makes of it, as a replay would.
                log.warning("submit_taken_over")
                current = await self.store.get_task(task.id)
                assert current is not None
                return await self._replay(current, task.request_hash)

    def _channels(self, token: TokenRecord, request: VideoRequest, source: TaskRecord | None) -> list[Channel]:
        """The channels to offer the task to, in order: a derived task's source channel,
        or those serving the model for the token's group."""
        if source is None:
            return self.dispatcher.order(self._resolve_model(token, request.model))
        if source.channel not in self.dispatcher.channels:
            raise conflict("The channel that made this video is no longer configured.", "channel_gone")
        return [self.dispatcher.channels[source.channel]]

    def _price(self, model: str, estimate: dict[str, Any], token: TokenRecord) -> int:
        """The charge for ``estimate``; 429 beyond the token's balance, 500 when the
        operator's price expression fails (logged for them)."""
        try:
            charge = billing.charge(self.config, model, estimate, token.group)
        except PriceError as exc:
            log.error("price_failed", model=model, error=str(exc), facts=estimate)
            raise server_error(
                f"The gateway cannot price this request for '{model}'; the operator was told.", "price_error"
            ) from None
        if token.remaining is not None and charge > token.remaining:
            raise quota_exceeded()
        return charge

    async def _store(
        self, task: TaskRecord, request: VideoRequest, job: VendorJob, token: TokenRecord, fingerprint: str | None
    ) -> tuple[TaskRecord, bool]:
        """Store ``task`` with its charge: ``(the stored task, False)``, or ``(its replay,
        True)`` when another task already holds its Idempotency-Key."""
        for _ in range(3):
            try:
                await self.store.create_task(task, request=request_to_json(request), job=job_to_json(job))
                return task, False
            except InsufficientQuota:
                raise quota_exceeded() from None
            except DuplicateIdempotencyKey:
                existing = await self.store.task_by_idempotency_key(token.id, task.idempotency_key or "")
                if existing is not None:
                    return await self._replay(existing, fingerprint), True
                # The holder failed retryably meanwhile and released the key: a new attempt.
                task = attrs.evolve(task, id=new_task_id())
        raise idempotency_key_in_use()

    async def _replay(self, existing: TaskRecord, fingerprint: str | None) -> TaskRecord:
        """The answer to a retry with an Idempotency-Key already used.

        While the first request is still submitting, wait (bounded) for its outcome, so
        the retry never answers 200 for a task that then disappears. A task no vendor
        took replays the error the first request got.
        """
        if existing.request_hash != fingerprint:
            raise conflict(
                "This Idempotency-Key was already used with a different request body.", "idempotency_key_reused"
            )
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        delay = 0.01
        while existing.phase == TaskPhase.SUBMITTING and not existing.finished:
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
        """Offer the stored ``task`` to ``channels`` in order until one takes it."""
        tally = _Tally(current=task.channel)
        for channel in channels:
            job = first_job if channel is channels[0] else await self._replan(task, request, channel, group)
            if job is None:
                continue
            ticket = await self._admit(task, channel, tally)
            if ticket is None:
                continue
            try:
                tally.tried += 1
                tally.current = channel.name
                # The first channel's job and estimate were stored with the task (and the
                # lease is checked again before each vendor call, in send).
                if channel is not channels[0] and not await self.store.try_channel(
                    task.id,
                    channel=channel.name,
                    vendor=channel.vendor,
                    job=job_to_json(job),
                    usage=billing.estimate_facts(job),
                    owner=self.gw.owner,
                ):
                    raise LeaseLost(task.id)
                submission = await self._attempt(task, request, channel, job, remix_source, tally)
                if submission is None:
                    continue
                await self.dispatcher.succeeded(channel.name)
            finally:
                await self.dispatcher.end_probe(channel.name, ticket)
            return await self._accepted(task, channel, submission)
        refusal = self._refusal(task.model, group, tally)
        reason = tally.last_error.message if tally.last_error else "no channel is available"
        await self._abandon(task, "no_channel", refusal, reason)
        raise refusal

    async def _replan(self, task: TaskRecord, request: VideoRequest, channel: Channel, group: str) -> VendorJob | None:
        """The job for a channel after the first, or None (recorded) when it cannot take
        the task as priced: another channel may map a model differently, but never bill
        the client differently from what was charged."""
        try:
            _, job = self._plan(request, channel)
        except RequestInvalid as exc:
            await self.store.add_attempt(task.id, channel.name, "skipped", f"cannot map: {exc.message}")
            return None
        try:
            other = billing.price(self.config, task.model, job, group)
        except PriceError:
            other = None
        if other != task.charge:
            await self.store.add_attempt(task.id, channel.name, "skipped", "would bill differently")
            return None
        return job

    async def _admit(self, task: TaskRecord, channel: Channel, tally: _Tally) -> int | None:
        """The breaker's ticket when ``channel`` may take the task now; None (recorded)
        when it is out of rotation, at ``max_concurrent`` or out of rate budget."""
        skip = None
        if not await self.dispatcher.breaker_allows(channel.name):
            skip = "out of rotation"
        elif channel.max_concurrent is not None and (
            # The task's own row counts while it sits on this channel.
            await self.store.count_active(channel.name) - (tally.current == channel.name) >= channel.max_concurrent
        ):
            skip = "at max_concurrent"
        elif not await self.dispatcher.rate_allows(channel):
            tally.limited += 1
            skip = "rate_per_minute reached"
        if skip is None:
            # Taken last, so a skip above never holds a half-open channel's one probe.
            ticket = await self.dispatcher.admit(channel.name)
            if ticket is not None:
                return ticket
            skip = "out of rotation"  # another request took the probe meanwhile
        await self.store.add_attempt(task.id, channel.name, "skipped", skip)
        return None

    async def _attempt(
        self,
        task: TaskRecord,
        request: VideoRequest,
        channel: Channel,
        job: VendorJob,
        remix_source: TaskRecord | None,
        tally: _Tally,
    ) -> Submission | None:
        """Submit on ``channel``: the vendor's submission, or None to try the next channel.
        Raises the client's answer when the error ends the request (a 400, an unconfirmed
        submit that must not go elsewhere)."""
        try:
            submission: Submission = await self._submit_with_retries(task, channel, job, remix_source, request)
            return submission
        except LeaseLost:
            raise
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
                await self.store.add_attempt(task.id, channel.name, "plugin_error", f"{type(exc).__name__}: {exc}")
            else:
                await self.gw.breaker_effect(channel, rule, error)
                detail = outcomes.attempt_detail(error)
                await self.store.add_attempt(task.id, channel.name, _submit_outcome(error), detail)
                if isinstance(error, ModelRetired):
                    self.dispatcher.retire(channel.name, task.model, error.message)
                    tally.retired += 1
            if rule.action is outcomes.Action.REJECT_CLIENT:
                code = outcomes.failure_code(rule, error)
                answer = invalid(error.message, error.param, code)
                await self._abandon(task, "invalid_request" if isinstance(error, VendorRejected) else code, answer)
                raise answer from None
            tally.last_error = error
            if rule.action is outcomes.Action.RETRY_SAME_CHANNEL:
                tally.limited += 1  # already retried on this channel by _submit_with_retries
                return None
            maybe_received = (
                request_maybe_received(exc)
                if crashed
                else (isinstance(error, VendorUnavailable) and error.maybe_received)
            )
            if not maybe_received:
                return None
        # The vendor may have created the task: look for it by our id before sending the
        # task anywhere else, or it would run (and bill) twice.
        lookup = await self.look_up(task, channel, job, self.gw.context(task.id, channel, request))
        if lookup.outcome in (LookupOutcome.CANNOT_ASK, LookupOutcome.FAILED):
            unconfirmed = unavailable(
                "The vendor did not confirm whether it accepted the task, so it was not sent"
                " elsewhere; you were not charged. Retry later.",
                "vendor_unconfirmed",
            )
            await self._abandon(task, "vendor_unconfirmed", unconfirmed)
            raise unconfirmed
        return lookup.submission  # None: the vendor says it has no such task

    async def _accepted(self, task: TaskRecord, channel: Channel, submission: Submission) -> TaskRecord:
        """``channel``'s vendor took the task: store its handle (with the attempt, in one
        transaction) and hand it to the worker."""
        now = time.time()
        stored = await self.store.submitted(
            task.id,
            handle=submission.handle,
            vendor_task_id=submission.vendor_task_id,
            next_poll_at=now + self.gw.next_poll_delay(channel, submission.poll_after),
            deadline_at=now + self.gw.deadline(channel),
            owner=self.gw.owner,
            attempt=(channel.name, "submitted"),
        )
        if stored is None:
            # Not ours any more: another process took the task over while this one stalled.
            settled = await self.superseded(task, channel, submission, self.gw.context(task.id, channel))
            return await self._replay(settled, task.request_hash)
        self.gw.wakeup.set()
        log.info("task_submitted", channel=channel.name, vendor=channel.vendor, model=task.model)
        if stored.cancel_requested_at is not None:
            # Cancelled while the submit was in flight: the handle is known now.
            stored = await self.gw.carry_out_cancel(stored)
        return stored

    def _refusal(self, model: str, group: str, tally: _Tally) -> APIError:
        """The client's answer when no channel took the task."""
        said = self.dispatcher.retired_everywhere(model, group) if tally.retired else None
        if said is not None:
            return model_retired(model, said)
        if (tally.tried == 0 and tally.limited > 0) or (tally.limited > 0 and tally.limited == tally.tried):
            return rate_limited(
                "Every channel serving this model is rate-limited; retry later.", "rate_limit_exceeded", retry_after=5
            )
        return unavailable(
            "No channel could take the task right now; you were not charged. Retry later.", "no_channel_available"
        )

    async def look_up(self, task: TaskRecord, channel: Channel, job: VendorJob, ctx: CallContext) -> Lookup:
        """Ask ``channel``'s vendor (its ``recover`` verb, by our task id) whether it has
        ``task``, whose submit may or may not have reached it, and record the answer in
        the attempt trail. The one lookup of an unclear submit: the submit path calls it
        after an ambiguous error, the worker when it takes over an interrupted submit;
        each decides what to do with the answer."""
        try:
            found = await self.plugins.recover(channel.vendor, job, ctx)
        except VerbNotOffered:
            await self.store.add_attempt(task.id, channel.name, "unconfirmed", "the vendor cannot be asked")
            return Lookup(LookupOutcome.CANNOT_ASK)
        except Exception as exc:  # best effort: the caller decides what an unknown answer means
            ctx.log.warning("submit_lookup_failed", error=str(exc))
            await self.store.add_attempt(task.id, channel.name, "lookup_failed", f"{type(exc).__name__}")
            return Lookup(LookupOutcome.FAILED, error=exc)
        if found is None:
            return Lookup(LookupOutcome.ABSENT)
        ctx.log.info("submit_found_at_vendor", vendor_task_id=found.vendor_task_id)
        await self.store.add_attempt(task.id, channel.name, "found", found.vendor_task_id)
        return Lookup(LookupOutcome.FOUND, submission=found)

    async def send(
        self, task: TaskRecord, channel: Channel, job: VendorJob, source: TaskRecord | None, ctx: CallContext
    ) -> Submission:
        """Start ``task`` at ``channel``'s vendor (``vidgate_derive`` of ``source`` for a
        derived task, else ``vidgate_submit``) while this process holds the task's lease.

        The lease is renewed first, atomically with the check that it is still ours: a
        process that stalled past its lease finds that another took the task over (and
        may have submitted it already) and raises :class:`LeaseLost` instead of making a
        second vendor job."""
        until = time.time() + self.config.worker.lease_seconds
        if not await self.store.renew_lease(task.id, self.gw.owner, until):
            raise LeaseLost(task.id)
        if source is not None:
            derived: Submission = await self.gw.derive_call(task, source, job, ctx)
            return derived
        return await self.plugins.submit(channel.vendor, job, ctx)

    async def superseded(
        self, task: TaskRecord, channel: Channel, submission: Submission, ctx: CallContext
    ) -> TaskRecord:
        """Our vendor job ``submission`` could not be stored: another process took the task
        over while this one stalled. Wait (bounded) until the taker settles the task; if it
        runs on another vendor job, ours is a duplicate nobody polls, so it is cancelled
        (best effort) rather than left for the vendor to bill. Returns the task."""
        ctx.log.warning("submit_superseded", vendor_task_id=submission.vendor_task_id)
        await self.store.add_attempt(task.id, channel.name, "superseded", submission.vendor_task_id)
        deadline = time.monotonic() + REPLAY_WAIT_SECONDS
        current = await self.store.get_task(task.id)
        assert current is not None
        while current.phase == TaskPhase.SUBMITTING and not current.finished and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            current = await self.store.get_task(task.id)
            assert current is not None
        if current.vendor_task_id != submission.vendor_task_id:
            try:
                outcome = await self.plugins.cancel(channel.vendor, submission.handle, ctx)
                detail = outcome.message if outcome is not None else "the vendor has no cancel"
            except Exception as exc:  # best effort: the task itself is the taker's
                detail = f"cancel failed: {type(exc).__name__}: {exc}"
            ctx.log.warning("duplicate_vendor_job", vendor_task_id=submission.vendor_task_id, cancel=detail)
            await self.store.add_attempt(task.id, channel.name, "duplicate_cancelled", detail)
        return current

    async def _submit_with_retries(
        self,
        task: TaskRecord,
        channel: Channel,
        job: VendorJob,
        remix_source: TaskRecord | None,
        request: VideoRequest | None = None,
    ) -> Any:
        ctx = self.gw.context(task.id, channel, request)
        retries = self.config.network.submit_retries
        for attempt in range(retries + 1):
            await self.dispatcher.note_sent(channel)
            failpoints.hit("submit.before_vendor")
            try:
                submission = await self.send(task, channel, job, remix_source, ctx)
                failpoints.hit("submit.after_vendor")
                return submission
            except VendorRateLimited as exc:
                if attempt == retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else 0.5 * 2**attempt
                delay = min(max(delay, 0.0), self.config.network.max_retry_after_seconds)
                ctx.log.info("submit_rate_limited", attempt=attempt + 1, retry_in=delay, vendor_code=exc.vendor_code)
                await self.store.add_attempt(task.id, channel.name, "rate_limited", outcomes.attempt_detail(exc))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _abandon(self, task: TaskRecord, code: str, error: APIError, reason: str | None = None) -> None:
        """A submit no channel accepted: refund, hide the row from the client, and keep the
        answer ``error`` for replays.

        Like Stripe and OpenAI, only a final answer is kept for the Idempotency-Key: a 4xx
        replays as the same 4xx, while a retryable one (5xx, 429) releases the key, so a
        later retry with it is a new attempt. Requests already waiting on this one still
        get ``error`` (they hold the task id).
        """
        answer = {
            "message": error.message,
            "status": error.status,
            "type": error.type,
            "param": error.param,
            "code": error.code,
            "retryable": error.retryable,
            "headers": dict(error.headers),
        }
        await self.store.abandon(
            task.id, code=code, message=reason or error.message, answer=answer, release_key=bool(error.retryable)
        )
