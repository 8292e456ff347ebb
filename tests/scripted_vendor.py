"""An in-process vendor whose behaviour each test scripts (a real plugin, no mocks)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

from vidgate import (
    CallContext,
    CancelOutcome,
    CancelResult,
    Channel,
    MediaSource,
    Model,
    PollResult,
    Problem,
    Submission,
    TaskError,
    VendorJob,
    VendorPlugin,
    VendorUnavailable,
    VideoRequest,
)

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


class Scripted(VendorPlugin):
    """Submits always succeed unless ``submit_errors`` holds exceptions (per channel);
    each task completes after ``polls_to_finish`` polls; ``poll_script`` can inject
    results or exceptions. ``actual_usage`` is the usage reported on completion;
    ``cancel_answer`` what ``cancel`` answers; ``submit_gate``, when set, holds every
    submit until it is set (``submit_entered`` tells a test a submit is waiting)."""

    name = "scripted"
    models = (
        Model("scripted-1", vendor_model="s1", seconds=(4, 8), default_seconds=4, supports_remix=True),
        Model("scripted-2", vendor_model="s2"),
    )
    poll_interval = 0.05

    def __init__(self) -> None:
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.submit_errors: dict[str, deque[Exception]] = {}
        self.poll_script: deque[Any] = deque()
        self.polls_to_finish = 2
        self.polls: dict[str, int] = {}
        self.fail_with: TaskError | None = None
        self._ids = itertools.count(1)
        self.known: dict[str, str] = {}  # our task id -> vendor id (for recover)
        self.lose_answers = 0  # creates that succeed at the vendor but answer with a timeout
        self.actual_usage: dict[str, Any] | None = None
        self.cancel_answer: CancelResult | Exception = CancelResult(CancelOutcome.CANCELLED, "stopped")
        self.cancels: list[dict[str, Any]] = []
        self.cancelled: set[str] = set()
        self.submit_gate: asyncio.Event | None = None
        self.submit_entered = asyncio.Event()
        self.cancel_gate: asyncio.Event | None = None  # when set, holds every cancel
        self.poll_after: float | None = 0.01  # the hint an in-progress poll answers
        self.status_calls = 0  # upstream status calls: one per poll, one per batch poll
        self.single_polls = 0

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        problems = []
        if request.seconds is not None and model.seconds and request.seconds not in model.seconds:
            problems.append(Problem("seconds", f"must be one of {model.seconds}"))
        if "model" in request.metadata:
            problems.append(Problem("metadata.model", "cannot change the billed model"))
        return problems

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        seconds = request.seconds or model.default_seconds or 5
        return VendorJob(
            payload={"model": channel.vendor_model(model), "prompt": request.prompt, "seconds": seconds},
            seconds=seconds,
            size=request.size.text if request.size and request.size.width else "1280x720",
            resolution="720p",
        )

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        self.submit_entered.set()
        if self.submit_gate is not None:
            await self.submit_gate.wait()
        errors = self.submit_errors.get(ctx.channel.name)
        if errors:
            raise errors.popleft()
        vid = f"s-{next(self._ids)}"
        self.submitted.append((ctx.channel.name, job.payload))
        self.known[ctx.task_id] = vid
        if self.lose_answers:
            self.lose_answers -= 1
            raise VendorUnavailable("read timeout")
        return Submission(handle={"id": vid}, vendor_task_id=vid, poll_after=0.01)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        self.status_calls += 1
        self.single_polls += 1
        if self.poll_script:
            step = self.poll_script.popleft()
            if isinstance(step, Exception):
                raise step
            return step
        return self._status(handle["id"])

    def _status(self, vid: str) -> PollResult:
        """What the vendor knows about task ``vid`` (one status observation)."""
        if vid in self.cancelled:
            return PollResult(status="cancelled")
        n = self.polls[vid] = self.polls.get(vid, 0) + 1
        if n < self.polls_to_finish:
            return PollResult(
                status="in_progress", progress=n * 100 // self.polls_to_finish, poll_after=self.poll_after
            )
        if self.fail_with is not None:
            return PollResult(status="failed", error=self.fail_with)
        return PollResult(status="completed", result={"id": vid}, usage=self.actual_usage)

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        self.cancels.append(handle)
        if self.cancel_gate is not None:
            await self.cancel_gate.wait()
        if isinstance(self.cancel_answer, Exception):
            raise self.cancel_answer
        if self.cancel_answer.outcome in (CancelOutcome.CANCELLED, CancelOutcome.CANCELLED_AFTER_START):
            self.cancelled.add(handle["id"])
        return self.cancel_answer

    async def fetch_result(self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext):
        if variant == "thumbnail":
            return None
        return MediaSource.from_bytes(VIDEO)

    def parse_callback(self, body: bytes, headers: Any) -> str | None:
        """A callback body is ``{"id": VENDOR_TASK_ID}``."""
        return json.loads(body).get("id")

    async def recover(self, job: VendorJob, ctx: CallContext) -> Submission | None:
        vid = self.known.get(ctx.task_id)
        return Submission(handle={"id": vid}, vendor_task_id=vid) if vid else None

    async def remix(self, handle: dict[str, Any], job: VendorJob, ctx: CallContext) -> Submission:
        vid = f"remix-of-{handle['id']}"
        self.submitted.append((ctx.channel.name, {"remix": handle["id"], **job.payload}))
        return Submission(handle={"id": vid}, vendor_task_id=vid, poll_after=0.01)


class BatchScripted(Scripted):
    """``Scripted`` with a batch status verb (a list endpoint filtered by ids):
    ``batch_sizes`` records each call's size, ``batch_script`` injects errors for whole
    calls, and ids in ``batch_omit`` are left out of every answer."""

    poll_batch_size = 50

    def __init__(self) -> None:
        super().__init__()
        self.poll_after = None  # a list answer carries no per-task hint
        self.batch_sizes: list[int] = []
        self.batch_script: deque[Exception] = deque()
        self.batch_omit: set[str] = set()

    async def poll_many(self, handles: Mapping[str, dict[str, Any]], ctx: CallContext) -> dict[str, PollResult]:
        self.status_calls += 1
        self.batch_sizes.append(len(handles))
        assert len(handles) <= self.poll_batch_size
        if self.batch_script:
            raise self.batch_script.popleft()
        return {vid: self._status(h["id"]) for vid, h in handles.items() if vid not in self.batch_omit}


def scripted_config(channels: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "plugins": {"enabled": []},
        "channels": channels or [{"name": "main", "vendor": "scripted"}],
    }
    config.update(extra)
    return config
