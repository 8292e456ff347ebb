"""The Vidu vendor plugin: create (four modes), poll, fetch, cancel and callbacks over
Vidu's ``/ent/v2`` API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
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
from vidgate.vendorhttp import require

from . import mapping
from .client import DEFAULT_BASE_URL, REGIONS, call

MAX_CALLBACK_BYTES = 1024 * 1024


def _creation(data: dict[str, Any]) -> dict[str, Any] | None:
    creations = data.get("creations")
    if isinstance(creations, list) and creations and isinstance(creations[0], dict):
        return creations[0]
    return None


class Vidu(VendorPlugin):
    """Vidu (Shengshu) video generation. Channel credentials: ``api_key`` (sent as
    ``Authorization: Token <key>``). Options: ``region`` (``cn`` = api.vidu.cn, the
    default; ``intl`` = api.vidu.com) unless ``base_url`` is set."""

    name = "vidu"
    models = mapping.MODELS
    poll_interval = 5.0
    deadline = 30 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("api_key",)
    description = "Vidu video API (text, image, start-end frames, reference images)"

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = super().validate_channel(channel)
        region = channel.options.get("region")
        if region is not None and (not isinstance(region, str) or region.lower() not in REGIONS):
            problems.append(f"options.region: must be one of {', '.join(sorted(REGIONS))}")
        return problems

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    # -- vendor calls ----------------------------------------------------------------

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        mode = job.payload.get("mode")
        if mode not in mapping.MODES:
            raise VendorUnavailable(f"Vidu job has an unknown mode {mode!r}")
        body = await asyncio.to_thread(mapping.resolve_images, job.payload["body"], ctx.request)
        # Vidu echoes ``payload`` back on the task: our id, for operators matching tasks.
        body["payload"] = ctx.task_id
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        data = await call(ctx, "POST", f"/ent/v2/{mode}", body)
        task_id = require(data, "task_id", "Vidu")
        ctx.log.info("vidu_submitted", vidu_task_id=task_id, mode=mode, state=data.get("state"))
        return Submission(handle={"task_id": task_id, "mode": mode}, vendor_task_id=task_id)

    async def _creations(self, handle: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        try:
            return await call(ctx, "GET", f"/ent/v2/tasks/{quote(str(handle['task_id']), safe='')}/creations")
        except VendorRejected as exc:
            if exc.vendor_code == "TaskNotFound" or exc.http_status == 404:
                raise TaskNotFound(
                    f"Vidu does not know this task: {exc.message}", vendor_code=exc.vendor_code
                ) from None
            raise

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        data = await self._creations(handle, ctx)
        word = data.get("state")
        if not isinstance(word, str):
            raise VendorUnavailable("Vidu task has no state")
        status = mapping.STATUS.get(word.lower())
        if status is None:
            return PollResult.unknown(word)
        if status == "failed":
            code = str(data.get("err_code") or "")
            ctx.log.info("vidu_task_failed", err_code=code)
            kind = "content_filtered" if code in mapping.FILTER_CODES else "vendor_failed"
            message = f"Vidu: the task failed ({code})" if code else "Vidu reported that the task failed."
            return PollResult(status="failed", error=TaskError(kind, message), vendor_status=word)
        if status == "completed":
            creation = _creation(data)
            url = creation.get("url") if creation else None
            if not isinstance(url, str) or not url:
                raise VendorUnavailable("Vidu says success but gives no creation URL")
            result: dict[str, Any] = {"url": url}
            cover = creation.get("cover_url") if creation else None
            if isinstance(cover, str) and cover:
                result["cover_url"] = cover
            credits = data.get("credits")
            usage = (
                {"credits": credits} if isinstance(credits, (int, float)) and not isinstance(credits, bool) else None
            )
            return PollResult(status="completed", result=result, vendor_status=word, usage=usage)
        return PollResult(status=status, vendor_status=word)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant == "video":
            return await ctx.download(result["url"])
        if variant == "thumbnail" and result.get("cover_url"):
            return await ctx.download(result["cover_url"])
        return None

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """``POST /ent/v2/tasks/{id}/cancel`` (unconfirmed in the reference); a refusal is
        checked against the task's state."""
        task_id = str(handle["task_id"])
        try:
            await call(ctx, "POST", f"/ent/v2/tasks/{quote(task_id, safe='')}/cancel", {"id": task_id})
        except VendorRejected as exc:
            try:
                word = str((await self._creations(handle, ctx)).get("state") or "")
            except TaskNotFound:
                raise TaskFailed("Vidu no longer knows this task", code="vendor_task_lost") from None
            if mapping.STATUS.get(word.lower()) in ("completed", "failed", "cancelled"):
                return CancelResult(CancelOutcome.FINISHED, f"Vidu: the task is already {word}")
            return CancelResult(CancelOutcome.REFUSED, f"Vidu refused the cancel ({word}): {exc.message}")
        return CancelResult(CancelOutcome.CANCELLED, "Vidu cancelled the task")

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel | None = None) -> str | None:
        """Vidu POSTs the task to ``callback_url`` (shape and signing unconfirmed: taken as a
        hint naming the task, which is then polled)."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        tid = obj.get("id", obj.get("task_id"))
        if isinstance(tid, bool) or not isinstance(tid, (str, int)) or str(tid) == "":
            return None
        return str(tid)
