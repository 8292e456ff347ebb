"""A fake MiniMax V1 API on :class:`vidgate.fakekit.FakeVendor` (vendor-protocols-2026 §2.5): HTTP 200
with ``base_resp`` (5xx only from the front); the ``{"challenge"}`` handshake before callbacks.
Beyond the kit's keywords, a create with ``[no-balance]`` (1008), ``[sensitive]`` (1026), ``[busy]``
(1001) or ``[unknown-error]`` (1000) is refused, and ``[filtered]`` fails the task with 1027."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate import image_dimensions
from vidgate.fakekit import Delivery, FakeJob, FakeVendor, Recorded
from vidgate.request import parse_image

SENSITIVE = "output video sensitive"
BOOLS = ("prompt_optimizer", "fast_pretreatment", "aigc_watermark")
_6, _6_10 = (6,), (6, 10)
#: model -> ({resolution: durations}, text-only allowed, takes last_frame_image)
V1: dict[str, tuple[dict[str, tuple[int, ...]], bool, bool]] = {
    "MiniMax-Hailuo-2.3": ({"768P": _6_10, "1080P": _6}, True, False),
    "MiniMax-Hailuo-2.3-Fast": ({"768P": _6_10, "1080P": _6}, False, False),
    "MiniMax-Hailuo-02": ({"512P": _6_10, "768P": _6_10, "1080P": _6}, True, True),
    "T2V-01-Director": ({"720P": _6}, True, False),
    "I2V-01-Director": ({"720P": _6}, False, False),
    "I2V-01-live": ({"720P": _6}, False, False),
    "S2V-01": ({"720P": _6}, False, False),
}


def _dims(resolution: str, image: str | None) -> tuple[int, int]:
    """What a tier makes: 16:9 landscape, or the first frame's shape (data URLs only)."""
    short, (w, h) = int(resolution[:-1]), (16, 9)
    if image and (parsed := parse_image(image, "image", [])) is not None and parsed.data:
        w, h = image_dimensions(parsed.data) or (16, 9)
    return (2 * round(short * w / h / 2), short) if w >= h else (short, 2 * round(short * h / w / 2))


class FakeMinimaxV1(FakeVendor):
    """``POST /v1/video_generation``, ``GET /v1/query/video_generation?task_id=`` and
    ``GET /v1/files/retrieve?file_id=``."""

    vendor = "MiniMax"
    status_words = {"queued": "Queueing", "running": "Processing", "succeeded": "Success", "failed": "Fail"}
    status_words |= {"unknown": "Rendering"}
    codes = {"server": 1000, "busy": 1001, "rate_limit": 1002, "auth": 1004, "balance": 1008}
    codes |= {"sensitive": 1026, "filtered": 1027, "rejected": 2013}
    prompt_refusals = {
        "no-balance": ("balance", "insufficient balance", 200),
        "sensitive": ("sensitive", "input new_sensitive", 200),
        "busy": ("busy", "request timeout", 200),
        "unknown-error": ("server", "unknown error", 200),
    }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video_generation", self.create, methods=["POST"]),
            Route("/v1/query/video_generation", self.query, methods=["GET"]),
            Route("/v1/files/retrieve", self.retrieve, methods=["GET"]),
        ]

    def new_job_id(self) -> str:
        return str(106916112212032 + len(self.jobs))

    def error(self, kind: str, message: str, status: int) -> Response:
        body = {"base_resp": {"status_code": self.codes.get(kind, 1000), "status_msg": message}}
        return JSONResponse(body, status_code=status if status >= 500 else 200)

    def ok(self, rec: Recorded, **body: Any) -> Response:
        return self.respond(rec, {**body, "base_resp": {"status_code": 0, "status_msg": "success"}}, code=0)

    async def checked(self, request: Request) -> tuple[Recorded, Response | None]:
        rec = await self.record(request)
        message = "login fail: Please carry the API secret key in the 'Authorization' field"
        return rec, self.check_auth(rec, f"Bearer {self.secret}", message=message)

    def invalid(self, body: dict[str, Any]) -> str | None:
        """Why MiniMax would refuse ``body`` with 2013, or None."""
        if body.get("model") not in V1:
            return "model"
        tiers, text_ok, last_ok = V1[body["model"]]
        duration, resolution = body.get("duration", 6), body.get("resolution", next(iter(tiers)))
        subject = body.get("subject_reference")
        if not (body.get("prompt") or body.get("first_frame_image")) or len(body.get("prompt") or "") > 2000:
            return "prompt"
        if resolution not in tiers or duration not in tiers[resolution]:
            return f"{duration} s at {resolution} is not supported"
        if body["model"] == "S2V-01" and not (isinstance(subject, list) and subject and subject[0].get("image")):
            return "subject_reference is required"
        if body["model"] != "S2V-01" and not text_ok and not body.get("first_frame_image"):
            return "first_frame_image is required"
        if "last_frame_image" in body and not last_ok:
            return "last_frame_image is not supported"
        return next((k for k in BOOLS if not isinstance(body.get(k), bool | None)), None)

    async def create(self, request: Request) -> Response:
        rec, denied = await self.checked(request)
        body: Any = rec.json if isinstance(rec.json, dict) else {}
        if refusal := denied or self.create_fault(body.get("prompt"), rec):
            return refusal
        if (why := self.invalid(body)) is not None:
            return self.reject(rec, "rejected", f"invalid params, {why}")
        resolution = body.get("resolution", next(iter(V1[body["model"]][0])))
        first, subject = body.get("first_frame_image"), body.get("subject_reference")
        width, height = _dims(resolution, first)
        image = first or (subject[0]["image"][0] if subject else None)
        prompt = body.get("prompt") or ""
        job = self.new_job(prompt, seconds=body.get("duration", 6), size=f"{width}x{height}", image=image)
        job.data |= {"width": width, "height": height}
        job.error = SENSITIVE if "[filtered]" in prompt else None  # advance() fails it so
        if isinstance(body.get("callback_url"), str):
            self.challenge(job, body["callback_url"])
        return self.ok(rec, task_id=job.id)

    def challenge(self, job: FakeJob, url: str) -> None:
        """POST ``{"challenge"}``; status callbacks start only once it comes back (3 s)."""
        token = secrets.token_hex(8)

        def verified(delivery: Delivery) -> None:
            if delivery.reply == {"challenge": token}:
                job.callback_url = url

        self.send_callback(url, {"challenge": token}, then=verified, timeout=3)

    def callback_body(self, job: FakeJob) -> Any:
        # The payload is undocumented (§2.5): the query's own fields.
        return {"task_id": job.id, "status": self.word(job.state), "base_resp": {"status_code": 0}}

    async def query(self, request: Request) -> Response:
        rec, denied = await self.checked(request)
        job = self.jobs.get(rec.query.get("task_id", ""))
        if refusal := denied or await self.poll_fault(job, rec):
            return refusal
        if job is None:
            return self.reject(rec, "rejected", "invalid params, task_id")
        if (state := self.advance(job)) == "failed" and job.error == SENSITIVE:
            return self.reject(rec, "filtered", SENSITIVE)
        extra = {"file_id": job.id, "video_width": job.data["width"], "video_height": job.data["height"]}
        return self.ok(rec, task_id=job.id, status=self.word(state), **(extra if state == "succeeded" else {}))

    async def retrieve(self, request: Request) -> Response:
        rec, denied = await self.checked(request)
        job = self.jobs.get(rec.query.get("file_id", ""))
        if denied or job is None or job.state != "succeeded":
            return denied or self.reject(rec, "rejected", "invalid params, file_id")
        file = {"file_id": job.id, "purpose": "video_generation", "download_url": self.result_url(job)}
        return self.ok(rec, file=file)
