"""A faithful fake of xAI's REST video API (Grok Imagine), for tests (ours and yours).

It follows vendor-protocols-2026.md §2.11: Bearer auth; ``POST /v1/videos/generations``
(strict: models, ``duration`` 1-15, the seven aspect ratios, 480p/720p and 1080p only on
the 1.5 models, ``image{url}``, ``last_frame``/``keyframes`` only on 1.5, 1-7
``reference_images`` not with ``image`` and at most 720p, at most 3 ``reference_audios``),
``POST /v1/videos/edits`` and ``/v1/videos/extensions`` with ``video{url}``, each answered
``{"request_id"}``; ``GET /v1/videos/{request_id}`` answers HTTP 202 while pending (the
first time with an empty body, as xAI sometimes does) and 200 with ``status`` ``done`` /
``failed`` / ``expired`` and ``video{url, duration, respect_moderation}``,
``usage{cost_in_usd_ticks}``. Errors are ``{"error": {"code", "message"}}``.

Prompt keywords (on top of :data:`vidgate.fakekit.KEYWORDS`): ``[expired]`` ends the
request ``expired``; ``[moderated]`` ends it ``done`` with ``respect_moderation: false``.

    fake = FakeXAI()
    async with fake.serve():
        channel = {"name": "xai", "vendor": "xai", "base_url": fake.url,
                   "credentials": {"api_key": fake.secret}}
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded

__all__ = ["FakeXAI"]

MODELS = (
    "grok-imagine-video",
    "grok-imagine-video-1.5",
    "grok-imagine-video-1.5-lite",
    "grok-imagine-video-1.5-preview",
)
V15 = MODELS[1:]
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
RESOLUTIONS = ("480p", "720p", "1080p")
MAX_PROMPT = 4096
GENERATE_FIELDS = {
    "model",
    "prompt",
    "duration",
    "aspect_ratio",
    "resolution",
    "image",
    "last_frame",
    "keyframes",
    "reference_images",
    "reference_audios",
    "generate_audio",
    "user",
    "storage_options",
}
EDIT_FIELDS = {"model", "prompt", "video", "user"}
EXTEND_FIELDS = EDIT_FIELDS | {"duration"}
#: A tick's worth is unconfirmed; the fake bills 0.05 USD/s as 5e8 ticks per second.
TICKS_PER_SECOND = 500_000_000


class _Reject(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid_argument") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _is_url(value: Any, *, data_kind: str | None = "image") -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith(("https://", "http://")):
        return True
    return data_kind is not None and value.startswith(f"data:{data_kind}/") and ";base64," in value


def _url_object(value: Any, field: str, *, data_kind: str | None = "image") -> str:
    if not isinstance(value, dict) or set(value) != {"url"} or not _is_url(value["url"], data_kind=data_kind):
        raise _Reject(400, f"`{field}` must be an object {{url}} with an http(s) URL or a data URI.")
    return str(value["url"])


class FakeXAI(FakeVendor):
    """The fake's state, switches and app.

    :param api_keys: keys accepted as ``Authorization: Bearer <key>`` (default: the base
        class's ``secret``).
    :param retired_models: models the create answers 404 ``model not found`` for.
    """

    vendor = "xAI"
    codes: ClassVar[dict[str, Any]] = {
        "rate_limit": "rate_limit_exceeded",
        "server": "internal_error",
        "auth": "unauthenticated",
        "rejected": "invalid_argument",
    }
    status_words = {
        "queued": "pending",
        "running": "pending",
        "succeeded": "done",
        "failed": "failed",
        "unknown": "reticulating_splines",
    }

    def __init__(
        self, api_keys: Iterable[str] | None = None, *, retired_models: Iterable[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_keys = set(api_keys) if api_keys is not None else {self.secret}
        self.retired_models = set(retired_models)

    # -- inspection -------------------------------------------------------------------

    def creates(self, operation: str = "generations") -> list[Recorded]:
        """Recorded ``POST /v1/videos/{generations|edits|extensions}`` requests."""
        return self.recorded("POST", f"/v1/videos/{operation}")

    def polls(self) -> list[Recorded]:
        return [r for r in self.recorded("GET") if r.path.startswith("/v1/videos/")]

    # -- app --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos/generations", self._generate, methods=["POST"]),
            Route("/v1/videos/edits", self._edit, methods=["POST"]),
            Route("/v1/videos/extensions", self._extend, methods=["POST"]),
            Route("/v1/videos/{request_id}", self._get, methods=["GET"]),
        ]

    def code_for(self, kind: str) -> Any:
        # A kind is one of the kit's (mapped by codes) or an xAI code itself.
        return self.codes.get(kind, kind)

    def error(self, kind: str, message: str, status: int) -> Response:
        return JSONResponse({"error": {"code": self.code_for(kind), "message": message}}, status_code=status)

    def new_job_id(self) -> str:
        return str(uuid.uuid4())

    def _auth(self, rec: Recorded) -> Response | None:
        auth = rec.headers.get("authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.api_keys:
            return None
        return self.reject(rec, "auth", "Incorrect API key provided. Check the key at console.x.ai.", 401)

    async def _begin(self, request: Request, fields: set[str]) -> tuple[Recorded, dict[str, Any] | Response]:
        rec = await self.record(request)
        if (denied := self._auth(rec)) is not None:
            return rec, denied
        body = rec.json
        if not request.headers.get("content-type", "").startswith("application/json") or not isinstance(body, dict):
            return rec, self.reject(rec, "rejected", "The request body must be a JSON object.", 400)
        # xAI's strictness on unknown fields is unconfirmed; the fake refuses them so a
        # plugin that invents fields is caught.
        if unknown := sorted(set(body) - fields):
            return rec, self.reject(rec, "rejected", f"Unknown field(s): {', '.join(unknown)}.", 400)
        model = body.get("model")
        if model in self.retired_models or (isinstance(model, str) and model not in MODELS):
            return rec, self.reject(
                rec, "not_found", f"The model {model} does not exist or your team does not have access to it.", 404
            )
        if not isinstance(model, str):
            return rec, self.reject(rec, "rejected", "`model` is required.", 400)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt or len(prompt) > MAX_PROMPT:
            return rec, self.reject(rec, "rejected", f"`prompt` must be 1 to {MAX_PROMPT} characters.", 400)
        if refusal := self.create_fault(prompt, rec):
            return rec, refusal
        return rec, body

    @staticmethod
    def _duration(body: dict[str, Any]) -> int:
        duration = body.get("duration", 8)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 15:
            raise _Reject(400, "`duration` must be an integer from 1 to 15.")
        return duration

    def _check_generation(self, body: dict[str, Any]) -> int:
        model = body["model"]
        duration = self._duration(body)
        ratio = body.get("aspect_ratio", "16:9")
        if ratio not in ASPECT_RATIOS:
            raise _Reject(400, f"`aspect_ratio` must be one of {', '.join(ASPECT_RATIOS)}.")
        resolution = body.get("resolution", "480p")
        if resolution not in RESOLUTIONS:
            raise _Reject(400, f"`resolution` must be one of {', '.join(RESOLUTIONS)}.")
        if resolution == "1080p" and model not in V15:
            raise _Reject(400, f"1080p is not available for {model}.")
        if "image" in body:
            _url_object(body["image"], "image")
        for field in ("last_frame", "keyframes"):
            if field in body and model not in V15:
                raise _Reject(400, f"`{field}` is only available for the 1.5 models.")
        if "last_frame" in body:
            _url_object(body["last_frame"], "last_frame")
        if "keyframes" in body:
            frames = body["keyframes"]
            if not isinstance(frames, list) or not 1 <= len(frames) <= 4:
                raise _Reject(400, "`keyframes` takes 1 to 4 entries.")
            for frame in frames:
                at = frame.get("timestamp_s") if isinstance(frame, dict) else None
                if not isinstance(frame, dict) or set(frame) != {"image", "timestamp_s"}:
                    raise _Reject(400, "a keyframe is {image{url}, timestamp_s}.")
                _url_object(frame["image"], "keyframes.image")
                if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or at < 0:
                    raise _Reject(400, "`timestamp_s` must be a number >= 0.")
        if "reference_images" in body:
            refs = body["reference_images"]
            if not isinstance(refs, list) or not 1 <= len(refs) <= 7:
                raise _Reject(400, "`reference_images` takes 1 to 7 images.")
            for ref in refs:
                _url_object(ref, "reference_images")
            if "image" in body:
                raise _Reject(400, "`reference_images` cannot be combined with `image`.")
            if resolution == "1080p":
                raise _Reject(400, "reference-to-video supports at most 720p.")
        if "reference_audios" in body:
            audios = body["reference_audios"]
            if not isinstance(audios, list) or len(audios) > 3:
                raise _Reject(400, "`reference_audios` takes at most 3 entries.")
            for audio in audios:
                ok = isinstance(audio, dict) and (
                    (set(audio) == {"url"} and _is_url(audio["url"], data_kind="audio"))
                    or (set(audio) == {"voice_id"} and isinstance(audio["voice_id"], str))
                )
                if not ok:
                    raise _Reject(400, "a reference audio is {url} or {voice_id}.")
        if "generate_audio" in body and not isinstance(body["generate_audio"], bool):
            raise _Reject(400, "`generate_audio` must be a boolean.")
        return duration

    def _started(self, rec: Recorded, body: dict[str, Any], seconds: int, **data: Any) -> Response:
        job = self.new_job(body["prompt"], seconds=seconds, model=body["model"], body=body, **data)
        rec.status = 200
        return JSONResponse({"request_id": job.id})

    async def _generate(self, request: Request) -> Response:
        rec, body = await self._begin(request, GENERATE_FIELDS)
        if isinstance(body, Response):
            return body
        try:
            seconds = self._check_generation(body)
        except _Reject as exc:
            return self.reject(rec, exc.code, exc.message, exc.status)
        return self._started(rec, body, seconds, image=body.get("image"), operation="generate")

    def _source(self, body: dict[str, Any]) -> FakeJob | None:
        """The fake's own job whose result URL ``video.url`` is, if it is one."""
        url = _url_object(body.get("video"), "video", data_kind=None)
        for job in self.jobs.values():
            if self.result_url(job) == url:
                if job.state != "succeeded":
                    raise _Reject(400, "The source video is not available.")
                return job
        return None  # another URL: xAI would fetch it; the fake takes it on trust

    async def _edit(self, request: Request) -> Response:
        rec, body = await self._begin(request, EDIT_FIELDS)
        if isinstance(body, Response):
            return body
        try:
            source = self._source(body)
        except _Reject as exc:
            return self.reject(rec, exc.code, exc.message, exc.status)
        seconds = source.seconds if source is not None and source.seconds else 8
        return self._started(rec, body, seconds, operation="edit", source=source.id if source else None)

    async def _extend(self, request: Request) -> Response:
        rec, body = await self._begin(request, EXTEND_FIELDS)
        if isinstance(body, Response):
            return body
        try:
            source = self._source(body)
            seconds = self._duration(body)
        except _Reject as exc:
            return self.reject(rec, exc.code, exc.message, exc.status)
        return self._started(rec, body, seconds, operation="extend", source=source.id if source else None)

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if (denied := self._auth(rec)) is not None:
            return denied
        job = self.jobs.get(request.path_params["request_id"])
        if job is None:
            return self.reject(rec, "not_found", "No video request with that id.", 404)
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = self.advance(job)
        model = job.data.get("model")
        if state == "succeeded" and "[expired]" in job.prompt:
            rec.status = 200
            return JSONResponse({"status": "expired", "model": model})
        if state in ("queued", "running"):
            rec.status = 202
            if job.polls == 1:
                return Response(b"", status_code=202)  # xAI sometimes sends an empty pending body
            progress = min(99, 100 * job.polls // (self.polls_to_finish + 1))
            return JSONResponse({"status": "pending", "progress": progress, "model": model}, status_code=202)
        rec.status = 200
        if state == "unknown":
            return JSONResponse({"status": self.word("unknown"), "model": model})
        if state == "failed":
            return JSONResponse(
                {
                    "status": "failed",
                    "model": model,
                    "error": {"code": "generation_failed", "message": job.error or "Video generation failed."},
                }
            )
        seconds = job.seconds or 8
        return JSONResponse(
            {
                "status": "done",
                "model": model,
                "progress": 100,
                "video": {
                    "url": self.result_url(job),
                    "duration": seconds,
                    "respect_moderation": "[moderated]" not in job.prompt,
                },
                "usage": {"cost_in_usd_ticks": seconds * TICKS_PER_SECOND},
            }
        )
