"""The ``sora`` vendor: the OpenAI Videos API (``/videos``) on OpenAI-compatible upstreams.

OpenAI shut its own Videos API down on 2026-09-24; the protocol lives on at Azure OpenAI
v1, self-hosted vLLM-Omni and SGLang servers, relays and other gateways (vidgate too).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

from vidgate import (
    CallContext,
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
from vidgate.errors import TaskFailed, VendorRejected, VendorUnavailable
from vidgate.vendorhttp import transport_errors

from . import client, mapping

MAX_THUMBNAIL_BYTES = 16 * 1024 * 1024

# The Videos API status words; anything else is reported as unknown (task stays alive).
_STATUSES = {"queued": "queued", "in_progress": "in_progress", "completed": "completed", "failed": "failed"}


def _form_value(value: Any) -> str | None:
    """How a metadata value travels as a multipart text field (None = leave it out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _handle_id(handle: dict[str, Any]) -> str:
    vid = handle.get("id")
    if not isinstance(vid, str) or not vid:
        raise TaskFailed("the stored handle has no upstream video id", code="vendor_task_missing")
    return vid


class Sora(VendorPlugin):
    """OpenAI Videos API plugin (``sora-2``, ``sora-2-pro``) for compatible upstreams.

    Channel config: ``base_url`` including ``/v1`` (required: there is no default since
    OpenAI's own endpoint is gone), ``credentials.api_key``, ``options.auth`` (``bearer``
    or Azure's ``api-key``), ``options.operations`` (the derived tasks the upstream
    serves), optional ``options.organization`` / ``options.project``.
    """

    name = "sora"
    description = "OpenAI Videos API (Sora 2 schema) on Azure OpenAI, vLLM-Omni, SGLang, relays or another vidgate."
    models = mapping.MODELS
    poll_interval = 10.0
    deadline = 30 * 60.0
    default_base_url = client.DEFAULT_BASE_URL
    credentials = ("api_key",)

    def validate_channel(self, channel: Channel) -> list[str]:
        """``base_url`` and ``credentials.api_key`` required; ``options.auth`` is
        ``bearer`` or ``api-key``; ``options.operations`` a list of remix/extend/edit."""
        return client.channel_problems(channel)

    # -- requests ---------------------------------------------------------------------

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        """Seconds 4/8/12, the model's sizes, one PNG/JPEG/WebP reference, safe metadata."""
        return mapping.validate(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel.vendor_model(model))

    # -- submit -----------------------------------------------------------------------

    async def _reference(self, image: dict[str, Any], ctx: CallContext) -> tuple[bytes, str, str]:
        """The reference image as ``(bytes, mime_type, filename)``."""
        if "url" in image:
            # The client's own field, so a bad URL is a 400 about what they sent.
            param = str(image.get("param") or "image")
            data, mime = await ctx.fetch_image(image["url"], param=param)
            if mime not in mapping.IMAGE_TYPES:
                raise VendorRejected(f"{param}: the reference image must be PNG, JPEG or WebP, not {mime}", param=param)
            return data, mime, f"reference.{mapping.IMAGE_TYPES[mime]}"
        if "request_image" in image:
            index = image["request_image"]
            if ctx.request is None or not 0 <= index < len(ctx.request.images):
                raise ValueError(f"the job refers to image {index} the request does not have")
            data = ctx.request.images[index].data
            assert data is not None
            return data, image["mime_type"], image["filename"]
        # Jobs stored before images were kept once hold base64: decode off the event loop.
        data = await asyncio.to_thread(base64.b64decode, image["data"])
        return data, image["mime_type"], image["filename"]

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        """``POST /videos``: multipart with an ``input_reference`` file part when there is
        an image, JSON otherwise."""
        p = job.payload
        fields = {"prompt": p["prompt"], "model": p["model"], "seconds": p["seconds"], "size": p["size"]}
        extra: dict[str, Any] = p.get("extra") or {}
        # Fields first, so a metadata key can never shadow a validated field.
        extra = {k: v for k, v in extra.items() if k not in fields and k != "input_reference"}
        if (image := p.get("image")) is not None:
            data, mime, filename = await self._reference(image, ctx)
            form = aiohttp.FormData()
            for key, value in {**fields, **extra}.items():
                if (text := _form_value(value)) is not None:
                    form.add_field(key, text)
            form.add_field("input_reference", data, filename=filename, content_type=mime)
            body, headers = await client.call(
                ctx, "POST", "/videos", operation="create", data=form, extra_keys=tuple(extra)
            )
        else:
            body, headers = await client.call(
                ctx, "POST", "/videos", operation="create", json_body={**extra, **fields}, extra_keys=tuple(extra)
            )
        vid = client.video_id(body, headers, "create")
        ctx.log.info("sora_submitted", vendor_task_id=vid, request_id=headers.get("x-request-id"))
        return Submission(handle={"id": vid}, vendor_task_id=vid, poll_after=client.poll_after(headers))

    async def remix(self, handle: dict[str, Any], job: VendorJob, ctx: CallContext) -> Submission:
        """``POST /videos/{upstream id}/remix`` with the new prompt; the upstream id comes
        from the source task's handle, never the gateway's public id."""
        source = _handle_id(handle)
        body, headers = await client.call(
            ctx, "POST", f"/videos/{source}/remix", operation="remix", json_body={"prompt": job.payload["prompt"]}
        )
        vid = client.video_id(body, headers, "remix")
        ctx.log.info("sora_remixed", vendor_task_id=vid, source=source, request_id=headers.get("x-request-id"))
        return Submission(handle={"id": vid}, vendor_task_id=vid, poll_after=client.poll_after(headers))

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """Remix as :meth:`remix`; ``extend`` and ``edit`` pass through to the upstream's
        ``POST /videos/extensions`` and ``/videos/edits`` with ``video: {"id": <upstream
        id>}`` (the upstream id from the source's handle). An extension's ``seconds`` is
        the new segment's (what the gateway bills). An operation the channel's
        ``options.operations`` leaves out is refused before any upstream call."""
        if operation in client.OPERATIONS and not client.serves(ctx.channel, operation):
            raise VendorRejected(
                f"the upstream of this task's channel does not serve {operation}",
                param="video_id" if operation == "remix" else "video",
            )
        if operation == "remix":
            return await self.remix(source.handle, job, ctx)
        upstream = _handle_id(source.handle)
        body: dict[str, Any] = {"prompt": job.payload["prompt"], "video": {"id": upstream}}
        if operation == "extend":
            body["seconds"] = str(job.payload["seconds"])
            path = "/videos/extensions"
        elif operation == "edit":
            path = "/videos/edits"
        else:
            raise VendorRejected(f"sora cannot {operation} videos", param="video")
        answer, headers = await client.call(ctx, "POST", path, operation=operation, json_body=body)
        vid = client.video_id(answer, headers, operation)
        ctx.log.info(
            "sora_derived",
            operation=operation,
            vendor_task_id=vid,
            source=upstream,
            request_id=headers.get("x-request-id"),
        )
        return Submission(handle={"id": vid}, vendor_task_id=vid, poll_after=client.poll_after(headers))

    # -- poll -------------------------------------------------------------------------

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        """``GET /videos/{id}``; the status words map one to one."""
        vid = _handle_id(handle)
        body, headers = await client.call(ctx, "GET", f"/videos/{vid}", operation="poll")
        after = client.poll_after(headers)
        word = body.get("status")
        if not isinstance(word, str):
            raise VendorUnavailable("upstream video object has no status", request_id=headers.get("x-request-id"))
        status = _STATUSES.get(word)
        if status is None:
            return PollResult(status="unknown", vendor_status=word[:64], poll_after=after)
        raw_progress = body.get("progress")
        progress = None
        if isinstance(raw_progress, (int, float)) and not isinstance(raw_progress, bool):
            progress = max(0, min(100, int(raw_progress)))
        if status == "completed":
            return PollResult(status="completed", progress=100, result={"id": vid}, vendor_status=word)
        if status == "failed":
            raw_err = body.get("error")
            err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
            raw_code, raw_message = err.get("code"), err.get("message")
            code = raw_code if isinstance(raw_code, str) and raw_code else "vendor_failed"
            message = (
                raw_message
                if isinstance(raw_message, str) and raw_message
                else "The upstream reported that the video failed."
            )
            return PollResult(status="failed", error=TaskError(code[:64], message[:1000]), vendor_status=word)
        return PollResult(status=status, progress=progress, vendor_status=word, poll_after=after)

    # -- results ----------------------------------------------------------------------

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        """``GET /videos/{id}/content`` (``?variant=thumbnail`` for the thumbnail; None
        when the upstream has none, so the gateway makes its own)."""
        vid = result.get("id") or _handle_id(handle)
        url = f"{client.base_url(ctx.channel)}/videos/{vid}/content"
        headers = {**client.auth_headers(ctx.channel), "Accept": "application/binary"}
        if variant == "video":
            return await ctx.download(url, headers=headers)
        if variant != "thumbnail":
            return None
        return await self._thumbnail(url + "?variant=thumbnail", headers, ctx)

    async def _thumbnail(self, url: str, headers: dict[str, str], ctx: CallContext) -> MediaSource | None:
        # Not ctx.download: it cannot tell a 400 ("no such variant" on some upstreams) from
        # a 5xx, and a thumbnail is small enough to read whole.
        with transport_errors("thumbnail download", "failed"):
            async with ctx.http.get(url, headers=headers, timeout=ctx.timeout) as resp:
                if resp.status in (400, 404, 410):
                    return None
                if resp.status != 200:
                    raise VendorUnavailable(f"thumbnail download answered HTTP {resp.status}")
                data = await client.read_capped(resp, MAX_THUMBNAIL_BYTES + 1)
                content_type = resp.headers.get("Content-Type", "image/webp").split(";")[0].strip() or "image/webp"
        if not data or len(data) > MAX_THUMBNAIL_BYTES or not content_type.startswith("image/"):
            return None
        return MediaSource.from_bytes(data, content_type)


plugin = Sora()
