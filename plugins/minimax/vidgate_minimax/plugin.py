"""The MiniMax (Hailuo) vendor plugin: V1 (submit, query, file retrieve) and V2 (submit,
query, list as batch poll, DELETE as cancel, usage seconds), callbacks on both."""

from __future__ import annotations

import asyncio
import base64
import json
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
    Submission,
    TaskError,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import TaskFailed, TaskNotFound, VendorRejected, VendorUnavailable

from . import mapping
from .client import call


def _content(job: VendorJob, ctx: CallContext) -> list[dict[str, Any]]:
    """V2 ``content[]`` with the request's images and references as URLs or data URLs."""
    assert ctx.request is not None
    out = []
    for item in job.payload["content"]:
        item = dict(item)
        if "image" in item:
            image = ctx.request.images[item.pop("image")]
            item["image_url"] = {"url": image.url or image.data_url()}
        elif "reference" in item:
            ref = ctx.request.references[item.pop("reference")]
            url = ref.url or f"data:{ref.mime_type};base64,{base64.b64encode(ref.data or b'').decode()}"
            item[item["type"]] = {"url": url}
        out.append(item)
    return out


def _v2_result(task: Any) -> PollResult:
    """A V2 ``task`` object as a poll answer."""
    word = task.get("status") if isinstance(task, dict) else None
    status = mapping.STATUS_V2.get(word) if isinstance(word, str) else None
    if status is None:
        return PollResult.unknown(str(word))
    if status == "failed":
        error = task.get("error") if isinstance(task.get("error"), dict) else {}
        # V2 codes are unconfirmed: the V1 filter codes are taken to mean the same.
        code = "content_filtered" if str(error.get("code")) in ("1026", "1027") else "vendor_failed"
        message = str(error.get("message") or "MiniMax failed the task")
        return PollResult("failed", error=TaskError(code, message), vendor_status=word)
    if status != "completed":
        return PollResult(status, vendor_status=word)
    url = task.get("content", {}).get("url") if isinstance(task.get("content"), dict) else None
    if not isinstance(url, str) or not url:
        raise VendorUnavailable("MiniMax says succeeded but gives no content.url")
    usage: dict[str, Any] = {}
    raw = task.get("usage") if isinstance(task.get("usage"), dict) else {}
    # What the client sees is the clip: output seconds (input video seconds have no fact).
    if isinstance(seconds := raw.get("output_seconds", raw.get("total_seconds")), (int, float)):
        usage["seconds"] = seconds
    if isinstance(tokens := raw.get("total_tokens"), int):
        usage["tokens"] = tokens
    if isinstance(resolution := task.get("resolution"), str):
        usage["resolution"] = resolution.lower()
    return PollResult("completed", result={"url": url}, vendor_status=word, usage=usage)


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
    """MiniMax Hailuo video generation: V1 ``/v1/video_generation`` (Hailuo 2.3/02 and
    older) and V2 ``/v2/video_generation`` (H3). Credentials: ``api_key``."""

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
        api = job.payload.get("api", "v1")
        if api == "v2":
            body = {**job.payload["body"], "content": await asyncio.to_thread(_content, job, ctx)}
        else:
            body = {**job.payload["body"], **await asyncio.to_thread(_images, job, ctx)}
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        data = await call(ctx, "POST", f"/{api}/video_generation", body)
        task_id = data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise VendorUnavailable("MiniMax accepted the task but gave no task_id")
        return Submission(handle={"api": api, "task_id": task_id}, vendor_task_id=task_id)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        if handle.get("api") == "v2":
            try:
                data = await call(ctx, "GET", f"/v2/query/video_generation/{quote(handle['task_id'], safe='')}")
            except VendorRejected as exc:
                if exc.http_status == 404:
                    raise TaskNotFound(exc.message) from None
                raise
            return _v2_result(data.get("task"))
        try:
            data = await call(ctx, "GET", "/v1/query/video_generation", task_id=handle["task_id"])
        except VendorRejected as exc:
            if exc.vendor_code in mapping.FILTERED:  # a failed task's reason comes in base_resp
                return PollResult("failed", error=TaskError("content_filtered", exc.message), vendor_status="Fail")
            if exc.vendor_code == 2013:  # the query takes nothing but the id: it is unknown
                raise TaskNotFound(exc.message, vendor_code=exc.vendor_code) from None
            raise
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
        if "url" in result:  # V2: content.url (lifetime unconfirmed), copied at once
            return await ctx.download(result["url"])
        # The download_url lives hours (≈9 h, unconfirmed); the file_id does not expire with it.
        data = await call(ctx, "GET", "/v1/files/retrieve", file_id=result["file_id"])
        file = data.get("file")
        url = file.get("download_url") if isinstance(file, dict) else None
        if not isinstance(url, str) or not url:
            raise VendorUnavailable("MiniMax file has no download_url")
        return await ctx.download(url)

    async def poll_many(self, handles: Mapping[str, dict[str, Any]], ctx: CallContext) -> Mapping[str, PollResult]:
        """V2 list, newest first, no id filter and no cursor: read pages until every V2
        task is seen, at most a few pages (older tasks are then polled one by one)."""
        wanted = {tid for tid, h in handles.items() if h.get("api") == "v2"}
        found: dict[str, PollResult] = {}
        for page in range(1, 2 + len(wanted) // self.poll_batch_size + 1):
            if not wanted - found.keys():
                break
            data = await call(
                ctx, "GET", "/v2/query/video_generation", page_size=str(self.poll_batch_size), page_num=str(page)
            )
            items = data.get("items")
            items = items if isinstance(items, list) else []
            for item in items:
                if isinstance(item, dict) and str(item.get("id")) in wanted:
                    found[str(item["id"])] = _v2_result(item)
            if len(items) < self.poll_batch_size:
                break
        return found

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """V2 ``DELETE`` cancels an unfinished task (and would delete a finished one:
        rules unconfirmed). V1 has no cancel."""
        if handle.get("api") != "v2":
            return CancelResult(CancelOutcome.REFUSED, "MiniMax V1 has no cancel")
        path = f"/v2/video_generation/{quote(handle['task_id'], safe='')}"
        try:
            data = await call(ctx, "DELETE", path)
        except VendorRejected as exc:
            if exc.http_status == 404:
                raise TaskFailed(exc.message) from None  # gone: the core polls once
            raise
        word = data.get("status")
        if word == "cancelled":
            return CancelResult(CancelOutcome.CANCELLED)
        if word in ("succeeded", "failed"):
            return CancelResult(CancelOutcome.FINISHED, f"MiniMax says {word}")
        return CancelResult(CancelOutcome.REFUSED, f"MiniMax answered status {word!r}")

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
