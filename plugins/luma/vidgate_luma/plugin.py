"""The Luma vendor plugin: Dream Machine create, poll, fetch, cancel, extend and callbacks."""

from __future__ import annotations

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

DEFAULT_BASE_URL = "https://api.lumalabs.ai/dream-machine/v1"
MAX_CALLBACK_BYTES = 1024 * 1024


def _gen_id(handle: Mapping[str, Any]) -> str:
    gid = handle.get("id")
    if not isinstance(gid, str) or not gid:
        raise VendorUnavailable("Luma handle has no generation id")
    return quote(gid, safe="")


def _created(body: Any) -> str:
    gid = body.get("id") if isinstance(body, dict) else None
    if not isinstance(gid, str) or not gid:
        raise VendorUnavailable("Luma create reply has no id")
    return gid


def _failure(reason: str) -> str:
    # Dream Machine gives only a free-text failure_reason; moderation shows in its words.
    low = reason.lower()
    return "content_filtered" if "moderat" in low or "policy" in low or "safety" in low else "vendor_failed"


class Luma(VendorPlugin):
    """Luma Dream Machine: ``POST /generations/video``, ``GET``/``DELETE
    /generations/{id}``, ``callback_url`` hints. Channel credentials: ``api_key``."""

    name = "luma"
    models = mapping.MODELS
    poll_interval = 5.0
    deadline = 30 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("api_key",)
    description = "Luma Dream Machine API (Ray 2, Ray Flash 2, Ray 1.6; keyframes, extend, loop)"

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model, channel)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    async def _create(self, body: dict[str, Any], ctx: CallContext) -> Submission:
        body = dict(body)
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        answer = await call(ctx, "POST", "/generations/video", body)
        gid = _created(answer)
        ctx.log.info("luma_submitted", luma_generation_id=gid, model=body.get("model"))
        return Submission(handle={"id": gid}, vendor_task_id=gid)

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        return await self._create(job.payload["body"], ctx)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``extend``: a new generation whose ``frame0`` is the source generation (an
        image in the request becomes the extension's last frame, ``frame1``)."""
        if operation != "extend":
            raise VendorRejected(f"Luma cannot {operation} videos", param="video")
        body = dict(job.payload["body"])
        keyframes = dict(body.get("keyframes") or {})
        keyframes["frame0"] = {"type": "generation", "id": _gen_id(source.handle)}
        body["keyframes"] = keyframes
        return await self._create(body, ctx)

    async def _generation(self, handle: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        gen = await call(ctx, "GET", f"/generations/{_gen_id(handle)}", task_path=True)
        if not isinstance(gen, dict):
            raise VendorUnavailable("Luma generation reply is not an object")
        return gen

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        gen = await self._generation(handle, ctx)
        word = gen.get("state")
        if not isinstance(word, str):
            raise VendorUnavailable("Luma generation has no state")
        status = mapping.STATUS.get(word.lower())
        if status is None:
            return PollResult.unknown(word[:64])
        if status == "failed":
            raw = gen.get("failure_reason")
            reason = raw if isinstance(raw, str) and raw else "Luma reported that the generation failed."
            ctx.log.info("luma_generation_failed", reason=reason[:300])
            return PollResult(status="failed", error=TaskError(_failure(reason), reason[:1000]), vendor_status=word)
        if status == "completed":
            assets = gen.get("assets") if isinstance(gen.get("assets"), dict) else {}
            video = assets.get("video") if isinstance(assets, dict) else None
            if not isinstance(video, str) or not video:
                return PollResult(
                    status="failed",
                    error=TaskError("vendor_failed", "Luma reported completion but returned no video."),
                    vendor_status=word,
                )
            result: dict[str, Any] = {"url": video}
            image = assets.get("image") if isinstance(assets, dict) else None
            if isinstance(image, str) and image:
                result["thumbnail"] = image
            return PollResult(status="completed", progress=100, result=result, vendor_status=word)
        return PollResult(status=status, vendor_status=word)  # Luma reports no progress number

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant == "video":
            return await ctx.download(result["url"])
        if variant == "thumbnail" and isinstance(result.get("thumbnail"), str):
            return await ctx.download(result["thumbnail"])
        return None

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """``DELETE /generations/{id}`` for an unfinished generation only: Dream Machine's
        DELETE removes the generation, so a finished one is left to be collected."""
        try:
            gen = await self._generation(handle, ctx)
        except TaskNotFound:
            raise TaskFailed("Luma no longer knows the generation") from None
        word = str(gen.get("state") or "").lower()
        if word not in mapping.UNFINISHED:
            return CancelResult(CancelOutcome.FINISHED, f"Luma generation already {word or 'finished'}")
        try:
            await call(ctx, "DELETE", f"/generations/{_gen_id(handle)}", task_path=True)
        except TaskNotFound:
            raise TaskFailed("Luma no longer knows the generation") from None
        if word == "dreaming":
            # Whether Luma bills a deleted, already dreaming generation is not documented.
            return CancelResult(CancelOutcome.CANCELLED_AFTER_START, "Luma deleted the dreaming generation")
        return CancelResult(CancelOutcome.CANCELLED, "Luma deleted the queued generation")

    def parse_callback(
        self, body: bytes, headers: Mapping[str, str], channel: Channel | None = None
    ) -> CallbackResult | None:
        """Dream Machine POSTs the Generation object on every update, unsigned: a hint."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        gid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(gid, str) or not gid:
            return None
        return CallbackResult(vendor_task_id=gid, verified=None)
