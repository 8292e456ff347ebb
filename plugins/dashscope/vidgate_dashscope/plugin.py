"""The DashScope vendor plugin: create, poll, fetch and cancel over Model Studio's
asynchronous video-synthesis API."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

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
    VideoRequest,
)
from vidgate.errors import TaskFailed, TaskNotFound, VendorRejected, VendorUnavailable

from . import mapping
from .client import DEFAULT_BASE_URL, REGIONS, call

CREATE_PATH = "/api/v1/services/aigc/video-generation/video-synthesis"
TASK_PATH = "/api/v1/tasks"


def _output(envelope: dict[str, Any]) -> dict[str, Any]:
    output = envelope.get("output")
    assert isinstance(output, dict)  # client.call guarantees it
    return output


class DashScope(VendorPlugin):
    """Alibaba Cloud Model Studio (DashScope): Wan and HappyHorse video models.

    Channel credentials: ``api_key``. Options: ``region`` (``intl`` = Singapore, the
    default; ``cn``/``beijing``; ``us``/``virginia``) or a ``base_url`` such as a workspace
    host; ``workspace`` (sent as ``X-DashScope-WorkSpace``).
    """

    name = "dashscope"
    models = mapping.MODELS
    poll_interval = 10.0  # renders take 1-5 minutes
    deadline = 60 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("api_key",)
    description = "Alibaba DashScope / Model Studio video synthesis (Wan, HappyHorse)"

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = super().validate_channel(channel)
        region = channel.options.get("region")
        if region is not None and (not isinstance(region, str) or region.lower() not in REGIONS):
            problems.append(f"options.region: must be one of {', '.join(sorted(REGIONS))}")
        return problems

    # -- mapping ---------------------------------------------------------------------

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    # -- vendor calls ----------------------------------------------------------------

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        body = await asyncio.to_thread(mapping.resolve_images, job.payload["body"], ctx.request)
        envelope = await call(ctx, "POST", CREATE_PATH, body, create=True)
        task_id = _output(envelope).get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise VendorUnavailable("DashScope reply has no output.task_id", request_id=envelope.get("request_id"))
        ctx.log.info("dashscope_submitted", dashscope_task_id=task_id, request_id=envelope.get("request_id"))
        return Submission(handle={"task_id": task_id}, vendor_task_id=task_id)

    async def _task(self, handle: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return await call(ctx, "GET", f"{TASK_PATH}/{quote(str(handle['task_id']), safe='')}")

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        envelope = await self._task(handle, ctx)
        return self._poll_result(envelope, ctx)

    def _poll_result(self, envelope: dict[str, Any], ctx: CallContext) -> PollResult:
        output = _output(envelope)
        request_id = envelope.get("request_id")
        word = output.get("task_status")
        if not isinstance(word, str):
            raise VendorUnavailable("DashScope task has no task_status", request_id=request_id)
        if word == "UNKNOWN":
            # DashScope's answer for an id it does not know, or one older than 24 h.
            raise TaskNotFound(
                "DashScope no longer knows this task (task_status UNKNOWN: unknown id, or older than 24 h)",
                vendor_code="UNKNOWN",
                request_id=request_id,
            )
        status = mapping.STATUS.get(word)
        if status is None:
            return PollResult.unknown(word)
        if status == "failed":
            code = str(output.get("code") or "")
            message = str(output.get("message") or "DashScope reported that the task failed.")
            ctx.log.info("dashscope_task_failed", vendor_code=code, reason=message[:300], request_id=request_id)
            kind = "content_filtered" if code in mapping.FILTER_CODES else "vendor_failed"
            return PollResult(status="failed", error=TaskError(kind, f"DashScope: {message}"), vendor_status=word)
        if status == "completed":
            url = output.get("video_url")
            if not isinstance(url, str) or not url:
                raise VendorUnavailable("DashScope says SUCCEEDED but gives no video_url", request_id=request_id)
            usage = mapping.usage_facts(envelope.get("usage"))
            return PollResult(status="completed", result={"url": url}, vendor_status=word, usage=usage or None)
        return PollResult(status=status, vendor_status=word)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # DashScope gives no cover image or last frame
        # The OSS URL is signed and lives 24 h; the gateway copies it now.
        return await ctx.download(result["url"])

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """``POST /api/v1/tasks/{id}/cancel``: DashScope cancels PENDING tasks only."""
        task_id = quote(str(handle["task_id"]), safe="")
        try:
            await call(ctx, "POST", f"{TASK_PATH}/{task_id}/cancel", needs_output=False)
        except VendorRejected as exc:
            # Not PENDING (any more): learn whether it runs or already ended.
            word = _output(await self._task(handle, ctx)).get("task_status")
            if word == "UNKNOWN":
                raise TaskFailed("DashScope no longer knows this task", code="vendor_task_lost") from None
            if word in ("SUCCEEDED", "FAILED", "CANCELED"):
                return CancelResult(CancelOutcome.FINISHED, f"DashScope: the task is already {word}")
            return CancelResult(CancelOutcome.REFUSED, f"DashScope cancels only PENDING tasks ({word}): {exc.message}")
        return CancelResult(CancelOutcome.CANCELLED, "DashScope cancelled the pending task")
