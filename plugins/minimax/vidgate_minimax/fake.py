"""A fake MiniMax video API on :class:`vidgate.fakekit.FakeVendor`, from vendor-protocols-2026 §2.5.

V1: ``POST /v1/video_generation``, ``GET /v1/query/video_generation?task_id=``,
``GET /v1/files/retrieve?file_id=``; every answer is HTTP 200 with
``base_resp{status_code, status_msg}``. A create with ``callback_url`` gets the
``{"challenge"}`` handshake first, and status callbacks only once it was echoed.
Beyond the kit's keywords, a prompt with ``[filtered]`` fails with 1027 (sensitive output).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate import image_dimensions
from vidgate.fakekit import FakeJob, FakeVendor, Recorded
from vidgate.request import parse_image

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
CODES = {"rate_limit": 1002, "auth": 1004, "rejected": 2013, "server": 1000}
V1_WORDS = {"queued": "Queueing", "running": "Processing", "succeeded": "Success", "failed": "Fail"}


def _dims(resolution: str, image: str | None) -> tuple[int, int]:
    """What a tier makes: 16:9 landscape, or the first frame's shape (data URLs only)."""
    short, (w, h) = int(resolution[:-1]), (16, 9)
    if image and (parsed := parse_image(image, "image", [])) is not None and parsed.data:
        w, h = image_dimensions(parsed.data) or (16, 9)
    return (2 * round(short * w / h / 2), short) if w >= h else (short, 2 * round(short * h / w / 2))


class FakeMiniMax(FakeVendor):
    vendor = "MiniMax"
    status_words = {**V1_WORDS, "unknown": "Rendering"}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video_generation", self.create_v1, methods=["POST"]),
            Route("/v1/query/video_generation", self.query_v1, methods=["GET"]),
            Route("/v1/files/retrieve", self.retrieve, methods=["GET"]),
        ]

    def new_job_id(self) -> str:
        return str(106916112212032 + len(self.jobs))

    def reply(self, rec: Recorded, code: int = 0, message: str = "success", **body: Any) -> Response:
        rec.status, rec.code = 200, code
        return JSONResponse({**body, "base_resp": {"status_code": code, "status_msg": message}})

    def error(self, kind: str, message: str, status: int) -> Response:
        # MiniMax says everything in base_resp at HTTP 200; a 5xx comes from its front.
        body = {"base_resp": {"status_code": CODES.get(kind, 1000), "status_msg": message}}
        return JSONResponse(body, status_code=status if status >= 500 else 200)

    async def checked(self, request: Request) -> tuple[Recorded, Response | None]:
        rec = await self.record(request)
        if request.headers.get("authorization") != f"Bearer {self.secret}":
            return rec, self.reply(rec, 1004, "login fail: Please carry the API secret key in the 'Authorization'")
        return rec, None

    async def create_v1(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        body: Any = rec.json
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if refusal or (refusal := self.create_fault(prompt, rec)):
            rec.code = rec.code or json.loads(bytes(refusal.body))["base_resp"]["status_code"]
            return refusal
        if not isinstance(body, dict) or body.get("model") not in V1:
            return self.reply(rec, 2013, "invalid params, model")
        tiers, text_ok, last_ok = V1[body["model"]]
        duration, resolution = body.get("duration", 6), body.get("resolution", next(iter(tiers)))
        first = body.get("first_frame_image")
        subject = body.get("subject_reference")
        if not (prompt or first) or len(prompt or "") > 2000:
            return self.reply(rec, 2013, "invalid params, prompt")
        if resolution not in tiers or duration not in tiers[resolution]:
            return self.reply(rec, 2013, f"invalid params, {duration} s at {resolution} is not supported")
        if body["model"] == "S2V-01" and not (isinstance(subject, list) and subject and subject[0].get("image")):
            return self.reply(rec, 2013, "invalid params, subject_reference is required")
        if body["model"] != "S2V-01" and not text_ok and not first:
            return self.reply(rec, 2013, "invalid params, first_frame_image is required")
        if "last_frame_image" in body and not last_ok:
            return self.reply(rec, 2013, "invalid params, last_frame_image is not supported")
        for key in ("prompt_optimizer", "fast_pretreatment", "aigc_watermark"):
            if key in body and not isinstance(body[key], bool):
                return self.reply(rec, 2013, f"invalid params, {key}")
        width, height = _dims(resolution, first)
        image = first or (subject[0]["image"][0] if subject else None)
        job = self.new_job(prompt, seconds=duration, size=f"{width}x{height}", image=image, width=width, height=height)
        if "[filtered]" in (prompt or ""):
            job.data["filtered"], job.error = True, "output video sensitive"
        if isinstance(body.get("callback_url"), str):
            self.challenge(job, body["callback_url"])
        return self.reply(rec, task_id=job.id)

    def challenge(self, job: FakeJob, url: str) -> None:
        """POST ``{"challenge"}``; status callbacks start only if it comes back (3 s)."""
        token = secrets.token_hex(8)

        async def handshake() -> None:
            answer = None
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(url, json={"challenge": token}, timeout=aiohttp.ClientTimeout(total=3)) as resp,
                ):
                    answer = await resp.json(content_type=None)
            except Exception:  # noqa: BLE001 - an unreachable receiver is simply not verified
                pass
            self.callbacks_sent.append((url, {"challenge": token}, answer))
            if answer == {"challenge": token}:
                job.callback_url = url

        self.background(handshake())

    def background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def callback_body(self, job: FakeJob) -> Any:
        # The payload is undocumented (§2.5): the query's own fields.
        return {"task_id": job.id, "status": self.word(job.state), "base_resp": {"status_code": 0}}

    async def query_v1(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        job = self.jobs.get(rec.query.get("task_id", ""))
        if refusal or (refusal := await self.poll_fault(job, rec)):
            return refusal
        if job is None:
            return self.reply(rec, 2013, "invalid params, task_id")
        state = self.advance(job)
        if state == "failed" and job.data.get("filtered"):
            return self.reply(rec, 1027, "output video sensitive", task_id=job.id, status="Fail")
        extra = {"file_id": job.id, "video_width": job.data["width"], "video_height": job.data["height"]}
        return self.reply(rec, task_id=job.id, status=self.word(state), **(extra if state == "succeeded" else {}))

    async def retrieve(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        job = self.jobs.get(rec.query.get("file_id", ""))
        if refusal or job is None or job.state != "succeeded":
            return refusal or self.reply(rec, 2013, "invalid params, file_id")
        file = {"file_id": job.id, "purpose": "video_generation", "download_url": self.result_url(job)}
        return self.reply(rec, file=file)
