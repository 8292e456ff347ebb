"""A fake Luma Dream Machine API server, strict like the real one (reference 2.10).

It checks ``Authorization: Bearer <key>``, validates ``POST /generations[/video]`` bodies
(models, ``"5s"``/``"9s"`` durations, resolutions, aspect ratios, keyframe shapes, a
``generation`` keyframe naming a completed generation), answers the Generation object and
walks it ``queued -> dreaming -> completed`` (``assets.video`` served without auth) or
``failed`` (``failure_reason``). ``DELETE /generations/{id}`` deletes a generation (then
404); ``GET /generations?limit=&offset=`` lists. A generation created with
``callback_url`` gets the Generation object POSTed on every change, unsigned. Errors are
``{"detail": "..."}``. It is a :class:`vidgate.fakekit.FakeVendor`: prompt keywords
(``[429]``, ``[500]``, ``[fail]``, ``[hold]``...) inject faults.

Use it in your own tests::

    from vidgate_luma.fake import FakeLuma

    fake = FakeLuma()
    async with fake.serve():
        ...  # channel {"vendor": "luma", "base_url": fake.url,
             #          "credentials": {"api_key": fake.secret}}
"""

from __future__ import annotations

import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded

MODELS = frozenset({"ray-2", "ray-flash-2", "ray-1-6"})
TIERED = frozenset({"ray-2", "ray-flash-2"})
DURATIONS = ("5s", "9s")
RESOLUTIONS = ("540p", "720p", "1080p", "4k")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21")
WORDS = {
    "queued": "queued",
    "running": "dreaming",
    "succeeded": "completed",
    "failed": "failed",
    "unknown": "paused",
}


class FakeLuma(FakeVendor):
    """State and switches of one fake Luma account. :meth:`fail_next` makes the next
    generation fail with a ``failure_reason``."""

    vendor = "Luma"
    status_words = WORDS

    def __init__(self, *, secret: str = "luma-fake-key-0123456789", polls_to_finish: int = 2, **kwargs: Any) -> None:
        super().__init__(secret=secret, polls_to_finish=polls_to_finish, **kwargs)
        self._fail_next: deque[str] = deque()
        self.deleted: set[str] = set()

    def fail_next(self, reason: str) -> None:
        self._fail_next.append(reason)

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith("/generations")]

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/generations", self._create, methods=["POST"]),
            Route("/generations/video", self._create, methods=["POST"]),
            Route("/generations", self._list, methods=["GET"]),
            Route("/generations/{id}", self._get, methods=["GET"]),
            Route("/generations/{id}", self._delete, methods=["DELETE"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    def new_job_id(self) -> str:
        return str(uuid.uuid4())

    def _refuse(self, rec: Recorded, status: int, message: str) -> Response:
        rec.status = status
        return self.error("rejected", message, status)

    def _auth(self, request: Request, rec: Recorded) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.secret}":
            return self._refuse(rec, 401, "Invalid API key")
        return None

    def _check(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "Request body must be a JSON object"
        model = body.get("model")
        if model not in MODELS:
            return f"model must be one of {sorted(MODELS)}"
        if model in TIERED:
            if body.get("duration", "5s") not in DURATIONS:
                return f"duration must be one of {list(DURATIONS)}"
            if body.get("resolution", "720p") not in RESOLUTIONS:
                return f"resolution must be one of {list(RESOLUTIONS)}"
        elif "duration" in body or "resolution" in body:
            return f"{model} does not take duration or resolution"
        if body.get("aspect_ratio", "16:9") not in ASPECT_RATIOS:
            return f"aspect_ratio must be one of {list(ASPECT_RATIOS)}"
        if "loop" in body and not isinstance(body["loop"], bool):
            return "loop must be a boolean"
        keyframes = body.get("keyframes") or {}
        if not isinstance(keyframes, dict) or set(keyframes) - {"frame0", "frame1"}:
            return "keyframes may hold frame0 and frame1"
        for frame in keyframes.values():
            if not isinstance(frame, dict):
                return "a keyframe is an object"
            if frame.get("type") == "image":
                if not isinstance(frame.get("url"), str) or not frame["url"].startswith(("http://", "https://")):
                    return "image keyframes need a url"
            elif frame.get("type") == "generation":
                source = self.jobs.get(str(frame.get("id")))
                if source is None or source.id in self.deleted:
                    return "keyframe generation not found"
                if source.state != "succeeded":
                    return "keyframe generation is not completed"
            else:
                return "keyframe type must be image or generation"
        if not body.get("prompt") and not keyframes:
            return "prompt is required"
        if "callback_url" in body and not str(body["callback_url"]).startswith(("http://", "https://")):
            return "callback_url must be a URL"
        return None

    def generation(self, job: FakeJob) -> dict[str, Any]:
        """The Generation object for ``job``."""
        state = job.state if job.state in WORDS else "queued"
        assets = {"video": self.result_url(job)} if state == "succeeded" else None
        return {
            "id": job.id,
            "generation_type": "video",
            "state": WORDS[state],
            "failure_reason": job.error if state == "failed" else None,
            "created_at": datetime.fromtimestamp(job.created_at, UTC).isoformat().replace("+00:00", "Z"),
            "assets": assets,
            "model": job.data["request"].get("model"),
            "request": job.data["request"],
        }

    def callback_body(self, job: FakeJob) -> Any:
        return self.generation(job)

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(request, rec):
            return refusal
        body = rec.json
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if refusal := self.create_fault(prompt, rec):
            return refusal
        if complaint := self._check(body):
            return self._refuse(rec, 400, complaint)
        seconds = int(str(body.get("duration", "5s")).removesuffix("s"))
        frames = body.get("keyframes") or {}
        image = next((f["url"] for f in frames.values() if f.get("type") == "image"), None)
        job = self.new_job(
            prompt,
            seconds=seconds,
            callback_url=body.get("callback_url"),
            request=body,
            image=image,
            extends=next((f["id"] for f in frames.values() if f.get("type") == "generation"), None),
        )
        if self._fail_next:
            job.error = self._fail_next.popleft()
        rec.status = 201
        return JSONResponse(self.generation(job), status_code=201)

    def _job(self, request: Request, rec: Recorded) -> FakeJob | Response:
        job = self.jobs.get(request.path_params["id"])
        if job is None or job.id in self.deleted:
            return self._refuse(rec, 404, "Generation not found")
        return job

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(request, rec):
            return refusal
        job = self._job(request, rec)
        if isinstance(job, Response):
            return job
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = self.advance(job)
        body = self.generation(job)
        if state == "unknown":
            body["state"] = WORDS["unknown"]
        rec.status = 200
        return JSONResponse(body)

    async def _list(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(request, rec):
            return refusal
        limit, offset = int(rec.query.get("limit", 10)), int(rec.query.get("offset", 0))
        live = [j for j in reversed(self.jobs.values()) if j.id not in self.deleted]
        page = [self.generation(j) for j in live[offset : offset + limit]]
        rec.status = 200
        return JSONResponse({"generations": page, "has_more": offset + limit < len(live), "count": len(page)})

    async def _delete(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(request, rec):
            return refusal
        job = self._job(request, rec)
        if isinstance(job, Response):
            return job
        self.deleted.add(job.id)
        job.held = True  # a deleted generation never finishes
        rec.status = 204
        return Response(status_code=204)
