"""A fake Runway API server, strict like the real one (reference section 2.9), for tests.

It checks ``Authorization: Bearer <key>`` and the required ``X-Runway-Version`` header on
every call, validates create bodies per route and model (durations, pixel ratios, which
need ``promptImage``, prompt lengths in UTF-16 units), answers ``{"id"}`` and walks tasks
``PENDING -> RUNNING (progress 0-1) -> SUCCEEDED`` (``output[]`` URLs served without auth)
or ``FAILED`` (``failure``, ``failureCode``). ``DELETE /v1/tasks/{id}`` cancels an
unfinished task (``CANCELLED``) and deletes a finished one (then 404). Errors are HTTP
statuses with ``{"error": "..."}``. It is a :class:`vidgate.fakekit.FakeVendor`: prompt
keywords (``[429]``, ``[500]``, ``[fail]``, ``[hold]``...) inject faults.

Use it in your own tests::

    from vidgate_runway.fake import FakeRunway

    fake = FakeRunway()
    async with fake.serve():
        ...  # channel {"vendor": "runway", "base_url": fake.url,
             #          "credentials": {"api_key": fake.secret}}
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded

API_VERSIONS = frozenset({"2024-11-06"})

_GEN4 = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")

#: route -> model -> (durations, ratios, promptImage positions allowed, prompt required).
#: ``None`` durations = the route decides (video to video: the input's length).
ROUTES: dict[str, dict[str, tuple[tuple[int, ...] | None, tuple[str, ...], tuple[str, ...], bool]]] = {
    "image_to_video": {
        "gen4_turbo": ((5, 10), _GEN4, ("first",), False),
        "gen4.5": (tuple(range(2, 11)), _GEN4, ("first",), True),
        "veo3.1": ((4, 6, 8), _VEO, ("first", "last"), False),
        "veo3.1_fast": ((4, 6, 8), _VEO, ("first", "last"), False),
    },
    "text_to_video": {
        "gen4.5": (tuple(range(2, 11)), ("1280:720", "720:1280"), (), True),
        "veo3.1": ((4, 6, 8), _VEO, (), True),
        "veo3.1_fast": ((4, 6, 8), _VEO, (), True),
    },
    "video_to_video": {"aleph2": (None, (), (), False)},
}

WORDS = {
    "queued": "PENDING",
    "running": "RUNNING",
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "unknown": "ARCHIVED",
}


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeRunway(FakeVendor):
    """State and switches of one fake Runway organisation.

    * :meth:`fail_next`: the next created task ends ``FAILED`` with a ``failureCode``.
    * ``throttle``: queued (and held) tasks report ``THROTTLED`` instead of ``PENDING``/``RUNNING``.
    * ``report_cost``: finished tasks carry ``cost.credits`` (newer SDK types; the
      reference says tasks carry no usage, so it is off by default).
    """

    vendor = "Runway"
    status_words = WORDS

    def __init__(self, *, secret: str = "key_fake_runway_0123456789", polls_to_finish: int = 2, **kwargs: Any) -> None:
        super().__init__(secret=secret, polls_to_finish=polls_to_finish, **kwargs)
        self.throttle = False
        self.report_cost = False
        self._fail_next: deque[tuple[str, str]] = deque()
        self.deleted: set[str] = set()

    # -- switches --------------------------------------------------------------------

    def fail_next(self, failure_code: str, failure: str = "The task failed.") -> None:
        """The next created task ends ``FAILED`` with ``failureCode``/``failure``."""
        self._fail_next.append((failure_code, failure))

    def creates(self, route: str | None = None) -> list[Recorded]:
        """Recorded create calls (optionally of one route)."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.path.startswith("/v1/") and (route is None or r.path == f"/v1/{route}")
        ]

    # -- the app ---------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/{route}", self._create, methods=["POST"]),
            Route("/v1/tasks/{id}", self._get, methods=["GET"]),
            Route("/v1/tasks/{id}", self._delete, methods=["DELETE"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def new_job_id(self) -> str:
        return str(uuid.uuid4())

    def _check_headers(self, request: Request, rec: Recorded) -> Response | None:
        message = "Invalid API key. Make sure you are using a key from the developer portal."
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=message):
            return refusal
        version = request.headers.get("x-runway-version")
        if version is None:
            return self.reject(rec, "rejected", "The X-Runway-Version header is required.", 400)
        if version not in API_VERSIONS:
            return self.reject(rec, "rejected", f"Unsupported API version {version!r}.", 400)
        return None

    def _check_body(self, route: str, body: Any) -> str | None:
        """Runway's validation of a create body: the first complaint, or None."""
        if not isinstance(body, dict):
            return "The request body must be a JSON object."
        models = ROUTES[route]
        model = body.get("model")
        if model not in models:
            return f"Invalid model {model!r} for /v1/{route}."
        durations, ratios, positions, prompt_required = models[model]
        prompt = body.get("promptText")
        if prompt is not None and (not isinstance(prompt, str) or not prompt or _units(prompt) > 1000):
            return "promptText must be a non-empty string of at most 1000 characters."
        if prompt_required and not prompt:
            return "promptText is required."
        if route == "video_to_video":
            uri = body.get("videoUri")
            if not isinstance(uri, str) or not (
                uri.startswith(("https://", "data:video/")) or (self.base_url and uri.startswith(self.base_url))
            ):
                return "videoUri must be an HTTPS URL, a Runway upload URI or a data URI."
            return None
        duration = body.get("duration")
        if not isinstance(duration, int) or isinstance(duration, bool) or (durations and duration not in durations):
            return f"duration must be one of {list(durations or ())}."
        if body.get("ratio") not in ratios:
            return f"ratio must be one of {list(ratios)}."
        image = body.get("promptImage")
        if route == "image_to_video":
            if isinstance(image, str):
                image = [{"uri": image, "position": "first"}]
            if not isinstance(image, list) or not image:
                return "promptImage is required."
            for item in image:
                if not isinstance(item, dict) or item.get("position") not in positions:
                    return f"promptImage positions must be among {list(positions)}."
                uri = item.get("uri")
                if not isinstance(uri, str) or not uri.startswith(("https://", "data:image/")):
                    return "promptImage must be an HTTPS URL or a data URI."
                if len(uri) > 5 * 1024 * 1024:
                    return "promptImage data URIs must be at most 5MB."
        elif image is not None:
            return "promptImage is not accepted on text_to_video."
        return None

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        route = request.path_params["route"]
        if route not in ROUTES:
            return self.reject(rec, "rejected", "Not found", 404)
        if refusal := self._check_headers(request, rec):
            return refusal
        body = rec.json
        prompt = body.get("promptText") if isinstance(body, dict) else None
        if refusal := self.create_fault(prompt, rec):
            return refusal
        if complaint := self._check_body(route, body):
            return self.reject(rec, "rejected", complaint, 400)
        seconds: int | None = body.get("duration")
        size = body["ratio"].replace(":", "x") if isinstance(body.get("ratio"), str) else None
        source = None
        if route == "video_to_video":
            uri = body["videoUri"]
            source = next((j for j in self.jobs.values() if self.result_url(j) == uri), None)
            if source is not None:
                seconds = source.seconds
        job = self.new_job(
            prompt,
            seconds=seconds,
            size=size,
            route=route,
            model=body["model"],
            image=body.get("promptImage"),
            video=body.get("videoUri"),
            source=source.id if source is not None else None,
        )
        if self._fail_next:
            code, failure = self._fail_next.popleft()
            job.data["failure_code"] = code
            job.error = failure
        rec.status = 200
        return JSONResponse({"id": job.id})

    def _job(self, request: Request, rec: Recorded) -> FakeJob | Response:
        job = self.jobs.get(request.path_params["id"])
        if job is None or job.id in self.deleted:
            return self.reject(rec, "rejected", "Task not found.", 404)
        return job

    def task_body(self, job: FakeJob, state: str) -> dict[str, Any]:
        """The task object Runway answers for ``job`` in ``state``."""
        word = WORDS[state]
        if self.throttle and (state == "queued" or (state == "running" and job.held)):
            word = "THROTTLED"  # waiting for a concurrency slot of the organisation
        body: dict[str, Any] = {"id": job.id, "status": word, "createdAt": _iso(job.created_at)}
        if word == "RUNNING":
            body["progress"] = round(min(0.95, job.polls / (self.polls_to_finish + 1)), 2)
        elif state == "succeeded":
            body["output"] = [self.result_url(job)]
        elif state == "failed":
            body["failure"] = job.error or "An unexpected error occurred."
            body["failureCode"] = job.data.get("failure_code") or "INTERNAL.BAD_OUTPUT.CODE01"
        if self.report_cost and state in ("succeeded", "failed", "cancelled"):
            body["cost"] = {"credits": (job.seconds or 0) * 12 if state == "succeeded" else 0}
        return body

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._check_headers(request, rec):
            return refusal
        job = self._job(request, rec)
        if isinstance(job, Response):
            return job
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = job.state if job.state == "cancelled" else self.advance(job)
        rec.status = 200
        return JSONResponse(self.task_body(job, state))

    async def _delete(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._check_headers(request, rec):
            return refusal
        job = self._job(request, rec)
        if isinstance(job, Response):
            return job
        if job.state in ("queued", "running"):
            self.set_state(job, "cancelled")
            job.data["cancelled_at"] = time.time()
        else:
            self.deleted.add(job.id)  # a finished task is deleted: gone for good
        rec.status = 204
        return Response(status_code=204)
