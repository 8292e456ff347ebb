"""The Kling vendor plugin: submit, poll, fetch, recover and callbacks over Kling's API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from vidgate import (
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
from vidgate.errors import VendorError, VendorUnavailable

from . import mapping
from .client import base_url, call

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
FAMILIES = (mapping.TEXT2VIDEO, mapping.IMAGE2VIDEO)

_STD = (5, 10)
RECOVERED_POLL_AFTER = 1.0
# A callback is one task object, a few KiB; the gateway already caps callback bodies lower.
MAX_CALLBACK_BYTES = 1024 * 1024

#: Kling's models (DOC capability map). Public name = Kling's ``model_name``.
MODELS = (
    Model("kling-v1", seconds=_STD, default_seconds=5, description="Kling 1.0, std/pro, 720p"),
    Model(
        "kling-v1-5", seconds=_STD, default_seconds=5, text_to_video=False, description="Kling 1.5, image-to-video only"
    ),
    Model("kling-v1-6", seconds=_STD, default_seconds=5, description="Kling 1.6, std 720p / pro 1080p"),
    Model("kling-v2-master", seconds=_STD, default_seconds=5, description="Kling 2.0 Master, 720p"),
    Model(
        "kling-v2-1", seconds=_STD, default_seconds=5, text_to_video=False, description="Kling 2.1, image-to-video only"
    ),
    Model("kling-v2-1-master", seconds=_STD, default_seconds=5, description="Kling 2.1 Master, 1080p"),
    Model("kling-v2-5-turbo", seconds=_STD, default_seconds=5, description="Kling 2.5 Turbo"),
    Model("kling-v2-6", seconds=_STD, default_seconds=5, description="Kling 2.6 (sound in pro mode)"),
    Model("kling-v3", seconds=tuple(range(3, 16)), default_seconds=5, description="Kling 3, 3-15 s, multi-shot"),
)

#: Kling task_status -> vidgate status.
STATUS = {"submitted": "queued", "processing": "in_progress", "succeed": "completed", "failed": "failed"}


def _family(handle: Mapping[str, Any]) -> str:
    family = handle.get("family")
    if family not in FAMILIES:
        raise VendorUnavailable(f"Kling handle has an unknown family {family!r}")
    return str(family)


def _data(envelope: dict[str, Any]) -> dict[str, Any]:
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise VendorUnavailable("Kling reply has no data object", request_id=envelope.get("request_id"))
    return data


def _task_id(data: dict[str, Any]) -> str:
    tid = data.get("task_id")
    if isinstance(tid, bool) or not isinstance(tid, (str, int)) or str(tid) == "":
        raise VendorUnavailable("Kling reply has no task_id")
    return str(tid)


class Kling(VendorPlugin):
    """Kling AI (Kuaishou) video generation: ``/v1/videos/text2video`` and ``image2video``.

    Channel credentials: ``access_key`` and ``secret_key`` (a JWT is minted from them).
    """

    name = "kling"
    models = MODELS
    poll_interval = 5.0  # Kling's guidance: poll every 5-10 s
    deadline = 20 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("access_key", "secret_key")
    description = "Kling AI video API (text-to-video, image-to-video)"

    # -- mapping ---------------------------------------------------------------------

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    # -- vendor calls ----------------------------------------------------------------

    def _url(self, ctx: CallContext, *parts: str) -> str:
        return "/".join([base_url(ctx, DEFAULT_BASE_URL), "v1", "videos", *parts])

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        family = _family(job.payload)
        body = await asyncio.to_thread(mapping.resolve_images, job.payload["body"], ctx.request)
        # Our public id lets recover() find the task if Kling's answer is lost.
        body["external_task_id"] = ctx.task_id
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        envelope = await call(ctx, "POST", self._url(ctx, family), body)
        task_id = _task_id(_data(envelope))
        ctx.log.info("kling_submitted", kling_task_id=task_id, family=family, request_id=envelope.get("request_id"))
        return Submission(handle={"task_id": task_id, "family": family}, vendor_task_id=task_id)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        family = _family(handle)
        envelope = await call(ctx, "GET", self._url(ctx, family, quote(str(handle["task_id"]), safe="")))
        return self._poll_result(_data(envelope), envelope.get("request_id"), ctx)

    def _poll_result(self, data: dict[str, Any], request_id: Any, ctx: CallContext) -> PollResult:
        word = data.get("task_status")
        if not isinstance(word, str):
            raise VendorUnavailable("Kling task has no task_status", request_id=request_id)
        status = STATUS.get(word)
        if status is None:
            return PollResult.unknown(word)
        if status == "failed":
            reason = str(data.get("task_status_msg") or "Kling reported that the task failed.")
            ctx.log.info("kling_task_failed", reason=reason[:300], request_id=request_id)
            return PollResult(status="failed", error=TaskError("vendor_failed", reason), vendor_status=word)
        if status == "completed":
            videos = (
                (data.get("task_result") or {}).get("videos") if isinstance(data.get("task_result"), dict) else None
            )
            url = videos[0].get("url") if isinstance(videos, list) and videos and isinstance(videos[0], dict) else None
            if not isinstance(url, str) or not url:
                # "succeed" without a URL yet: treat as malformed, poll again.
                raise VendorUnavailable("Kling says succeed but gives no video URL", request_id=request_id)
            return PollResult(status="completed", result={"url": url}, vendor_status=word)
        # Kling reports no progress percentage; we do not invent one.
        return PollResult(status=status, vendor_status=word)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # Kling has no thumbnails; the gateway makes its own
        # Kling's CDN URL needs no auth: a plain GET.
        return await ctx.download(result["url"])

    async def recover(self, job: VendorJob, ctx: CallContext) -> Submission | None:
        """Look the task up by ``external_task_id`` (= our task id) in its family."""
        family = _family(job.payload)
        try:
            envelope = await call(ctx, "GET", self._url(ctx, family, quote(ctx.task_id, safe="")))
        except VendorError as exc:
            code, http = exc.vendor_code, exc.http_status
            if code == 1203 or (code == 1201 and http in (400, 404)):
                return None  # Kling never got it: the gateway submits again
            raise VendorUnavailable(
                f"Kling lookup by external_task_id failed: {exc.message}", vendor_code=code, request_id=exc.request_id
            ) from None
        data = _data(envelope)
        task_id = _task_id(data)
        ctx.log.info("kling_recovered", kling_task_id=task_id, family=family)
        # The task has been running at least a lease already: look at it soon.
        return Submission(
            handle={"task_id": task_id, "family": family}, vendor_task_id=task_id, poll_after=RECOVERED_POLL_AFTER
        )

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel | None = None) -> str | None:
        """Kling POSTs the bare task object; accept an enveloped one too."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        try:
            # A task object is a few levels deep; the C decoder raises RecursionError on
            # pathological nesting ([[[[...]]]]), which is as unparseable as bad syntax.
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if isinstance(obj, dict) and "task_id" not in obj and isinstance(obj.get("data"), dict):
            obj = obj["data"]
        if not isinstance(obj, dict):
            return None
        tid = obj.get("task_id")
        if isinstance(tid, bool) or not isinstance(tid, (str, int)) or str(tid) == "":
            return None
        return str(tid)
