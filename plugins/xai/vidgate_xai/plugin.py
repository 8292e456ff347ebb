"""The ``xai`` vendor: xAI Grok Imagine video over its REST API."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from vidgate import (
    CallContext,
    Channel,
    MediaSource,
    Model,
    PollResult,
    Problem,
    SourceTask,
    Submission,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import TaskFailed, VendorRejected, VendorUnavailable

from . import client, mapping

_PATHS = {"generate": "/v1/videos/generations", "edit": "/v1/videos/edits", "extend": "/v1/videos/extensions"}


def _request_id(body: Any, operation: str) -> str:
    rid = body.get("request_id") if isinstance(body, dict) else None
    if not isinstance(rid, str) or not rid or len(rid) > 256 or "/" in rid:
        raise VendorUnavailable(f"xAI {operation} answer has no usable request_id")
    return rid


def _handle_id(handle: dict[str, Any]) -> str:
    rid = handle.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise TaskFailed("the stored handle has no xAI request_id", code="vendor_task_missing")
    return rid


class XAI(VendorPlugin):
    """xAI Grok Imagine (``grok-imagine-video``, ``-1.5``, ``-1.5-lite``, ``-1.5-preview``).

    Channel config: ``credentials.api_key`` (sent as Bearer); ``base_url`` defaults to
    ``https://api.x.ai`` (the plugin adds ``/v1/videos/...``).
    """

    name = "xai"
    description = "xAI Grok Imagine video (REST /v1/videos): text, image and reference-image to video, edit, extend."
    models = mapping.MODELS
    poll_interval = 5.0
    deadline = 30 * 60.0
    default_base_url = client.DEFAULT_BASE_URL
    credentials = ("api_key",)

    # -- requests ---------------------------------------------------------------------

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        """Ratios, resolutions per model, image roles and typed metadata (see docs/xai.md)."""
        return mapping.validate(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel.vendor_model(model))

    # -- submit -----------------------------------------------------------------------

    async def _image_url(self, ref: dict[str, Any], ctx: CallContext) -> str:
        """An image reference of the job as the ``url`` xAI takes (URL or data URI)."""
        if "url" in ref:
            return str(ref["url"])
        index = ref["request_image"]
        if ctx.request is None or not 0 <= index < len(ctx.request.images):
            raise ValueError(f"the job refers to image {index} the request does not have")
        return await asyncio.to_thread(ctx.request.images[index].data_url)

    async def _audio(self, ref: dict[str, Any], ctx: CallContext) -> dict[str, str]:
        if "url" in ref:
            return {"url": str(ref["url"])}
        index = ref["request_reference"]
        if ctx.request is None or not 0 <= index < len(ctx.request.references):
            raise ValueError(f"the job refers to reference {index} the request does not have")
        audio = ctx.request.references[index]
        assert audio.data is not None
        encoded = await asyncio.to_thread(base64.b64encode, audio.data)
        # Data URIs for audio are not in the reference (only for images): unconfirmed.
        return {"url": f"data:{audio.mime_type or 'audio/mpeg'};base64,{encoded.decode('ascii')}"}

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        """``POST /v1/videos/generations`` with the images as ``{url}`` objects (inline
        images as data URIs, encoded off the event loop)."""
        p = job.payload
        body = dict(p["body"])
        if (image := p.get("image")) is not None:
            body["image"] = {"url": await self._image_url(image, ctx)}
        if (last := p.get("last_frame")) is not None:
            body["last_frame"] = {"url": await self._image_url(last, ctx)}
        if refs := p.get("reference_images"):
            body["reference_images"] = [{"url": await self._image_url(r, ctx)} for r in refs]
        if audios := p.get("reference_audios"):
            body["reference_audios"] = [await self._audio(a, ctx) for a in audios]
        return await self._start("generate", body, ctx)

    async def _start(self, operation: str, body: dict[str, Any], ctx: CallContext) -> Submission:
        _, answer, headers = await client.call(ctx, "POST", _PATHS[operation], operation=operation, body=body)
        rid = _request_id(answer, operation)
        ctx.log.info("xai_submitted", operation=operation, vendor_task_id=rid, request_id=headers.get("x-request-id"))
        return Submission(handle={"request_id": rid, "operation": operation}, vendor_task_id=rid)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``edit`` -> ``POST /v1/videos/edits {model, prompt, video{url}}``; ``extend`` ->
        ``POST /v1/videos/extensions {model, prompt, video{url}, duration}``. The source
        video is the xAI URL its completion gave (xAI's own output, which xAI reads)."""
        if operation not in ("edit", "extend"):
            raise VendorRejected(f"xAI cannot {operation} videos", param="video")
        source_url = source.result.get("url")
        if not isinstance(source_url, str) or not source_url:
            raise VendorRejected("the source task has no xAI video URL to continue from", param="video")
        body = {**job.payload["body"], "video": {"url": source_url}}
        return await self._start(operation, body, ctx)

    # -- poll -------------------------------------------------------------------------

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        """``GET /v1/videos/{request_id}``: 202 pending, 200 with the final status."""
        rid = _handle_id(handle)
        status, body, _ = await client.call(ctx, "GET", f"/v1/videos/{rid}", operation="poll")
        return mapping.poll_result(status, body, str(handle.get("operation") or "generate"))

    # -- results ----------------------------------------------------------------------

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        """The video from ``video.url`` (no auth: a CDN URL); xAI gives no thumbnail or
        other artifacts, so the gateway makes its own thumbnail."""
        if variant != "video":
            return None
        url = result.get("url")
        if not isinstance(url, str) or not url:
            raise TaskFailed("the completed xAI task has no video URL", code="vendor_no_result")
        return await ctx.download(url)


plugin = XAI()
