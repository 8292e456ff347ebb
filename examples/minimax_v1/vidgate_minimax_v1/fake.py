"""A fake MinimaxV1 server on :class:`vidgate.fakekit.FakeVendor`, strict like the real one.

It checks the API key, refuses malformed creates like the vendor does, and walks jobs
``queued -> running -> succeeded`` as they are polled; prompt keywords inject faults
(see :mod:`vidgate.fakekit`), and ``[no-credit]`` is refused as an empty balance.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded

MODELS = frozenset({"minimax_v1-1"})


class FakeMinimaxV1(FakeVendor):
    """The MinimaxV1 API: ``POST /v1/videos``, ``GET /v1/videos/{id}`` and
    ``POST /v1/videos/{id}/cancel`` (while the job is queued or running)."""

    vendor = "MinimaxV1"
    status_words = {**FakeVendor.status_words, "cancelled": "cancelled"}
    #: The kit's error kinds -> the vendor's codes (other kinds are sent as they are).
    codes = {"rate_limit": "rate_limited", "balance": "insufficient_credit", "rejected": "invalid"}
    prompt_refusals = {"no-credit": ("balance", "insufficient credit", 402)}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos/{id}", self.get, methods=["GET"]),
            Route("/v1/videos/{id}/cancel", self.cancel, methods=["POST"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        return JSONResponse({"error": {"code": self.codes.get(kind, kind), "message": message}}, status_code=status)

    async def begin(self, request: Request) -> tuple[Recorded, Response | None]:
        """Record the request and check its key (every call)."""
        rec = await self.record(request)
        return rec, self.check_auth(rec, f"Bearer {self.secret}")

    def job(self, rec: Recorded, request: Request) -> FakeJob | Response:
        job = self.jobs.get(request.path_params["id"])
        return job if job is not None else self.reject(rec, "not_found", "no such video", 404)

    async def create(self, request: Request) -> Response:
        rec, denied = await self.begin(request)
        body: Any = rec.json if isinstance(rec.json, dict) else {}
        if refusal := denied or self.create_fault(body.get("prompt"), rec):
            return refusal
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return self.reject(rec, "rejected", "prompt is required")
        if body.get("model") not in MODELS:
            return self.reject(rec, "rejected", f"unknown model {body.get('model')!r}")
        if body.get("duration") not in (5, 10):
            return self.reject(rec, "rejected", "duration must be 5 or 10")
        job = self.new_job(
            body["prompt"],
            seconds=body["duration"],
            size=body.get("size"),
            callback_url=body.get("callback_url"),
            image=body.get("image"),
        )
        return self.respond(rec, {"id": job.id, "status": self.word(job.state)})

    async def get(self, request: Request) -> Response:
        rec, denied = await self.begin(request)
        job = denied or self.job(rec, request)
        if not isinstance(job, FakeJob):
            return job
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = self.advance(job)
        answer: dict[str, Any] = {"id": job.id, "status": self.word(state)}
        if state == "succeeded":
            answer["video_url"] = self.result_url(job)
        elif state == "failed":
            answer["error"] = {"message": job.error}
        return self.respond(rec, answer)

    async def cancel(self, request: Request) -> Response:
        rec, denied = await self.begin(request)
        job = denied or self.job(rec, request)
        if not isinstance(job, FakeJob):
            return job
        if job.state not in ("queued", "running"):
            return self.reject(rec, "conflict", f"the video is already {self.word(job.state)}", 409)
        self.set_state(job, "cancelled")
        return self.respond(rec, {"id": job.id, "status": self.word(job.state)})
