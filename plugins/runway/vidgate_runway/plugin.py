"""The Runway vendor plugin: create, poll, fetch, cancel and Aleph edits over Runway's API."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
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
    SourceTask,
    Submission,
    TaskError,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import TaskFailed, TaskNotFound, VendorRejected, VendorUnavailable

from . import mapping
from .client import call

DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _task_id(handle: dict[str, Any]) -> str:
    tid = handle.get("id")
    if not isinstance(tid, str) or not tid:
        raise VendorUnavailable("Runway handle has no task id")
    return quote(tid, safe="")


def _created_id(body: Any) -> str:
    tid = body.get("id") if isinstance(body, dict) else None
    if not isinstance(tid, str) or not tid:
        raise VendorUnavailable("Runway create reply has no id")
    return tid


def _output_url(task: dict[str, Any]) -> str | None:
    output = task.get("output")
    if isinstance(output, list) and output and isinstance(output[0], str) and output[0]:
        return output[0]
    return None


def _credits(task: dict[str, Any]) -> dict[str, Any] | None:
    # Not in the reference (which says tasks carry no usage); newer SDK types (5.24) show
    # ``cost.credits`` on finished tasks. Reported when present, else seconds stand.
    cost = task.get("cost")
    credits = cost.get("credits") if isinstance(cost, dict) else None
    if isinstance(credits, (int, float)) and not isinstance(credits, bool) and credits >= 0:
        return {"credits": credits}
    return None


class Runway(VendorPlugin):
    """Runway's developer API: ``/v1/text_to_video``, ``/v1/image_to_video``,
    ``/v1/video_to_video`` (Aleph), ``GET``/``DELETE /v1/tasks/{id}``.

    Channel credentials: ``api_key``. Options: ``api_version`` (the ``X-Runway-Version``
    header, default ``2024-11-06``), ``edit_model`` (default ``aleph2``).
    """

    name = "runway"
    models = mapping.MODELS
    poll_interval = 5.0  # Runway: poll no more often than every 5 s
    deadline = 30 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("api_key",)
    description = "Runway API (Gen-4.5, Gen-4 Turbo, Veo 3.1, Aleph video-to-video edits)"

    # -- mapping ---------------------------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = super().validate_channel(channel)
        version = channel.options.get("api_version")
        if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
            problems.append('options.api_version: must be a date string like "2024-11-06"')
        edit_model = channel.options.get("edit_model")
        if edit_model is not None and not (isinstance(edit_model, str) and edit_model):
            problems.append("options.edit_model: must be a Runway model name")
        return problems

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model, channel)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    # -- vendor calls ----------------------------------------------------------------

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        route = job.payload["route"]
        if route not in mapping.ROUTES:
            raise VendorUnavailable(f"Runway job has an unknown route {route!r}")
        body = await asyncio.to_thread(mapping.resolve_media, job.payload["body"], ctx.request)
        answer = await call(ctx, "POST", f"/v1/{route}", body)
        tid = _created_id(answer)
        ctx.log.info("runway_submitted", runway_task_id=tid, route=route)
        return Submission(handle={"id": tid}, vendor_task_id=tid)

    async def _task(self, handle: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        task = await call(ctx, "GET", f"/v1/tasks/{_task_id(handle)}", task_path=True)
        if not isinstance(task, dict):
            raise VendorUnavailable("Runway task reply is not an object")
        return task

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        task = await self._task(handle, ctx)
        word = task.get("status")
        if not isinstance(word, str):
            raise VendorUnavailable("Runway task has no status")
        status = mapping.STATUS.get(word.upper())
        if status is None:
            return PollResult.unknown(word[:64])
        if status == "completed":
            url = _output_url(task)
            if url is None:
                # SUCCEEDED without an output: nothing to copy, and Runway will not add one.
                return PollResult(
                    status="failed",
                    error=TaskError("vendor_failed", "Runway reported success but returned no video."),
                    vendor_status=word,
                )
            return PollResult(
                status="completed", progress=100, result={"url": url}, vendor_status=word, usage=_credits(task)
            )
        if status == "failed":
            code = task.get("failureCode")
            reason = task.get("failure")
            message = str(reason) if isinstance(reason, str) and reason else "Runway reported that the task failed."
            public = mapping.failure_code(code if isinstance(code, str) else None)
            ctx.log.info("runway_task_failed", failure_code=code, reason=message[:300])
            return PollResult(status="failed", error=TaskError(public, message[:1000]), vendor_status=word)
        progress = task.get("progress")
        pct = None
        if isinstance(progress, (int, float)) and not isinstance(progress, bool):
            pct = max(0, min(100, round(progress * 100)))
        return PollResult(status=status, progress=pct, vendor_status=word)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # Runway gives one video; the gateway makes its own thumbnail
        try:
            return await ctx.download(result["url"])
        except TaskFailed:
            # Output URLs expire (24-48 h): the task, fetched again, has fresh ones.
            try:
                task = await self._task(handle, ctx)
            except TaskNotFound:
                raise TaskFailed("Runway no longer has this task's video", code="result_unavailable") from None
            url = _output_url(task)
            if url is None or url == result["url"]:
                raise
            return await ctx.download(url)

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """``DELETE /v1/tasks/{id}``, but only for an unfinished task: on a finished one
        Runway's DELETE deletes it, and its video could no longer be fetched."""
        try:
            task = await self._task(handle, ctx)
        except TaskNotFound:
            raise TaskFailed("Runway no longer knows the task") from None
        word = str(task.get("status") or "").upper()
        if word not in mapping.UNFINISHED:
            return CancelResult(CancelOutcome.FINISHED, f"Runway task already {word or 'finished'}")
        try:
            await call(ctx, "DELETE", f"/v1/tasks/{_task_id(handle)}", task_path=True)
        except TaskNotFound:
            raise TaskFailed("Runway no longer knows the task") from None
        if word == "RUNNING":
            # Runway does not say whether started work is billed (unconfirmed).
            return CancelResult(CancelOutcome.CANCELLED_AFTER_START, "Runway cancelled the running task")
        return CancelResult(CancelOutcome.CANCELLED, f"Runway cancelled the {word.lower()} task")

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``edit``: Aleph (``POST /v1/video_to_video``) on the source's video, named by a
        fresh output URL of the source task, or sent inline when Runway has deleted it."""
        if operation != "edit" or job.payload.get("route") != mapping.VIDEO_TO_VIDEO:
            raise VendorRejected(f"Runway cannot {operation} videos", param="video")
        body = dict(job.payload["body"])
        body["videoUri"] = await self._source_video(source, ctx)
        answer = await call(ctx, "POST", f"/v1/{mapping.VIDEO_TO_VIDEO}", body)
        tid = _created_id(answer)
        ctx.log.info("runway_edit_submitted", runway_task_id=tid, model=body.get("model"))
        return Submission(handle={"id": tid}, vendor_task_id=tid)

    async def _source_video(self, source: SourceTask, ctx: CallContext) -> str:
        try:
            task = await self._task(source.handle, ctx)
            url = _output_url(task)
            if url is not None:
                return url
        except TaskNotFound:
            pass
        path = source.media.get("video")
        if path is None:
            raise VendorRejected("the source video is no longer available at Runway", param="video")
        return await asyncio.to_thread(_data_uri, path)


def _data_uri(path: Path) -> str:
    data = path.read_bytes()
    if mapping.data_uri_length(len(data), "video/mp4") > mapping.MAX_DATA_URI:
        raise VendorRejected(
            "Runway has deleted the source task and the video is over 5 MB, too big to send inline", param="video"
        )
    return "data:video/mp4;base64," + base64.b64encode(data).decode()
