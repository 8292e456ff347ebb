"""The Gemini Omni vendor plugin: background interactions, polled, cancellable."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

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
    verify_standard_webhook,
)
from vidgate.errors import RequestInvalid, TaskFailed, VendorRejected, VendorUnavailable

from . import mapping
from .client import GeminiClient

B64_CHUNK = 4 * 256 * 1024  # base64 characters per decoded chunk (768 KiB of video)


class GeminiPlugin(VendorPlugin):
    """Google Gemini Omni video on the Interactions API (``background: true``)."""

    name = "gemini"
    models = mapping.MODELS
    poll_interval = 10.0
    deadline = 20 * 60.0
    default_base_url = "https://generativelanguage.googleapis.com"
    credentials = ("api_key",)
    description = "Google Gemini Omni video generation (Gemini API Interactions)"

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
        return await self._start(job, ctx, None, job.seconds)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``extend``: a new interaction chained with ``previous_interaction_id`` onto the
        source's, within the model's 40 s total."""
        if operation != "extend":
            raise VendorRejected(f"Gemini Omni cannot {operation} videos here", param="video")
        previous = source.handle.get("id")
        if not isinstance(previous, str):
            raise VendorRejected("the source task has no interaction to extend", param="video")
        total = int(source.handle.get("total_seconds") or source.seconds or 0) + job.seconds
        if total > mapping.MAX_TOTAL_SECONDS:
            raise VendorRejected(
                f"an extension chain is at most {mapping.MAX_TOTAL_SECONDS} s; this one would be {total} s",
                param="seconds",
            )
        return await self._start(job, ctx, previous, total)

    async def _start(self, job: VendorJob, ctx: CallContext, previous: str | None, total: int) -> Submission:
        body = copy.deepcopy(job.payload)
        body.pop("extend", None)
        body["input"] = [await _resolve(block, ctx) for block in body["input"]]
        if previous is not None:
            body["previous_interaction_id"] = previous
        if ctx.callback_url and ctx.channel.credentials.get("webhook_secret"):
            # A hint only: dynamic webhooks were reported never firing for Omni, so the
            # task is polled all the same.
            body["webhook_config"] = {"uris": [ctx.callback_url], "user_metadata": {"task": ctx.task_id}}
        answer = await GeminiClient(ctx).create(body)
        del body
        interaction_id = answer.get("id")
        if not isinstance(interaction_id, str) or not interaction_id:
            raise VendorUnavailable("Google answered the create call without an interaction id")
        ctx.log.info("gemini_submitted", interaction=interaction_id, status=answer.get("status"))
        return Submission(handle={"id": interaction_id, "total_seconds": total}, vendor_task_id=interaction_id)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        return interpret(await GeminiClient(ctx).get(handle["id"]))

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # no thumbnails from Google; the gateway makes its own
        if isinstance(result.get("uri"), str):
            uri = result["uri"]
            # Google's file URIs need the key; it goes only to the channel's own origin.
            client = GeminiClient(ctx)
            same = uri.startswith(client.root.rsplit("/", 2)[0] + "/")
            headers = {"x-goog-api-key": str(ctx.channel.credentials["api_key"])} if same else None
            return await ctx.download(uri, headers=headers)
        # Inline bytes were not stored with the task: fetch the interaction again and
        # decode its base64 slice by slice in a thread.
        answer = await GeminiClient(ctx).get(handle["id"])
        video = _video(answer)
        del answer
        if video is None or not isinstance(video.get("data"), str):
            raise TaskFailed("the finished interaction no longer carries the video", code="result_unavailable")
        return MediaSource(_decode_chunks(video["data"]), str(video.get("mime_type") or "video/mp4"))

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        answer = await GeminiClient(ctx).cancel(handle["id"])
        status = str(answer.get("status") or "").lower()
        if status == "cancelled":
            facts = mapping.usage_facts(answer.get("usage"))
            if facts.get("tokens"):
                return CancelResult(CancelOutcome.CANCELLED_AFTER_START, "Google cancelled it and bills tokens", facts)
            return CancelResult(CancelOutcome.CANCELLED, "Google cancelled the interaction")
        if status in ("completed", "failed", "incomplete", "budget_exceeded"):
            return CancelResult(CancelOutcome.FINISHED, f"the interaction had already ended ({status})")
        return CancelResult(CancelOutcome.REFUSED, f"Google answered the cancel with status {status or 'none'}")

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult | None:
        """A Standard-Webhooks delivery from Google, trusted only when it verifies with
        the channel's ``credentials.webhook_secret``; the task is then polled at once."""
        secret = channel.credentials.get("webhook_secret")
        if not verify_standard_webhook(body, headers, secret if isinstance(secret, str) else None):
            return CallbackResult(verified=False)
        try:
            event = json.loads(body)
        except ValueError:
            return None
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict):
            return CallbackResult(verified=True)
        # The payload shape is unconfirmed (§2.3): a thin {"id"} or the interaction.
        ident = data.get("id") or data.get("interaction_id") or (data.get("interaction") or {}).get("id")
        return CallbackResult(vendor_task_id=ident if isinstance(ident, str) else None, verified=True)


async def _resolve(block: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    if block.get("type") != "image":
        return block
    if "$fetch" in block:
        data, mime = await ctx.fetch_image(block["$fetch"], param=block.get("param") or "image")
        return {"type": "image", "data": await asyncio.to_thread(_b64, data), "mime_type": mime}
    if "$request_image" in block:
        index = block["$request_image"]
        if ctx.request is None or not 0 <= index < len(ctx.request.images):
            raise ValueError(f"the job refers to image {index} the request does not have")
        encoded = await asyncio.to_thread(ctx.request.images[index].base64)
        return {"type": "image", "data": encoded, "mime_type": block["mime_type"]}
    return block


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _decode_chunks(encoded: str) -> AsyncIterator[bytes]:
    """Decode a base64 string slice by slice in a thread: only the string and one small
    decoded chunk are held at a time, never a second full copy."""
    if any(c in encoded[:4096] for c in "\r\n "):
        encoded = await asyncio.to_thread(lambda: "".join(encoded.split()))
    for start in range(0, len(encoded), B64_CHUNK):
        yield await asyncio.to_thread(base64.b64decode, encoded[start : start + B64_CHUNK])


def _video(interaction: dict[str, Any]) -> dict[str, Any] | None:
    """The first video content of the interaction's ``model_output`` steps (or the
    SDK-style ``output_video``)."""
    for step in interaction.get("steps") or []:
        if isinstance(step, dict) and step.get("type") == "model_output":
            for item in step.get("content") or []:
                if isinstance(item, dict) and item.get("type") == "video":
                    return item
    out = interaction.get("output_video")
    return out if isinstance(out, dict) else None


def _errors(interaction: dict[str, Any]) -> str:
    errors = interaction.get("errors")
    texts = [str(e.get("message") or e.get("code")) for e in errors or [] if isinstance(e, dict)]
    for step in interaction.get("steps") or []:
        if isinstance(step, dict) and isinstance(step.get("error"), dict):
            texts.append(str(step["error"].get("message") or ""))
    return "; ".join(t for t in texts if t)


def interpret(interaction: dict[str, Any]) -> PollResult:
    """Map an Interaction to a poll result."""
    word = str(interaction.get("status") or "")
    status = word.lower()
    if status in ("queued", "in_progress"):
        return PollResult(status=mapping.STATUS[status], vendor_status=word)
    if status == "cancelled":
        return PollResult(status="cancelled", vendor_status=word, error=TaskError("cancelled", "cancelled at Google"))
    if status in mapping.FAILED:
        text = _errors(interaction) or f"the interaction ended {status}"
        code = mapping.FAILED[status]
        if status == "failed" and any(k in text.lower() for k in ("safety", "blocked", "policy")):
            code = "content_filtered"
        return PollResult(status="failed", vendor_status=word, error=TaskError(code, f"Gemini: {text}"))
    if status != "completed":
        return PollResult.unknown(word or "(none)")
    usage = mapping.usage_facts(interaction.get("usage"))
    video = _video(interaction)
    if video is not None and isinstance(video.get("uri"), str):
        return PollResult(status="completed", vendor_status=word, result={"uri": video["uri"]}, usage=usage)
    if video is not None and isinstance(video.get("data"), str) and video["data"]:
        return PollResult(
            status="completed",
            vendor_status=word,
            result={"inline": True, "mime_type": video.get("mime_type") or "video/mp4"},
            usage=usage,
        )
    text = _errors(interaction) or "the interaction completed without a video"
    return PollResult(status="failed", vendor_status=word, error=TaskError("vendor_failed", f"Gemini: {text}"))
