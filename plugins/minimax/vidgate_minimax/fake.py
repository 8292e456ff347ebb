"""A fake MiniMax video API on :class:`vidgate.fakekit.FakeVendor`, from vendor-protocols-2026 §2.5.

V1: ``POST /v1/video_generation``, ``GET /v1/query/video_generation?task_id=``,
``GET /v1/files/retrieve?file_id=``; every answer is HTTP 200 with
``base_resp{status_code, status_msg}``. V2: ``POST /v2/video_generation`` (``content[]``),
``GET /v2/query/video_generation/{id}``, the list ``GET /v2/query/video_generation``
(newest first, pages) and ``DELETE /v2/video_generation/{id}``; errors ride on the HTTP
status with ``error{code, message}`` (unconfirmed shape). A create with ``callback_url``
gets the ``{"challenge"}`` handshake first, and status callbacks only once it was echoed.
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
#: V2 models -> {resolution: durations} (unconfirmed beyond the 768P / 5 s defaults).
V2 = {m: {"768P": (5, 10), "1080P": (5, 10)} for m in ("MiniMax-H3", "MiniMax-H3-Max")}
ROLES = {"image_url": ("first_frame", "last_frame", "reference_image"), "video_url": ("reference_video",)}
ROLES["audio_url"] = ("reference_audio",)
HTTP = {"rate_limit": 429, "auth": 401, "rejected": 400}
#: The HTTP status V2 gives each code (unconfirmed: §2.5 says only "HTTP status").
CODE_HTTP = {1000: 500, 1001: 504, 1002: 429, 1004: 401, 1008: 402, 1026: 400, 1027: 400, 2013: 400}
CODES = {"rate_limit": 1002, "auth": 1004, "rejected": 2013, "server": 1000}
V1_WORDS = {"queued": "Queueing", "running": "Processing", "succeeded": "Success", "failed": "Fail"}


def _dims(resolution: str, image: str | None, ratio: str | None = None) -> tuple[int, int]:
    """What a tier makes: the ratio, else the first frame's shape (data URLs), else 16:9."""
    short, (w, h) = int(resolution[:-1]), (16, 9)
    if ratio:
        w, h = (int(x) for x in ratio.split(":"))
    elif image and (parsed := parse_image(image, "image", [])) is not None and parsed.data:
        w, h = image_dimensions(parsed.data) or (16, 9)
    return (2 * round(short * w / h / 2), short) if w >= h else (short, 2 * round(short * h / w / 2))


class FakeMiniMax(FakeVendor):
    vendor = "MiniMax"
    status_words = {**V1_WORDS, "unknown": "Rendering"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.v2 = False
        self.refusals: list[tuple[int, str]] = []

    def refuse(self, code: int, message: str = "refused", times: int = 1) -> None:
        """Answer the next ``times`` creates (V1 or V2) with MiniMax error ``code``."""
        self.refusals += [(code, message)] * times

    def refusal(self, rec: Recorded) -> Response | None:
        if not self.refusals:
            return None
        (code, message), *self.refusals = self.refusals
        if not self.v2:
            return self.reply(rec, code, message)
        rec.status, rec.code = CODE_HTTP[code], code
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=CODE_HTTP[code])

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video_generation", self.create_v1, methods=["POST"]),
            Route("/v1/query/video_generation", self.query_v1, methods=["GET"]),
            Route("/v1/files/retrieve", self.retrieve, methods=["GET"]),
            Route("/v2/video_generation", self.create_v2, methods=["POST"]),
            Route("/v2/query/video_generation", self.list_v2, methods=["GET"]),
            Route("/v2/query/video_generation/{id}", self.query_v2, methods=["GET"]),
            Route("/v2/video_generation/{id}", self.delete_v2, methods=["DELETE"]),
        ]

    def new_job_id(self) -> str:
        return str(106916112212032 + len(self.jobs))

    def reply(self, rec: Recorded, code: int = 0, message: str = "success", **body: Any) -> Response:
        rec.status, rec.code = 200, code
        return JSONResponse({**body, "base_resp": {"status_code": code, "status_msg": message}})

    def error(self, kind: str, message: str, status: int) -> Response:
        if self.v2:
            code = CODES.get(kind, 1000)
            return JSONResponse({"error": {"code": code, "message": message}}, status_code=HTTP.get(kind, status))
        # V1 says everything in base_resp at HTTP 200; a 5xx comes from its front.
        body = {"base_resp": {"status_code": CODES.get(kind, 1000), "status_msg": message}}
        return JSONResponse(body, status_code=status if status >= 500 else 200)

    async def checked(self, request: Request) -> tuple[Recorded, Response | None]:
        rec = await self.record(request)
        # The kit's error() has no request: which envelope to render is set per call.
        self.v2 = request.url.path.startswith("/v2/")
        if self.v2 and request.headers.get("authorization") != f"Bearer {self.secret}":
            return rec, self.error("auth", "invalid api key", 401)
        if request.headers.get("authorization") != f"Bearer {self.secret}":
            return rec, self.reply(rec, 1004, "login fail: Please carry the API secret key in the 'Authorization'")
        return rec, None

    async def create_v1(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        body: Any = rec.json
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if refusal or (refusal := self.refusal(rec) or self.create_fault(prompt, rec)):
            rec.code = rec.code or json.loads(bytes(refusal.body))["base_resp"]["status_code"]
            return refusal
        if not isinstance(body, dict) or body.get("model") not in V1:
            return self.reply(rec, 2013, "invalid params, model")
        tiers, text_ok, last_ok = V1[body["model"]]
        duration, resolution = body.get("duration", 6), body.get("resolution", "768P" if "768P" in tiers else "720P")
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
        frames = [body[k] for k in ("first_frame_image", "last_frame_image") if k in body]
        if any(not isinstance(f, str) or not f.startswith(("http", "data:image/")) for f in frames):
            return self.reply(rec, 2013, "invalid params, images must be URLs or data URLs")
        if first and body["model"].startswith("T2V"):
            return self.reply(rec, 2013, "invalid params, first_frame_image is not supported")
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
        if "model" in job.data:
            return {"task_id": job.id, "status": self.task_v2(job)["status"]}
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

    def task_v2(self, job: FakeJob) -> dict[str, Any]:
        d, words = job.data, {**FakeVendor.status_words, "cancelled": "cancelled", "unknown": "rendering"}
        task = {"id": job.id, "model": d["model"], "status": words[job.state], "resolution": d["resolution"]}
        task.update(duration=job.seconds, ratio=d["ratio"], created_at=int(job.created_at), task_type="video")
        if job.state == "succeeded":
            task["content"] = {"url": self.result_url(job), "prompt": job.prompt}
            task["usage"] = {"total_seconds": job.seconds, "input_seconds": 0, "output_seconds": job.seconds}
            task["usage"] |= {"input_image_count": d["images"], "total_tokens": 1000 * (job.seconds or 0)}
        if job.state == "failed":
            task["error"] = {"code": 1027 if d.get("filtered") else 1000, "message": job.error}
        return task

    async def create_v2(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        body: Any = rec.json if isinstance(rec.json, dict) else {}
        content = body.get("content") if isinstance(body.get("content"), list) else []
        prompt = str(next((c.get("text") for c in content if isinstance(c, dict) and c.get("type") == "text"), ""))
        if refusal or (refusal := self.refusal(rec) or self.create_fault(prompt, rec)):
            return refusal
        tiers = V2.get(body.get("model"), {})
        resolution, duration, ratio = body.get("resolution", "768P"), body.get("duration", 5), body.get("ratio")
        if resolution not in tiers or duration not in tiers[resolution] or not content:
            return self.error("rejected", "invalid params: model, resolution, duration or content", 400)
        for item in content:
            kind, role = item.get("type"), item.get("role")
            url = (item.get(kind) or {}).get("url", "") if kind in ROLES else ""
            if kind != "text" and (role not in ROLES.get(kind, ()) or not url.startswith(("http", "data:"))):
                return self.error("rejected", f"invalid params: content item {kind} {role}", 400)
        first = next((c["image_url"]["url"] for c in content if c.get("role") == "first_frame"), None)
        width, height = _dims(resolution, first, ratio)
        images = sum(1 for c in content if c.get("type") == "image_url")
        data = {"model": body["model"], "resolution": resolution, "ratio": ratio, "images": images, "image": first}
        job = self.new_job(prompt, seconds=duration, size=f"{width}x{height}", **data)
        if "[filtered]" in prompt:
            job.data["filtered"], job.error = True, "output video sensitive"
        if isinstance(body.get("callback_url"), str):
            self.challenge(job, body["callback_url"])
        rec.status = 200
        return JSONResponse({"task_id": job.id})

    async def query_v2(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        job = self.jobs.get(request.path_params["id"])
        if refusal or (refusal := await self.poll_fault(job, rec)):
            return refusal
        if job is None or "model" not in job.data:
            return self.error("not_found", "task not found", 404)
        self.advance(job)
        rec.status = 200
        return JSONResponse({"task": self.task_v2(job)})

    async def list_v2(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        if refusal:
            return refusal
        size, page = int(rec.query.get("page_size", 10)), int(rec.query.get("page_num", 1))
        jobs = sorted((j for j in self.jobs.values() if "model" in j.data), key=lambda j: -int(j.id))
        items = []
        for job in jobs[(page - 1) * size : page * size]:
            if job.state in ("queued", "running"):
                # A listed job's poll faults (500, malformed, slow) hit the whole list call.
                if refusal := await self.poll_fault(job, rec):
                    return refusal
                self.advance(job)  # the fake's jobs move when looked at, listed or queried
            items.append(self.task_v2(job))
        rec.status = 200
        return JSONResponse({"items": items, "total": len(jobs)})

    async def delete_v2(self, request: Request) -> Response:
        rec, refusal = await self.checked(request)
        job = self.jobs.get(request.path_params["id"])
        if refusal or job is None:
            return refusal or self.error("not_found", "task not found", 404)
        if job.state in ("queued", "running"):
            self.set_state(job, "cancelled")
        else:
            del self.jobs[job.id]  # a finished task is deleted (§2.5, unconfirmed)
        rec.status = 200
        return JSONResponse({"task_id": job.id, "status": self.task_v2(job)["status"]})
