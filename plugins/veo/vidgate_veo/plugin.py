"""The Veo vendor plugin: submit, poll and fetch over Google's long-running operations."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import AsyncIterator
from pathlib import Path
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
    TaskError,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import ChannelUnusable, RequestInvalid, TaskFailed, VendorRejected, VendorUnavailable

from . import mapping
from .client import Settings, VeoClient
from .models import MODELS

B64_CHUNK = 4 * 256 * 1024  # base64 characters per decoded chunk (768 KiB of video)


class VeoPlugin(VendorPlugin):
    """Google Veo on Vertex AI (default) or the legacy Gemini API (channel option ``surface``)."""

    name = "veo"
    models = MODELS
    poll_interval = 10.0  # Google's own samples poll every 10 s
    deadline = 15 * 60.0  # documented worst case is ~6 min at peak
    default_base_url = None  # depends on the surface; resolved by the client
    description = "Google Veo video generation (Vertex AI; legacy Gemini API relays)"

    def validate_channel(self, channel: Channel) -> list[str]:
        """The credentials each surface needs: ``service_account`` or ``access_token``,
        and ``project`` (Vertex AI), or ``api_key`` (Gemini API)."""
        try:
            Settings.of(channel)
        except ChannelUnusable as exc:
            return [exc.message]
        return []

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        problems, _ = mapping.plan(request, model, channel)
        return problems

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        problems, job = mapping.plan(request, model, channel)
        if problems or job is None:
            raise RequestInvalid(problems)
        return job

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        if job.payload.get("extend"):
            raise VendorRejected("an extension needs a source video: use POST /v1/videos/extensions", param="video")
        return await self._start(job, ctx, None)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``extend``: the source's stored MP4 goes inline as ``instances[0].video``
        (Veo's scene extension; the source's operation cannot be referred to by name)."""
        if operation != "extend":
            raise VendorRejected(f"Veo cannot {operation} videos", param="video")
        path = source.media.get("video")
        if path is None:
            raise VendorRejected("the source video is no longer stored", param="video")
        encoded = await asyncio.to_thread(_file_base64, path)
        return await self._start(job, ctx, {"bytesBase64Encoded": encoded, "mimeType": "video/mp4"})

    async def _start(self, job: VendorJob, ctx: CallContext, video: dict[str, Any] | None) -> Submission:
        client = VeoClient(ctx)
        payload = job.payload
        instance = dict(payload["instances"][0])
        for field in ("image", "lastFrame"):
            if isinstance(instance.get(field), dict):
                default_param = "image" if field == "image" else "images[1]"
                instance[field] = await _resolve(instance[field], default_param, ctx)
        if isinstance(instance.get("referenceImages"), list):
            instance["referenceImages"] = [
                {**ref, "image": await _resolve(ref["image"], "input_reference", ctx)}
                for ref in instance["referenceImages"]
            ]
        if video is not None:
            instance["video"] = video
        body = {"instances": [instance], "parameters": copy.deepcopy(payload["parameters"])}
        op = await client.create(payload["model"], body)
        del body, instance
        name = op.get("name")
        if not isinstance(name, str) or "/operations/" not in name:
            raise VendorUnavailable("Veo answered the create call without an operation name")
        ctx.log.info("veo_submitted", operation=name, surface=client.surface)
        return Submission(
            handle={"surface": client.surface, "operation": name, "model": payload["model"]},
            vendor_task_id=name,
        )

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        client = VeoClient(ctx)
        op = await client.operation(handle["operation"], handle["model"])
        return interpret(op, handle["operation"])

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # Veo has no thumbnails; the gateway makes its own
        client = VeoClient(ctx)
        if "uri" in result:
            return await ctx.download(result["uri"], headers=client.download_headers(result["uri"]))
        # Inline bytes were not stored with the task (they can be tens of MB): fetch the
        # operation again and decode its base64 in chunks.
        op = await client.operation(handle["operation"], handle["model"])
        sample = _first_sample(op.get("response") or {})
        encoded, mime = _inline(sample)
        if not encoded:
            raise TaskFailed("Veo's finished operation no longer carries the video bytes", code="result_unavailable")
        del op, sample
        return MediaSource(_decode_chunks(encoded), mime or "video/mp4")


def _base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _file_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


async def _resolve(ref: dict[str, Any], default_param: str, ctx: CallContext) -> dict[str, Any]:
    """An image of the job as Google takes it: client URLs are fetched by the gateway
    (SSRF-guarded: the Gemini API takes no image URLs, and nothing may be silently
    dropped) and request images are encoded here, off the event loop."""
    if "$fetch" in ref:
        data, mime = await ctx.fetch_image(ref["$fetch"], param=ref.get("param") or default_param)
        return {"bytesBase64Encoded": await asyncio.to_thread(_base64_text, data), "mimeType": mime}
    if "$request_image" in ref:
        index = ref["$request_image"]
        if ctx.request is None or not 0 <= index < len(ctx.request.images):
            raise ValueError(f"the job refers to image {index} the request does not have")
        encoded = await asyncio.to_thread(ctx.request.images[index].base64)
        return {"bytesBase64Encoded": encoded, "mimeType": ref["mimeType"]}
    return ref


async def _decode_chunks(encoded: str) -> AsyncIterator[bytes]:
    """Decode a base64 string slice by slice in a thread, so only the string itself and
    one small decoded chunk are ever held (never a second full copy)."""
    if any(c in encoded[:4096] for c in "\r\n "):
        encoded = await asyncio.to_thread(lambda: "".join(encoded.split()))
    for start in range(0, len(encoded), B64_CHUNK):
        yield await asyncio.to_thread(base64.b64decode, encoded[start : start + B64_CHUNK])


def _first_sample(response: dict[str, Any]) -> dict[str, Any] | None:
    """The first generated video in either surface's response shape."""
    gvr = response.get("generateVideoResponse")
    if isinstance(gvr, dict):
        samples = gvr.get("generatedSamples")
        if isinstance(samples, list) and samples and isinstance(samples[0], dict):
            video = samples[0].get("video")
            return video if isinstance(video, dict) else None
    videos = response.get("videos")
    if isinstance(videos, list) and videos and isinstance(videos[0], dict):
        return videos[0]
    return None


def _inline(sample: dict[str, Any] | None) -> tuple[str | None, str | None]:
    if not sample:
        return None, None
    if isinstance(sample.get("encodedVideo"), str):  # Gemini inline
        return sample["encodedVideo"], sample.get("encoding")
    if isinstance(sample.get("bytesBase64Encoded"), str):  # Vertex inline
        return sample["bytesBase64Encoded"], sample.get("mimeType")
    return None, None


def _filter_info(response: dict[str, Any]) -> tuple[int, list[str]]:
    nested = response.get("generateVideoResponse")
    src: dict[str, Any] = nested if isinstance(nested, dict) else response
    count = src.get("raiMediaFilteredCount") or 0
    reasons = src.get("raiMediaFilteredReasons") or []
    return (count if isinstance(count, int) else 0), [str(r) for r in reasons if r] if isinstance(reasons, list) else []


def interpret(op: dict[str, Any], name: str) -> PollResult:
    """Map a google.longrunning Operation to a poll result."""
    if not op.get("done"):
        return PollResult(status="in_progress", vendor_status="running")
    error = op.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or "Veo reported an error")
        return PollResult(
            status="failed",
            vendor_status=f"error {error.get('code')}",
            error=TaskError("vendor_failed", f"Veo failed: {message}"),
        )
    response = op.get("response")
    response = response if isinstance(response, dict) else {}
    sample = _first_sample(response)
    if sample is not None:
        if isinstance(sample.get("uri"), str):
            return PollResult(status="completed", vendor_status="done", result={"uri": sample["uri"]})
        if isinstance(sample.get("gcsUri"), str):
            return PollResult(
                status="failed",
                vendor_status="done",
                error=TaskError(
                    "gcs_result_unsupported",
                    f"Veo wrote the video to Cloud Storage ({sample['gcsUri']}), which this gateway cannot read; "
                    "do not set storageUri for this channel.",
                ),
            )
        encoded, mime = _inline(sample)
        if encoded:
            # Keep only a marker: the base64 is fetched again in fetch_result.
            return PollResult(
                status="completed", vendor_status="done", result={"inline": True, "operation": name, "mime_type": mime}
            )
    count, reasons = _filter_info(response)
    if count or reasons:
        text = "; ".join(reasons) or "the video was blocked by Google's safety filters"
        return PollResult(
            status="failed",
            vendor_status="filtered",
            error=TaskError("content_filtered", f"Veo filtered the result: {text}"),
        )
    return PollResult(
        status="failed", vendor_status="done", error=TaskError("vendor_failed", "Veo finished without a video")
    )
