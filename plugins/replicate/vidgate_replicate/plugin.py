"""The Replicate vendor plugin: the predictions API once, every video model as data."""

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
    Submission,
    TaskError,
    TaskFailed,
    TaskNotFound,
    VendorJob,
    VendorPlugin,
    VideoRequest,
    catalogue,
    verify_standard_webhook,
)
from vidgate.errors import ModelRetired, VendorUnavailable

from . import mapping
from .client import call, fail, problem, url

DEFAULT_BASE_URL = "https://api.replicate.com"
MAX_CALLBACK_BYTES = 1024 * 1024
#: Replicate status -> vidgate status (``succeeded``/``failed``/``aborted`` need more: see poll).
STATUS = {"starting": "queued", "processing": "in_progress", "canceled": "cancelled"}


def _usage(prediction: Mapping[str, Any]) -> dict[str, Any] | None:
    metrics = prediction.get("metrics")
    predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
    if isinstance(predict_time, (int, float)) and not isinstance(predict_time, bool):
        return {"compute_seconds": float(predict_time)}
    return None


class Replicate(VendorPlugin):
    """Replicate's predictions API: any video model, described by a
    :class:`~vidgate_replicate.mapping.ReplicateModel` (built in, or
    ``[channels.options.models.NAME]``).

    Channel credentials: ``api_key`` (Bearer), ``webhook_secret`` (optional, ``whsec_...``
    from ``GET /v1/webhooks/default/secret``: enables webhooks, verified per Standard Webhooks).
    """

    name = "replicate"
    models = mapping.CATALOGUE.models()
    poll_interval = 5.0
    deadline = 30 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("api_key",)
    description = "Replicate predictions: Seedance, Kling, Hailuo, Veo, Wan and any Replicate video model"

    # -- configuration ----------------------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = [*super().validate_channel(channel), *mapping.CATALOGUE.channel_problems(channel)]
        secret = channel.credentials.get("webhook_secret")
        if secret is not None and not (isinstance(secret, str) and secret.startswith("whsec_")):
            problems.append("credentials.webhook_secret: must be Replicate's whsec_... signing secret")
        return problems

    def channel_models(self, channel: Channel) -> list[Model]:
        return mapping.CATALOGUE.channel_models(channel)

    # -- mapping ----------------------------------------------------------------------

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return catalogue.validate(request, mapping.CATALOGUE.entry_for(model.name, channel))

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model.name, mapping.CATALOGUE.entry_for(model.name, channel))

    # -- vendor calls -----------------------------------------------------------------

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        model, version = str(job.payload["model"]), job.payload.get("version")
        body: dict[str, Any] = {"input": await catalogue.vendor_input(job, ctx)}
        if version:
            target = url(ctx, "predictions")
            body["version"] = version
        else:
            owner, name = model.split("/", 1)
            target = url(ctx, "models", quote(owner, safe=""), quote(name, safe=""), "predictions")
        # Webhooks only when they can be verified: unsigned ones would be refused anyway.
        if ctx.callback_url and ctx.channel.credentials.get("webhook_secret"):
            body["webhook"] = ctx.callback_url
            body["webhook_events_filter"] = ["start", "completed"]
        status, answer, headers = await call(ctx, "POST", target, body)
        if status == 404:
            message, _ = problem(answer)
            raise ModelRetired(f"Replicate: {message or f'no model {model}'}", http_status=404)
        if status >= 400:
            raise catalogue.unified_error(fail(ctx, status, answer, headers, "create"), job)
        pid = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(pid, str) or not pid:
            raise VendorUnavailable("Replicate accepted the prediction but gave no id", http_status=status)
        ctx.log.info("replicate_submitted", prediction_id=pid, model=model)
        return Submission(handle={"id": pid, "video_path": job.payload.get("video_path", "")}, vendor_task_id=pid)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        status, body, headers = await call(ctx, "GET", url(ctx, "predictions", quote(str(handle["id"]), safe="")))
        if status == 404:
            raise TaskNotFound(f"Replicate does not know prediction {handle['id']}", http_status=404)
        if status >= 400:
            raise fail(ctx, status, body, headers, "get")
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise VendorUnavailable("Replicate prediction has no status", http_status=status)
        return self._result(body, handle)

    def _result(self, prediction: dict[str, Any], handle: Mapping[str, Any]) -> PollResult:
        word = str(prediction["status"])
        if word in STATUS:
            return PollResult(status=STATUS[word], vendor_status=word)
        if word == "failed":
            reason = str(prediction.get("error") or "Replicate reported that the prediction failed.")
            return PollResult(
                status="failed", error=TaskError("vendor_failed", f"Replicate: {reason}"), vendor_status=word
            )
        if word == "aborted":  # a deadline passed before it started: not charged by Replicate
            return PollResult(
                status="failed",
                error=TaskError("vendor_aborted", "Replicate aborted the prediction before it started"),
                vendor_status=word,
            )
        if word != "succeeded":
            return PollResult.unknown(word)
        video = catalogue.find_video(prediction.get("output"), str(handle.get("video_path") or ""))
        if video is None:
            return PollResult(
                status="failed",
                error=TaskError("vendor_failed", "Replicate's prediction succeeded without a video output"),
                vendor_status=word,
            )
        # Replicate deletes outputs an hour after an API prediction: the worker copies now.
        return PollResult(status="completed", result={"url": video}, vendor_status=word, usage=_usage(prediction))

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None
        return await ctx.download(result["url"])  # delivery URLs need no token

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        target = url(ctx, "predictions", quote(str(handle["id"]), safe=""), "cancel")
        status, body, headers = await call(ctx, "POST", target)
        if status == 404:
            raise TaskFailed("Replicate no longer knows the prediction", code="vendor_task_lost")
        if status >= 400:
            raise fail(ctx, status, body, headers, "cancel")
        word = body.get("status") if isinstance(body, dict) else None
        if word in ("succeeded", "failed", "aborted"):
            return CancelResult(CancelOutcome.FINISHED, f"Replicate: already {word}")
        assert isinstance(body, dict)
        if body.get("started_at") is None:
            return CancelResult(CancelOutcome.CANCELLED, "Replicate: canceled before it started")
        # Replicate bills the time a prediction ran; say it when the answer has it.
        return CancelResult(CancelOutcome.CANCELLED_AFTER_START, "Replicate: canceled while running", _usage(body))

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult | None:
        """Replicate POSTs the whole prediction, signed per Standard Webhooks with the
        account's secret (``credentials.webhook_secret``). A callback that does not verify
        is answered 401 and ignored; one that does only makes the task be polled now."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        secret = channel.credentials.get("webhook_secret")
        if not verify_standard_webhook(body, headers, secret if isinstance(secret, str) else None):
            return CallbackResult(verified=False)
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        pid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(pid, str) or not pid:
            return None
        return CallbackResult(vendor_task_id=pid, verified=True)
