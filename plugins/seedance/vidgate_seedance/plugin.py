"""The Seedance vendor plugin: Ark's content-generation tasks on BytePlus or Volcengine.

Verbs: submit, poll, batch poll (the list endpoint filtered by ``filter.task_ids``),
fetch (video and ``last_frame``), cancel (``DELETE`` while queued), callbacks (hints) and
the final render of a draft task as a derived task (``remix``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from vidgate import (
    CallbackResult,
    CallContext,
    CancelOutcome,
    CancelResult,
    Channel,
    MediaSource,
    Model,
    PollResult,
    Problem,
    SourceTask,
    Submission,
    TaskError,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import VendorError, VendorRejected, VendorUnavailable

from . import mapping
from .client import call

TASKS = "contents/generations/tasks"
#: Output moderation codes: the task failed ``content_filtered`` (refunded).
FILTER_CODES = ("OutputVideoSensitiveContentDetected", "OutputImageSensitiveContentDetected", "OutputAudioSensitive")
#: Ark's list endpoint allows 1 query per second per account (reference 2.6).
DEFAULT_LIST_QPS = 1.0
MAX_CALLBACK_BYTES = 1024 * 1024


def _task_id(obj: Any) -> str:
    tid = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(tid, str) or not tid:
        raise VendorUnavailable("Seedance reply has no task id")
    return tid


class Seedance(VendorPlugin):
    """ByteDance Seedance through Ark (``POST /contents/generations/tasks``).

    Channel credentials: ``api_key``. Options: ``platform`` (``byteplus``, the default,
    or ``volcengine``: picks the default base URL and the model ids), ``list_qps`` (list
    calls per second this channel may make, default 1 as Ark allows).
    """

    name = "seedance"
    models = mapping.MODELS
    poll_interval = 5.0
    # Ark's own execution_expires_after defaults to 48 h; our outer bound is shorter
    # (a channel's ``deadline`` option raises it for flex tasks).
    deadline = 2 * 60 * 60.0
    default_base_url = mapping.PLATFORMS[mapping.DEFAULT_PLATFORM]
    credentials = ("api_key",)
    description = "ByteDance Seedance (BytePlus ModelArk / Volcengine Ark) video generation"
    # (unconfirmed) Ark's largest page_size for the list call; 50 ids keep the URL short.
    poll_batch_size = 50

    # -- mapping ---------------------------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = super().validate_channel(channel)
        platform = channel.options.get("platform", mapping.DEFAULT_PLATFORM)
        if platform not in mapping.PLATFORMS:
            problems.append(f"options.platform: must be one of {', '.join(mapping.PLATFORMS)}, not {platform!r}")
        qps = channel.options.get("list_qps", DEFAULT_LIST_QPS)
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or qps <= 0:
            problems.append("options.list_qps: must be a positive number")
        return problems

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model, channel)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    # -- vendor calls ----------------------------------------------------------------

    async def _create(self, body: dict[str, Any], ctx: CallContext) -> Submission:
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        answer = await call(ctx, "POST", TASKS, body)
        task_id = _task_id(answer)
        ctx.log.info("seedance_submitted", seedance_task_id=task_id, model=body.get("model"))
        return Submission(handle={"id": task_id}, vendor_task_id=task_id)

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        body = await asyncio.to_thread(mapping.resolve_content, job.payload["body"], ctx.request)
        return await self._create(body, ctx)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """The final render of a finished draft: ``content = [{"type": "draft_task",
        "draft_task": {"id": <the draft's Ark id>}}]``. Ark reuses the draft's prompt and
        inputs, so a remix prompt other than the draft's is refused (naming ``prompt``)."""
        if operation != "remix" or not job.payload.get("final_of_draft"):
            raise VendorRejected(f"Seedance cannot {operation} videos", param="video")
        request = ctx.request
        if request is not None and source.prompt is not None and request.prompt.strip() != source.prompt.strip():
            raise VendorRejected(
                "a Seedance final render reuses its draft's prompt; send the draft's prompt unchanged", param="prompt"
            )
        body = dict(job.payload["body"])
        body["content"] = [{"type": "draft_task", "draft_task": {"id": _task_id(source.handle)}}]
        return await self._create(body, ctx)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        task = await call(ctx, "GET", f"{TASKS}/{quote(_task_id(handle), safe='')}")
        if not isinstance(task, dict):
            raise VendorUnavailable("Seedance task is not an object")
        return self._result(task, ctx)

    async def poll_many(self, handles: Mapping[str, dict[str, Any]], ctx: CallContext) -> Mapping[str, PollResult]:
        """One ``GET /contents/generations/tasks?filter.task_ids=...`` for all ``handles``;
        list calls of a channel are spaced to its ``list_qps``."""
        await self._pace(ctx)
        params: list[tuple[str, str | int]] = [("page_num", 1), ("page_size", len(handles))]
        params += [("filter.task_ids", tid) for tid in handles]
        page = await call(ctx, "GET", TASKS, params=params)
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise VendorUnavailable("Seedance list reply has no items")
        out: dict[str, PollResult] = {}
        for item in items:
            if isinstance(item, dict) and item.get("id") in handles:
                try:
                    out[item["id"]] = self._result(item, ctx)
                except VendorError:
                    continue  # polled on its own, where the failure is counted
        return out

    async def _pace(self, ctx: CallContext) -> None:
        # Ark allows one list call per second per account: space this channel's list
        # calls (per process) instead of drawing 429s that would poll each task alone.
        qps = float(ctx.channel.options.get("list_qps", DEFAULT_LIST_QPS))
        lock = ctx.state.setdefault("list_lock", asyncio.Lock())
        async with lock:
            wait = ctx.state.get("list_at", 0.0) + 1.0 / qps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            ctx.state["list_at"] = time.monotonic()

    def _result(self, task: dict[str, Any], ctx: CallContext) -> PollResult:
        word = task.get("status")
        if not isinstance(word, str):
            raise VendorUnavailable("Seedance task has no status")
        status = mapping.STATUS.get(word.lower())
        if status is None:
            return PollResult.unknown(word)
        if word.lower() == "expired":
            return PollResult(
                status="failed",
                error=TaskError("expired", "Seedance did not start the task before execution_expires_after."),
                vendor_status=word,
            )
        if status == "failed":
            error: dict[str, Any] = task["error"] if isinstance(task.get("error"), dict) else {}
            code = str(error.get("code") or "")
            message = str(error.get("message") or "Seedance reported that the task failed.")
            ctx.log.info("seedance_task_failed", vendor_code=code, reason=message[:300])
            if code.startswith(FILTER_CODES):
                return PollResult(
                    status="failed",
                    error=TaskError("content_filtered", f"Seedance's output moderation blocked the video: {message}"),
                    vendor_status=word,
                )
            return PollResult(status="failed", error=TaskError("vendor_failed", message), vendor_status=word)
        if status == "completed":
            content: dict[str, Any] = task["content"] if isinstance(task.get("content"), dict) else {}
            url = content.get("video_url")
            if not isinstance(url, str) or not url:
                raise VendorUnavailable("Seedance says succeeded but gives no video_url")
            result: dict[str, Any] = {"url": url}
            last = content.get("last_frame_url")
            if isinstance(last, str) and last:
                result["last_frame_url"] = last
                result["artifacts"] = ["last_frame"]
            return PollResult(status="completed", result=result, vendor_status=word, usage=self._usage(task))
        return PollResult(status=status, vendor_status=word)

    @staticmethod
    def _usage(task: dict[str, Any]) -> dict[str, Any]:
        usage: dict[str, Any] = {}
        reported: dict[str, Any] = task["usage"] if isinstance(task.get("usage"), dict) else {}
        tokens = reported.get("completion_tokens", reported.get("total_tokens"))
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            usage["tokens"] = tokens
        for key, fact in (("duration", "seconds"), ("framespersecond", "fps"), ("frames", "frames")):
            value = task.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                usage[fact] = value
        return usage

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        # Signed TOS URLs, no auth; they live 24 h (2.5: at most 100 downloads), so the
        # gateway copies them once, at completion.
        if variant == "video":
            return await ctx.download(result["url"])
        if variant == "last_frame" and result.get("last_frame_url"):
            return await ctx.download(result["last_frame_url"])
        return None

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """``DELETE`` cancels only a ``queued`` task (a terminal task's record would be
        *deleted*, and ``running`` is refused), so look first and delete only then."""
        task_id = _task_id(handle)
        path = f"{TASKS}/{quote(task_id, safe='')}"
        # TaskNotFound (the record is gone) propagates: the core polls once to learn the end.
        task = await call(ctx, "GET", path)
        word = str(task.get("status") or "").lower() if isinstance(task, dict) else ""
        if word == "running":
            return CancelResult(CancelOutcome.REFUSED, "Seedance cannot stop a running task")
        if word in ("succeeded", "failed", "expired"):
            return CancelResult(CancelOutcome.FINISHED, f"Seedance task already {word}")
        if word == "cancelled":
            return CancelResult(CancelOutcome.CANCELLED, "Seedance task already cancelled")
        try:
            await call(ctx, "DELETE", path)
        except VendorRejected as exc:
            # It started between the two calls: Ark refuses to cancel a running task.
            return CancelResult(CancelOutcome.REFUSED, exc.message)
        return CancelResult(CancelOutcome.CANCELLED, "Seedance cancelled the queued task")

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult | None:
        """Ark POSTs the task object, unsigned: a hint to poll that task now."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        tid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(tid, str) or not tid:
            return None
        return CallbackResult(vendor_task_id=tid, verified=None)
