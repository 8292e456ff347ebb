"""The fal vendor plugin: fal's queue protocol once, every fal video app as data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

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
)
from vidgate.errors import ModelRetired, VendorUnavailable

from . import mapping
from .auth import DEFAULT_JWKS_URL, WebhookVerifier
from .client import call, detail, fail, url

DEFAULT_BASE_URL = "https://queue.fal.run"
MAX_CALLBACK_BYTES = 1024 * 1024
#: fal status -> vidgate status (COMPLETED is decided by the result: see poll).
STATUS = {"IN_QUEUE": "queued", "IN_PROGRESS": "in_progress"}


def app_root(app: str) -> str:
    """``owner/name`` of an app id: status, result and cancel URLs carry no subpath
    (vendor-protocols-2026 §2.12; fal-client's ``AppId``/``from_request_id`` do the same)."""
    parts = app.strip("/").split("/")
    if parts[0] in ("workflows", "comfy"):  # namespaced apps keep their namespace
        return "/".join(parts[:3])
    return "/".join(parts[:2])


def _request_url(ctx: CallContext, handle: Mapping[str, Any], *tail: str) -> str:
    rid = quote(str(handle["request_id"]), safe="")
    return url(ctx, app_root(str(handle["app"])), "requests", rid, *tail)


class Fal(VendorPlugin):
    """fal.ai's queue (``queue.fal.run``): any fal video app, described by a
    :class:`~vidgate_fal.mapping.FalApp` (built in, or ``[channels.options.models.NAME]``).

    Channel credentials: ``api_key`` (sent as ``Authorization: Key <api_key>``).
    """

    name = "fal"
    models = mapping.CATALOGUE.models()
    poll_interval = 5.0
    deadline = 30 * 60.0
    default_base_url = DEFAULT_BASE_URL
    credentials = ("api_key",)
    description = "fal.ai queue: Kling, Hailuo, Seedance, Pika, Veo, Wan and any fal video app"

    def __init__(self) -> None:
        self._verifier = WebhookVerifier()

    # -- configuration ----------------------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        problems = [*super().validate_channel(channel), *mapping.CATALOGUE.channel_problems(channel)]
        jwks = channel.options.get("webhook_jwks_url")
        if jwks is not None and not (isinstance(jwks, str) and jwks.startswith(("https://", "http://"))):
            problems.append("options.webhook_jwks_url: must be an http(s) URL")
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
        app = str(job.payload["app"])
        target = url(ctx, app)
        if ctx.callback_url:
            target += "?" + urlencode({"fal_webhook": ctx.callback_url})
        status, body, headers = await call(ctx, "POST", target, await catalogue.vendor_input(job, ctx), what="submit")
        if status == 404:
            message, _ = detail(body)
            raise ModelRetired(f"fal: {message or f'no app {app}'}", http_status=404)
        if status >= 400:
            raise catalogue.unified_error(fail(ctx, status, body, headers, "submit"), job)
        rid = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(rid, str) or not rid:
            raise VendorUnavailable("fal accepted the request but gave no request_id", http_status=status)
        ctx.log.info("fal_submitted", fal_request_id=rid, app=app)
        handle = {"request_id": rid, "app": app, "video_path": job.payload.get("video_path", "video.url")}
        return Submission(handle=handle, vendor_task_id=rid)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        status, body, headers = await call(ctx, "GET", _request_url(ctx, handle, "status"), what="status")
        if status == 404:
            raise TaskNotFound(f"fal does not know request {handle['request_id']}", http_status=404)
        if status >= 400:
            raise fail(ctx, status, body, headers, "status")
        word = body.get("status") if isinstance(body, dict) else None
        if not isinstance(word, str):
            raise VendorUnavailable("fal status has no status word", http_status=status)
        if word in STATUS:
            return PollResult(status=STATUS[word], vendor_status=word)
        if word != "COMPLETED":
            return PollResult.unknown(word)
        if body.get("error"):  # COMPLETED with an error: the app failed (fal-client reads this too)
            return self._failed(str(body["error"]), body.get("error_type"), word)
        return await self._result(handle, ctx)

    def _failed(self, message: str, error_type: Any, word: str) -> PollResult:
        # fal's moderation error_type names are not in the reference (unconfirmed).
        code = (
            "content_filtered" if error_type in ("content_policy_violation", "content_moderation") else "vendor_failed"
        )
        return PollResult(status="failed", error=TaskError(code, f"fal: {message}"), vendor_status=word)

    async def _result(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        status, body, headers = await call(ctx, "GET", _request_url(ctx, handle), what="result")
        if status >= 500 or status == 429 or status in (401, 403):
            raise fail(ctx, status, body, headers, "result")
        if status >= 400:
            # A COMPLETED request whose result is an error (reference: unconfirmed shape):
            # the app's own verdict, so the task fails with fal's reason.
            message, _ = detail(body)
            error_type = (body.get("error_type") if isinstance(body, dict) else None) or headers.get("x-fal-error-type")
            return self._failed(message or f"the app failed (HTTP {status})", error_type, "COMPLETED")
        video = catalogue.find_video(body, str(handle.get("video_path") or "video.url"))
        if video is None:
            return PollResult(
                status="failed",
                error=TaskError("vendor_failed", "fal completed the request but its result has no video"),
                vendor_status="COMPLETED",
            )
        return PollResult(status="completed", result={"url": video}, vendor_status="COMPLETED")

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None
        return await ctx.download(result["url"])  # fal CDN URLs need no key

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        # Queued requests are removed (never billed); running ones get a signal the app
        # may honour, and may still bill. Ask the state first so the outcome says which.
        queued = False
        status, body, _ = await call(ctx, "GET", _request_url(ctx, handle, "status"), what="status")
        if status < 400 and isinstance(body, dict):
            queued = body.get("status") == "IN_QUEUE"
        status, body, headers = await call(ctx, "PUT", _request_url(ctx, handle, "cancel"), what="cancel")
        word = body.get("status") if isinstance(body, dict) else None
        if word == "ALREADY_COMPLETED":
            return CancelResult(CancelOutcome.FINISHED, "fal: already completed")
        if word == "NOT_FOUND" or status == 404:
            raise TaskFailed("fal no longer knows the request", code="vendor_task_lost")
        if status >= 400:
            raise fail(ctx, status, body, headers, "cancel")
        if queued:
            return CancelResult(CancelOutcome.CANCELLED, "fal: removed from the queue")
        return CancelResult(CancelOutcome.CANCELLED_AFTER_START, "fal: cancellation requested while running")

    async def read_callback(self, body: bytes, headers: Mapping[str, str], ctx: CallContext) -> CallbackResult | None:
        """fal's ``fal_webhook`` POST ``{request_id, status: OK|ERROR, payload, error}``,
        signed with ED25519 (:mod:`vidgate_fal.auth`; keys from ``options.webhook_jwks_url``).
        A signature that does not verify (forged, stale, or keys not to be had) is
        ignored (answered 401); a valid one only makes the task be polled at once."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        url = str(ctx.channel.options.get("webhook_jwks_url") or DEFAULT_JWKS_URL)
        if problem := await self._verifier.problem(body, headers, url, ctx):
            ctx.log.warning("fal_webhook_unverified", reason=problem)
            return CallbackResult(verified=False)
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        rid = obj.get("request_id") if isinstance(obj, dict) else None
        if not isinstance(rid, str) or not rid:
            return None
        return CallbackResult(vendor_task_id=rid, verified=True)
