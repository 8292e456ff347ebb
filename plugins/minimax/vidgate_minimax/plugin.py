"""The MiniMax (Hailuo) vendor plugin: submit, poll, file retrieve and callbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from vidgate import (
    CallbackResult,
    CallContext,
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
from vidgate.errors import TaskNotFound, VendorRejected, VendorUnavailable

from . import mapping
from .client import call


def _images(job: VendorJob, ctx: CallContext) -> dict[str, Any]:
    # The bytes stay in the stored request; MiniMax takes URLs or data URLs.
    assert ctx.request is not None
    fields: dict[str, Any] = {}
    for field, index in job.payload["images"].items():
        image = ctx.request.images[index]
        url = image.url or image.data_url()
        fields[field] = [{"type": "character", "image": [url]}] if field == "subject_reference" else url
    return fields


class MiniMax(VendorPlugin):
    """MiniMax Hailuo video generation (``/v1/video_generation``). Credentials: ``api_key``."""

    name = "minimax"
    models = mapping.MODELS
    poll_interval = 10.0  # MiniMax's guidance
    deadline = 30 * 60.0
    default_base_url = "https://api.minimax.io"
    credentials = ("api_key",)
    description = "MiniMax Hailuo video API (text/image-to-video, first/last frame, subject reference)"

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        body = {**job.payload["body"], **await asyncio.to_thread(_images, job, ctx)}
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        data = await call(ctx, "POST", "/v1/video_generation", body)
        task_id = data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise VendorUnavailable("MiniMax accepted the task but gave no task_id")
        return Submission(handle={"task_id": task_id}, vendor_task_id=task_id)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        try:
            data = await call(ctx, "GET", "/v1/query/video_generation", task_id=handle["task_id"])
        except VendorRejected as exc:
            if exc.vendor_code in mapping.FILTERED:  # a failed task's reason comes in base_resp
                return PollResult("failed", error=TaskError("content_filtered", exc.message), vendor_status="Fail")
            # The query takes nothing but the task id: "invalid parameters" is that id.
            raise TaskNotFound(exc.message, vendor_code=exc.vendor_code) from None
        word = data.get("status")
        if word == "Fail":
            return PollResult("failed", error=TaskError("vendor_failed", "MiniMax failed the task"), vendor_status=word)
        status = mapping.STATUS.get(word) if isinstance(word, str) else None
        if status is None:
            return PollResult.unknown(str(word))
        if status != "completed":
            return PollResult(status, vendor_status=word)
        file_id = data.get("file_id")
        if not isinstance(file_id, (str, int)) or not str(file_id):
            raise VendorUnavailable("MiniMax says Success but gives no file_id")
        usage = {}
        width, height = data.get("video_width"), data.get("video_height")
        if isinstance(width, int) and isinstance(height, int) and width and height:
            usage = {"width": width, "height": height, "size": f"{width}x{height}"}
        return PollResult("completed", result={"file_id": str(file_id)}, vendor_status=word, usage=usage)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # no vendor thumbnail: the gateway makes one
        # The download_url lives hours (≈9 h, unconfirmed); the file_id does not expire with it.
        data = await call(ctx, "GET", "/v1/files/retrieve", file_id=result["file_id"])
        file = data.get("file")
        url = file.get("download_url") if isinstance(file, dict) else None
        if not isinstance(url, str) or not url:
            raise VendorUnavailable("MiniMax file has no download_url")
        return await ctx.download(url)

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult | None:
        """MiniMax first POSTs ``{"challenge": ...}`` and wants it echoed (within 3 s);
        later POSTs name the ``task_id`` (unsigned: a hint, confirmed by polling)."""
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        if isinstance(obj.get("challenge"), str):
            return CallbackResult(reply={"challenge": obj["challenge"]})
        task_id = obj.get("task_id")
        return CallbackResult(vendor_task_id=str(task_id)) if isinstance(task_id, (str, int)) and task_id else None
