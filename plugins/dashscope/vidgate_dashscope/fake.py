"""A fake DashScope (Model Studio) server, faithful to the documented protocol.

* ``POST /api/v1/services/aigc/video-generation/video-synthesis``: ``Authorization:
  Bearer <key>`` and ``X-DashScope-Async: enable`` required (without the header DashScope
  refuses: synchronous calls are not supported); answers
  ``{"output": {"task_id", "task_status": "PENDING"}, "request_id"}``.
* ``GET /api/v1/tasks/{task_id}``: ``{"output": {task_id, task_status, submit_time,
  scheduled_time, end_time, video_url | code+message, orig_prompt}, "usage", "request_id"}``;
  an id it does not know answers HTTP 200 with ``task_status: "UNKNOWN"``, as DashScope does.
* ``POST /api/v1/tasks/{task_id}/cancel``: PENDING tasks only, else ``UnsupportedOperation``.
* Errors are ``{"code", "message", "request_id"}``.

Besides the kit's prompt keywords (:data:`vidgate.fakekit.KEYWORDS`), a prompt with
``[filtered]`` ends ``FAILED`` with ``DataInspectionFailed`` (output moderation).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections import deque
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded
from vidgate.request import image_dimensions

CREATE = "/api/v1/services/aigc/video-generation/video-synthesis"

#: The fake's own model table (from Model Studio's API reference, not the plugin's).
_RATIOS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:3": 4 / 3, "3:4": 3 / 4}
_PIXELS = {
    "720P": {"16:9": "1280*720", "9:16": "720*1280", "1:1": "960*960", "4:3": "1088*832", "3:4": "832*1088"},
    "1080P": {"16:9": "1920*1080", "9:16": "1080*1920", "1:1": "1440*1440", "4:3": "1632*1248", "3:4": "1248*1632"},
}
_SIZES = {s: (t, r) for t, row in _PIXELS.items() for r, s in row.items()}
MODELS: dict[str, dict[str, Any]] = {
    "wan2.6-t2v": {"durations": range(2, 16), "shape": "size", "images": 0},
    "wan2.6-i2v": {"durations": range(2, 16), "shape": "resolution", "images": 1, "field": "img_url"},
    "wan3.0-video": {"durations": range(2, 16), "shape": "resolution", "images": 2, "field": "media"},
    "happyhorse-1.1-t2v": {"durations": range(3, 16), "shape": "resolution", "images": 0},
    "happyhorse-1.1-i2v": {"durations": range(3, 16), "shape": "resolution", "images": 1, "field": "media"},
}
STATUS_WORDS = {
    "queued": "PENDING",
    "running": "RUNNING",
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "CANCELED",
    "unknown": "WAITING_FOR_GODOT",
}
_KIND = {
    "rate_limit": ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    "rejected": ("InvalidParameter", "The request is invalid."),
    "server": ("InternalError", "An internal error has occured, please try again later."),
    "auth": ("InvalidApiKey", "Invalid API-key provided."),
}
_HTTP = {
    "InvalidApiKey": 401,
    "AccessDenied": 403,
    "Arrearage": 400,
    "InvalidParameter": 400,
    "DataInspectionFailed": 400,
    "UnsupportedOperation": 400,
    "Throttling.RateQuota": 429,
    "Throttling.AllocationQuota": 429,
    "InternalError": 500,
}


def _stamp() -> str:
    # DashScope's times are UTC+8 without an offset, milliseconds included.
    return time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime(time.time() + 8 * 3600))


def _image_shape(url: Any) -> tuple[int, int] | None:
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    return image_dimensions(data)


class FakeDashScope(FakeVendor):
    """The fake; ``secret`` is the API key it accepts."""

    vendor = "DashScope"
    status_words = STATUS_WORDS
    codes: ClassVar[dict[str, Any]] = {kind: code for kind, (code, _) in _KIND.items()}

    def __init__(self, *, secret: str = "sk-fake-dashscope-0123", polls_to_finish: int = 2, **kwargs: Any) -> None:
        super().__init__(secret=secret, polls_to_finish=polls_to_finish, **kwargs)
        self._create_errors: deque[tuple[str, str | None, int | None]] = deque()
        #: ``usage.duration`` reported on success (None: the duration asked for).
        self.billed_seconds: int | None = None

    # -- switches --------------------------------------------------------------------

    def fail_creates(self, code: str, times: int = 1, message: str | None = None, status: int | None = None) -> None:
        """The next ``times`` creates answer DashScope ``code`` (e.g. ``Arrearage``), with
        its usual HTTP status or ``status`` (DashScope sometimes says errors with HTTP 200)."""
        self._create_errors.extend([(code, message, status)] * times)

    def forget(self, job: FakeJob) -> None:
        """Drop ``job``, as DashScope does 24 h after the create: its id then reads UNKNOWN."""
        self.jobs.pop(job.id, None)

    def creates(self) -> list[Recorded]:
        return self.recorded("POST", CREATE)

    # -- rendering -------------------------------------------------------------------

    def new_job_id(self) -> str:
        return str(uuid.uuid4())

    def code_for(self, kind: str) -> Any:
        # A kind is one of the kit's (mapped by codes) or a DashScope code itself.
        return self.codes.get(kind, kind)

    def error(self, kind: str, message: str, status: int) -> Response:
        default = _KIND[kind][1] if kind in _KIND else kind
        body = {"code": self.code_for(kind), "message": message or default, "request_id": str(uuid.uuid4())}
        return JSONResponse(body, status_code=status)

    def _ok(self, rec: Recorded, body: dict[str, Any]) -> JSONResponse:
        return self.respond(rec, {**body, "request_id": str(uuid.uuid4())})

    def routes(self) -> list[BaseRoute]:
        return [
            Route(CREATE, self._create, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", self._get, methods=["GET"]),
            Route("/api/v1/tasks/{task_id}/cancel", self._cancel, methods=["POST"]),
        ]

    def _validate(self, body: Any) -> tuple[str, int, str | None, str | None] | str:
        """``(model, seconds, output size "W*H" or None, first image)`` or a complaint."""
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return "input is required"
        model = body.get("model")
        if model not in MODELS:
            return "Model not exist."
        spec = MODELS[model]
        inputs, params = body["input"], body.get("parameters") or {}
        if not isinstance(params, dict):
            return "parameters must be an object"
        prompt = inputs.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            return "Field required: input.prompt must be a string"
        duration = params.get("duration", 5)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in spec["durations"]:
            return f"The duration parameter is invalid for {model}."
        seed = params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2147483647):
            return "The seed parameter must be in [0, 2147483647]."
        images: list[Any] = []
        if "img_url" in inputs:
            images.append(inputs["img_url"])
        for item in inputs.get("media") or []:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                return "Each media item needs a type and a url."
            if item.get("type") in ("first_frame", "last_frame"):
                images.append(item["url"])
        kinds = {item.get("type") for item in inputs.get("media") or []}
        if images and any(str(k).startswith("reference_") for k in kinds):
            return "reference_* media cannot be combined with first_frame/last_frame."
        if spec["images"] == 0 and images:
            return f"{model} does not accept images."
        if spec["images"] and not model.startswith("wan3") and not images:
            return "The img_url/first_frame is required for image-to-video."
        if len(images) > spec["images"]:
            return "Too many frames."
        if not images and not prompt and not inputs.get("media"):
            return "Field required: input.prompt"
        first = images[0] if images else None
        if spec["shape"] == "size":
            if "resolution" in params:
                return f"{model} takes size, not resolution."
            size = params.get("size", "1920*1080")
            if size not in _SIZES:
                return f"The size parameter is invalid: {size}"
            return model, duration, size, first
        if "size" in params:
            return f"{model} takes resolution, not size."
        tier = params.get("resolution", "1080P")
        if tier not in _PIXELS:
            return f"The resolution parameter is invalid: {tier}"
        ratio = params.get("ratio", "16:9")
        if first is not None:
            if "ratio" in params:
                return "The ratio parameter cannot be used with a first frame."
            shape = _image_shape(first)
            if shape is None:
                return model, duration, None, first
            w, h = shape
            ratio = min(_RATIOS, key=lambda r: abs(_RATIOS[r] - w / h))
        if ratio not in _RATIOS:
            return f"The ratio parameter is invalid: {ratio}"
        return model, duration, _PIXELS[tier][ratio], first

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message="Invalid API-key provided."):
            return refusal
        if request.headers.get("x-dashscope-async") != "enable":
            return self.reject(rec, "AccessDenied", "current user api does not support synchronous calls", 403)
        if self._create_errors:
            code, message, status = self._create_errors.popleft()
            return self.reject(rec, code, message or code, status or _HTTP.get(code, 400))
        checked = self._validate(rec.json)
        if isinstance(checked, str):
            return self.reject(rec, "InvalidParameter", checked)
        model, seconds, size, first = checked
        prompt = rec.json["input"].get("prompt") or ""
        if refusal := self.create_fault(prompt, rec):
            return refusal
        shown = size.replace("*", "x") if size else None
        job = self.new_job(prompt, seconds=seconds, size=shown, model=model, image=first, submitted=_stamp())
        if "[filtered]" in prompt:
            job.data["filtered"] = True
        return self._ok(rec, {"output": {"task_id": job.id, "task_status": "PENDING"}})

    def _output(self, job: FakeJob, state: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": job.id,
            "task_status": self.word(state),
            "submit_time": job.data["submitted"],
        }
        if state != "queued":
            out["scheduled_time"] = job.data.setdefault("scheduled", _stamp())
        if state in ("succeeded", "failed", "cancelled"):
            out["end_time"] = job.data.setdefault("ended", _stamp())
        if state == "succeeded":
            out["video_url"] = self.result_url(job)
            out["orig_prompt"] = job.prompt
        if state == "failed":
            out["code"], out["message"] = job.data.get("fail_code", "InternalError.Algo"), job.error
        return out

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message="Invalid API-key provided."):
            return refusal
        job = self.jobs.get(request.path_params["task_id"])
        if refusal := await self.poll_fault(job, rec):
            return refusal
        if job is None:
            return self._ok(rec, {"output": {"task_id": request.path_params["task_id"], "task_status": "UNKNOWN"}})
        if job.state == "cancelled":
            return self._ok(rec, {"output": self._output(job, "cancelled")})
        if job.data.get("filtered") and not job.error:
            job.error = "Output data may contain inappropriate content."
            job.data["fail_code"] = "DataInspectionFailed"
        state = self.advance(job)
        body: dict[str, Any] = {"output": self._output(job, state)}
        if state == "succeeded":
            tier = "1080" if job.size and max(map(int, job.size.split("x"))) >= 1440 else "720"
            body["usage"] = {
                "duration": job.seconds if self.billed_seconds is None else self.billed_seconds,
                "input_video_duration": 0,
                "output_video_duration": job.seconds,
                "video_count": 1,
                "SR": int(tier),
            }
        return self._ok(rec, body)

    async def _cancel(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message="Invalid API-key provided."):
            return refusal
        job = self.jobs.get(request.path_params["task_id"])
        if job is None or job.state != "queued":
            return self.reject(
                rec,
                "UnsupportedOperation",
                "Failed to cancel the task, please confirm if the task is in PENDING status.",
            )
        job.state = "cancelled"
        return self._ok(rec, {})
