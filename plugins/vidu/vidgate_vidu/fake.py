"""A fake Vidu server, faithful to the reference's protocol.

* ``POST /ent/v2/{text2video|img2video|start-end2video|reference2video}`` with
  ``Authorization: Token <key>`` answers the task: ``{task_id, state: "created", model,
  prompt, images, duration, seed, resolution, movement_amplitude, bgm, payload, credits,
  created_at}``.
* ``GET /ent/v2/tasks/{id}/creations`` answers ``{id, state, err_code, credits, payload,
  creations[{id, url, cover_url}]}``; ``state`` walks created -> queueing -> processing ->
  success | failed. An unknown id is HTTP 404 ``TaskNotFound``.
* ``POST /ent/v2/tasks/{id}/cancel`` (unconfirmed in the reference) cancels a task that has
  not started processing.
* Errors: HTTP status + ``{"code", "reason", "message", "metadata"}``.

Vidu does not publish output pixel sizes, so jobs carry no ``size``. The credits a task
reports are the fake's own table (duration x a per-resolution rate), not Vidu's prices.
A prompt with ``[filtered]`` fails with ``err_code`` ``CreationPolicyViolation``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded
from vidgate.testing import tiny_png

MODES = ("text2video", "img2video", "start-end2video", "reference2video")
_OLD = {4: ("360p", "720p", "1080p"), 8: ("720p",)}
MODELS: dict[str, dict[str, Any]] = {
    "viduq2": {
        "durations": {s: ("540p", "720p", "1080p") for s in range(1, 11)},
        "default": (5, "720p"),
        "modes": MODES,
    },
    "viduq1": {"durations": {5: ("1080p",)}, "default": (5, "1080p"), "modes": MODES},
    "vidu2.0": {"durations": _OLD, "default": (4, None), "modes": MODES[1:]},
    "vidu1.5": {"durations": _OLD, "default": (4, None), "modes": MODES},
}
_IMAGES = {"text2video": (0, 0), "img2video": (1, 1), "start-end2video": (2, 2), "reference2video": (1, 7)}
CREDIT_RATE = {"360p": 1, "540p": 2, "720p": 3, "1080p": 5}
_HTTP = {
    "BadRequest": 400,
    "FieldLacking": 400,
    "ImageFormatInvalid": 400,
    "TaskPromptPolicyViolation": 400,
    "Unauthorized": 401,
    "CreditInsufficient": 403,
    "Forbidden": 403,
    "TaskNotFound": 404,
    "TooManyRequests": 429,
    "SystemThrottling": 429,
    "ServerError": 500,
}
_KIND = {
    "rate_limit": "TooManyRequests",
    "rejected": "BadRequest",
    "server": "ServerError",
    "auth": "Unauthorized",
}


class FakeVidu(FakeVendor):
    """The fake; ``secret`` is the API key it accepts."""

    vendor = "Vidu"
    codes: ClassVar[dict[str, Any]] = _KIND
    status_words = {
        "queued": "queueing",
        "running": "processing",
        "succeeded": "success",
        "failed": "failed",
        "cancelled": "canceled",
        "unknown": "rendering_in_the_clouds",
    }

    def __init__(self, *, secret: str = "vda_fake_vidu_key_0123", polls_to_finish: int = 2, **kwargs: Any) -> None:
        super().__init__(secret=secret, polls_to_finish=polls_to_finish, **kwargs)
        self._create_errors: deque[tuple[str, str | None]] = deque()
        self._next = 800000000000000001

    def fail_creates(self, reason: str, times: int = 1, message: str | None = None) -> None:
        """The next ``times`` creates answer Vidu error ``reason`` (e.g. ``CreditInsufficient``)."""
        self._create_errors.extend([(reason, message)] * times)

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path.split("/")[-1] in MODES]

    def new_job_id(self) -> str:
        self._next += 1
        return str(self._next)

    def code_for(self, kind: str) -> Any:
        # A kind is one of the kit's (mapped by codes) or a Vidu reason itself.
        return self.codes.get(kind, kind)

    def error(self, kind: str, message: str, status: int) -> Response:
        body = {"code": status, "reason": self.code_for(kind), "message": message, "metadata": {}}
        return JSONResponse(body, status_code=status)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ent/v2/{mode}", self._create, methods=["POST"]),
            Route("/ent/v2/tasks/{task_id}/creations", self._get, methods=["GET"]),
            Route("/ent/v2/tasks/{task_id}/cancel", self._cancel, methods=["POST"]),
            Route("/_fake/covers/{task_id}.png", self._cover, methods=["GET"]),
        ]

    def _validate(self, mode: str, body: Any) -> str | tuple[int, str]:
        """``(duration, resolution)`` or a complaint."""
        if mode not in MODES:
            return f"unknown endpoint {mode}"
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        model = body.get("model")
        if model not in MODELS:
            return f"model {model!r} is not supported"
        spec = MODELS[model]
        if mode not in spec["modes"]:
            return f"model {model} does not support {mode}"
        images = body.get("images", [])
        low, high = _IMAGES[mode]
        if not isinstance(images, list) or not low <= len(images) <= high:
            return f"images: {mode} takes {low} to {high} images"
        for image in images:
            if not isinstance(image, str) or not (
                image.startswith(("http://", "https://")) or image.startswith("data:image/")
            ):
                return "images: a URL or base64 with its data:image/...;base64, prefix"
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str) or len(prompt) > 1500:
            return "prompt must be a string of at most 1500 characters"
        if mode in ("text2video", "reference2video") and not prompt:
            return "prompt is required"
        duration, default_res = spec["default"]
        duration = body.get("duration", duration)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in spec["durations"]:
            return f"duration {duration!r} is invalid for {model}"
        allowed = spec["durations"][duration]
        resolution = body.get("resolution", default_res or allowed[0])
        if resolution not in allowed:
            return f"resolution {resolution!r} is invalid for {model} at {duration}s"
        if body.get("movement_amplitude", "auto") not in ("auto", "small", "medium", "large"):
            return "movement_amplitude is invalid"
        if "aspect_ratio" in body and body["aspect_ratio"] not in ("16:9", "9:16", "1:1", "4:3", "3:4"):
            return "aspect_ratio is invalid"
        if model == "viduq2" and body.get("bgm") and duration in (9, 10):
            return "bgm is not supported for 9s or 10s videos"
        seed = body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            return "seed must be an integer"
        return duration, resolution

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Token {self.secret}", message="invalid api key"):
            return refusal
        if self._create_errors:
            reason, message = self._create_errors.popleft()
            return self.reject(rec, reason, message or reason, _HTTP.get(reason, 400))
        mode = request.path_params["mode"]
        checked = self._validate(mode, rec.json)
        if isinstance(checked, str):
            return self.reject(rec, "BadRequest", checked)
        duration, resolution = checked
        body = rec.json
        if refusal := self.create_fault(body.get("prompt"), rec):
            return refusal
        job = self.new_job(
            body.get("prompt"),
            seconds=duration,
            callback_url=body.get("callback_url"),
            image=(body.get("images") or [None])[0],
            mode=mode,
            resolution=resolution,
            payload=body.get("payload", ""),
        )
        job.state = "created"
        rec.status = 200
        return JSONResponse(
            {
                "task_id": job.id,
                "state": "created",
                "model": body["model"],
                "prompt": body.get("prompt", ""),
                "images": body.get("images", []),
                "duration": duration,
                "seed": body.get("seed") or 1234567,
                "resolution": resolution,
                "movement_amplitude": body.get("movement_amplitude", "auto"),
                "bgm": bool(body.get("bgm", False)),
                "payload": body.get("payload", ""),
                "off_peak": bool(body.get("off_peak", False)),
                "credits": self._credits(job),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            }
        )

    @staticmethod
    def _credits(job: FakeJob) -> int:
        return int(job.seconds or 0) * CREDIT_RATE[job.data["resolution"]]

    def _task(self, job: FakeJob, word: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": job.id,
            "state": word,
            "err_code": job.data.get("err_code", "") if word == "failed" else "",
            "credits": self._credits(job),
            "payload": job.data["payload"],
            "bgm": False,
            "off_peak": False,
            "creations": [],
        }
        if word == "success":
            base = self.base_url
            out["creations"] = [
                {"id": job.id + "01", "url": self.result_url(job), "cover_url": f"{base}/_fake/covers/{job.id}.png"}
            ]
        return out

    def callback_body(self, job: FakeJob) -> Any:
        return self._task(job, self.status_words.get(job.state, job.state))

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Token {self.secret}", message="invalid api key"):
            return refusal
        job = self.jobs.get(request.path_params["task_id"])
        if refusal := await self.poll_fault(job, rec):
            return refusal
        if job is None:
            return self.reject(rec, "TaskNotFound", "task not found", 404)
        rec.status = 200
        if job.state == "cancelled":
            return JSONResponse(self._task(job, "canceled"))
        if "[filtered]" in job.prompt and not job.error:
            job.error, job.data["err_code"] = "filtered", "CreationPolicyViolation"
        elif job.error is None and "[fail]" in job.prompt:
            job.data["err_code"] = "SystemError"
        if job.state == "created":
            job.state = "queued"  # "created" is seen once, on the create's answer
        state = self.advance(job)
        return JSONResponse(self._task(job, self.word(state)))

    async def _cancel(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Token {self.secret}", message="invalid api key"):
            return refusal
        job = self.jobs.get(request.path_params["task_id"])
        if job is None:
            return self.reject(rec, "TaskNotFound", "task not found", 404)
        if job.state not in ("created", "queued"):
            return self.reject(
                rec, "BadRequest", f"task in state {self.status_words.get(job.state, job.state)} cannot be canceled"
            )
        job.state = "cancelled"
        rec.status = 200
        return JSONResponse({})

    async def _cover(self, request: Request) -> Response:
        rec = await self.record(request)
        job = self.jobs.get(request.path_params["task_id"])
        if job is None or job.state != "succeeded":
            rec.status = 404
            return Response(b"not found", status_code=404)
        rec.status = 200
        return Response(tiny_png(64, 36), media_type="image/png")
