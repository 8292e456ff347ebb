"""The Luma vendor plugin, on both of Luma's surfaces (channel ``options.surface``):

* the **Agents API** (``agents``, the default): ``POST /generations`` (``ray-3.2``: text and
  images to video, extensions, edits and reframes), ``GET /generations/{id}``; no cancel,
  no callbacks;
* **Dream Machine** (``dream-machine``, legacy): ``POST /generations/video``, ``GET``/``DELETE
  /generations/{id}``, extensions, ``callback_url`` hints.
"""

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
    SourceTask,
    Submission,
    TaskError,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import TaskFailed, TaskNotFound, VendorRejected, VendorUnavailable

from . import mapping
from .client import (
    AGENTS,
    AGENTS_BASE_URL,
    DREAM_MACHINE,
    SURFACES,
    call,
    surface_of,
    surface_setting,
)

#: Where a channel without ``base_url`` goes: the Agents API unless it says
#: ``options.surface = "dream-machine"`` (the core's ``default_base_url`` stays unset
#: because it depends on the surface).
DEFAULT_BASE_URL = AGENTS_BASE_URL
MAX_CALLBACK_BYTES = 1024 * 1024

#: Agents ``failure_code`` -> vidgate error code (SDK ``generation_failure_code``).
#: ``budget_exhausted`` also takes the channel out of rotation (:meth:`Luma._agents_failed`).
AGENTS_FAILURES = {
    "content_moderated": "content_filtered",
    "generation_failed": "vendor_failed",
    "output_not_found": "vendor_failed",
    "rate_limited": "vendor_failed",
    # The input was at fault, found while processing (too large, bad format, undecodable).
    "image_too_large": "vendor_rejected",
    "unsupported_format": "vendor_rejected",
    "corrupt_input": "vendor_rejected",
    "invalid_request": "vendor_rejected",
}


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


def _is_agents(handle: Mapping[str, Any]) -> bool:
    # Dream Machine handles (and those stored before the Agents surface) carry no surface.
    return handle.get("surface") == AGENTS


class Luma(VendorPlugin):
    """Luma: the Agents API (``ray-3.2``) or Dream Machine (Ray 2 family), per channel
    (``options.surface``, see :func:`vidgate_luma.client.surface_of`). Credentials: ``api_key``."""

    name = "luma"
    models = (*mapping.AGENTS_MODELS, *mapping.MODELS)
    poll_interval = 5.0
    deadline = 30 * 60.0
    default_base_url = None  # depends on the surface (client.base_url)
    credentials = ("api_key",)
    description = (
        "Luma Agents API (Ray 3.2: keyframes, HDR, edit, reframe) and Dream Machine (Ray 2, Ray Flash 2, Ray 1.6)"
    )

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = super().validate_channel(channel)
        surface = surface_setting(channel)
        if surface is not None and surface not in SURFACES:
            problems.append(f"options.surface: must be 'agents' or 'dream-machine', not {surface!r}")
        return problems

    def default_models(self, channel: Channel) -> list[str]:
        # Each surface serves its own models: a channel without `models` takes only those.
        return [m.name for m in (mapping.AGENTS_MODELS if surface_of(channel) == AGENTS else mapping.MODELS)]

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        if surface_of(channel) == AGENTS:
            return mapping.validate_agents(request, model, channel)
        return mapping.validate(request, model, channel)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        if surface_of(channel) == AGENTS:
            return mapping.map_agents(request, model, channel)
        return mapping.map_request(request, model, channel)

    async def _create(self, body: dict[str, Any], ctx: CallContext) -> Submission:
        body = dict(body)
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        answer = await call(ctx, "POST", "/generations/video", body)
        gid = _created(answer)
        ctx.log.info("luma_submitted", luma_generation_id=gid, model=body.get("model"))
        return Submission(handle={"id": gid}, vendor_task_id=gid)

    async def _create_agents(self, body: dict[str, Any], ctx: CallContext) -> Submission:
        answer = await call(ctx, "POST", "/generations", body, surface=AGENTS)
        gid = _created(answer)
        ctx.log.info("luma_submitted", luma_generation_id=gid, model=body.get("model"), type=body.get("type"))
        return Submission(handle={"id": gid, "surface": AGENTS}, vendor_task_id=gid)

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        if job.payload.get("surface") == AGENTS:
            return await self._create_agents(await _inline(job.payload["body"], ctx), ctx)
        return await self._create(job.payload["body"], ctx)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``extend``: a new generation that starts from the source generation (Dream
        Machine: keyframe ``frame0``, an image in the request becoming ``frame1``; Agents:
        ``video.start_frame``, or the first keyframe of a 10 s clip). ``edit`` (Agents):
        ``type: video_edit`` with ``source = {generation_id}``."""
        if job.payload.get("surface") == AGENTS:
            if operation not in ("extend", "edit") or not _is_agents(source.handle):
                raise VendorRejected(f"Luma cannot {operation} this video", param="video")
            return await self._create_agents(_with_source(job.payload["body"], _gen_id(source.handle)), ctx)
        if operation != "extend" or _is_agents(source.handle):
            raise VendorRejected(f"Luma cannot {operation} videos", param="video")
        body = dict(job.payload["body"])
        keyframes = dict(body.get("keyframes") or {})
        keyframes["frame0"] = {"type": "generation", "id": _gen_id(source.handle)}
        body["keyframes"] = keyframes
        return await self._create(body, ctx)

    async def _generation(self, handle: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        surface = AGENTS if _is_agents(handle) else DREAM_MACHINE
        gen = await call(ctx, "GET", f"/generations/{_gen_id(handle)}", task_path=True, surface=surface)
        if not isinstance(gen, dict):
            raise VendorUnavailable("Luma generation reply is not an object")
        return gen

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        if _is_agents(handle):
            return await self._poll_agents(handle, ctx)
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

    async def _poll_agents(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        """Agents ``state`` queued/processing/completed/failed; the video is the first
        ``output[]`` entry of type ``video`` (a presigned URL valid for an hour, copied at
        once). The answer reports no usage: what was asked is what is billed."""
        gen = await self._generation(handle, ctx)
        word = gen.get("state")
        if not isinstance(word, str):
            raise VendorUnavailable("Luma generation has no state")
        status = mapping.AGENTS_STATUS.get(word.lower())
        if status is None:
            return PollResult.unknown(word[:64])
        if status == "failed":
            return self._agents_failed(gen, word, ctx)
        if status != "completed":
            return PollResult(status=status, vendor_status=word)  # no progress number
        raw_outputs = gen.get("output")
        outputs: list[Any] = raw_outputs if isinstance(raw_outputs, list) else []
        videos = [o for o in outputs if isinstance(o, dict) and isinstance(o.get("url"), str) and o["url"]]
        video = next((o for o in videos if o.get("type") == "video"), videos[0] if videos else None)
        if video is None:
            return PollResult(
                status="failed",
                error=TaskError("vendor_failed", "Luma reported completion but returned no video."),
                vendor_status=word,
            )
        return PollResult(status="completed", progress=100, result={"url": video["url"]}, vendor_status=word)

    def _agents_failed(self, gen: dict[str, Any], word: str, ctx: CallContext) -> PollResult:
        code = str(gen.get("failure_code") or "")
        raw = gen.get("failure_reason")
        reason = (
            raw if isinstance(raw, str) and raw else f"Luma reported that the generation failed ({code or 'no code'})."
        )
        ctx.log.info("luma_generation_failed", failure_code=code, reason=reason[:300])
        error = TaskError(AGENTS_FAILURES.get(code, "vendor_failed"), reason[:1000])
        # The account ran dry mid-generation: the task fails (refunded), and new submits
        # must not go to this account until it is topped up.
        unusable = f"Luma: {reason} (budget_exhausted)" if code == "budget_exhausted" else None
        return PollResult(status="failed", error=error, vendor_status=word, channel_unusable=unusable)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant == "video":
            return await ctx.download(result["url"])
        if variant == "thumbnail" and isinstance(result.get("thumbnail"), str):
            return await ctx.download(result["thumbnail"])
        return None

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """Dream Machine: ``DELETE /generations/{id}`` for an unfinished generation only
        (DELETE removes the generation, so a finished one is left to be collected).

        Agents API: it has no cancel (SDK 0.5.0: ``create`` and ``get`` only), so the
        answer is ``REFUSED`` without a call, exactly what the core does for a vendor
        without the verb: the task ends ``cancelled`` and ``refund_on_unconfirmed_cancel``
        decides, while Luma finishes (and bills) the generation."""
        if _is_agents(handle):
            return CancelResult(CancelOutcome.REFUSED, "Luma's Agents API has no cancel; the generation runs on")
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


def _with_source(body: dict[str, Any], gid: str) -> dict[str, Any]:
    """``body`` with the source-generation placeholders (:data:`mapping.SOURCE`) named."""
    ref = {"generation_id": gid}
    out = dict(body)
    if out.get("source") == mapping.SOURCE:
        out["source"] = ref
    video = dict(out.get("video") or {})
    for key in ("start_frame", "end_frame"):
        if video.get(key) == mapping.SOURCE:
            video[key] = ref
    if isinstance(video.get("keyframes"), list):
        video["keyframes"] = [ref if k == mapping.SOURCE else k for k in video["keyframes"]]
    out["video"] = video
    return out


async def _inline(body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    """``body`` with the request's inline images and videos (``{"request_image": i}``,
    ``{"request_reference": i}``) as ``{data, media_type}``, encoded off the event loop."""
    request = ctx.request

    async def fill(ref: Any) -> Any:
        if not isinstance(ref, dict) or request is None:
            return ref
        if isinstance(ref.get("request_image"), int):
            image = request.images[ref["request_image"]]
            return {"data": await asyncio.to_thread(image.base64), "media_type": image.mime_type or "image/png"}
        if isinstance(ref.get("request_reference"), int):
            video = request.references[ref["request_reference"]]
            data = video.data or b""
            encoded = await asyncio.to_thread(lambda: base64.b64encode(data).decode("ascii"))
            return {"data": encoded, "media_type": video.mime_type or "video/mp4"}
        return ref

    out = dict(body)
    if "source" in out:
        out["source"] = await fill(out["source"])
    video = dict(out.get("video") or {})
    for key in ("start_frame", "end_frame"):
        if key in video:
            video[key] = await fill(video[key])
    if isinstance(video.get("keyframes"), list):
        video["keyframes"] = [await fill(k) for k in video["keyframes"]]
    out["video"] = video
    return out
