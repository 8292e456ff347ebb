"""Fake Luma servers, strict like the real ones (reference 2.10): :class:`FakeLuma` for
the legacy Dream Machine API and :class:`FakeLumaAgents` for the Agents API.

**Dream Machine.** It checks ``Authorization: Bearer <key>``, validates ``POST /generations[/video]`` bodies
(models, ``"5s"``/``"9s"`` durations, resolutions, aspect ratios, keyframe shapes, a
``generation`` keyframe naming a completed generation), answers the Generation object and
walks it ``queued -> dreaming -> completed`` (``assets.video`` served without auth) or
``failed`` (``failure_reason``). ``DELETE /generations/{id}`` deletes a generation (then
404); ``GET /generations?limit=&offset=`` lists. A generation created with
``callback_url`` gets the Generation object POSTed on every change, unsigned. Errors are
``{"detail": "..."}``. It is a :class:`vidgate.fakekit.FakeVendor`: prompt keywords
(``[429]``, ``[500]``, ``[fail]``, ``[hold]``...) inject faults.

**Agents API** (the ``luma-agents`` SDK 0.5.0's wire shapes): ``POST /generations`` checks
the body as Ray 3.2 does (model, ``type``, prompt 1-6000, aspect ratio, ``video`` options:
resolution, ``"5s"``/``"10s"``, HDR/EXR/loop rules, start/end frames or keyframes with
their indexes, ``edit`` and ``source_position`` only for their types, image/video refs
with exactly one of ``url``/``data``+``media_type``/``generation_id``, a ``generation_id``
naming a completed video generation) and answers 201 with the Generation object;
``GET /generations/{id}`` walks it ``queued -> processing -> completed`` (``output[]`` of
``{type: "video", url}``) or ``failed`` (``failure_code``, ``failure_reason``). No cancel,
no list, no callbacks (the SDK has none). Errors are ``{"detail": "..."}``: 400 invalid,
401 bad key, 402 empty balance (:attr:`FakeLumaAgents.balance_empty`), 404, 422 a
combination Luma refuses, 429 with ``Retry-After``.

Use them in your own tests::

    from vidgate_luma.fake import FakeLuma, FakeLumaAgents

    fake = FakeLumaAgents()          # or FakeLuma() with options.surface = "dream-machine"
    async with fake.serve():
        ...  # channel {"vendor": "luma", "base_url": fake.url,
             #          "credentials": {"api_key": fake.secret},
             #          "options": {"surface": "agents"}}
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


class _LumaVendor(FakeVendor):
    """What both Luma surfaces share: errors as ``{"detail": ...}``, UUID ids."""

    vendor = "Luma"
    #: The ``detail`` a wrong or missing key is answered (HTTP 401).
    bad_key = "Invalid API key"

    def error(self, kind: str, message: str, status: int) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    def new_job_id(self) -> str:
        return str(uuid.uuid4())

    def _auth(self, rec: Recorded) -> Response | None:
        return self.check_auth(rec, f"Bearer {self.secret}", message=self.bad_key)

    @staticmethod
    def created_at(job: FakeJob) -> str:
        return datetime.fromtimestamp(job.created_at, UTC).isoformat().replace("+00:00", "Z")


class FakeLuma(_LumaVendor):
    """State and switches of one fake Luma account. :meth:`fail_next` makes the next
    generation fail with a ``failure_reason``."""

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
            "created_at": self.created_at(job),
            "assets": assets,
            "model": job.data["request"].get("model"),
            "request": job.data["request"],
        }

    def callback_body(self, job: FakeJob) -> Any:
        return self.generation(job)

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(rec):
            return refusal
        body = rec.json
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if refusal := self.create_fault(prompt, rec):
            return refusal
        if complaint := self._check(body):
            return self.reject(rec, "rejected", complaint, 400)
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
            return self.reject(rec, "rejected", "Generation not found", 404)
        return job

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(rec):
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
        if refusal := self._auth(rec):
            return refusal
        limit, offset = int(rec.query.get("limit", 10)), int(rec.query.get("offset", 0))
        live = [j for j in reversed(self.jobs.values()) if j.id not in self.deleted]
        page = [self.generation(j) for j in live[offset : offset + limit]]
        rec.status = 200
        return JSONResponse({"generations": page, "has_more": offset + limit < len(live), "count": len(page)})

    async def _delete(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(rec):
            return refusal
        job = self._job(request, rec)
        if isinstance(job, Response):
            return job
        self.deleted.add(job.id)
        job.held = True  # a deleted generation never finishes
        rec.status = 204
        return Response(status_code=204)


AGENTS_MODELS = frozenset({"ray-3.2"})
AGENTS_TYPES = ("video", "video_edit", "video_reframe")
AGENTS_RATIOS = ("9:16", "3:4", "1:1", "4:3", "16:9", "21:9")
AGENTS_RESOLUTIONS = ("360p", "540p", "720p", "1080p")
AGENTS_DURATIONS = {"5s": 5, "10s": 10}
EDIT_STRENGTHS = frozenset(f"{k}_{n}" for k in ("adhere", "flex", "reimagine") for n in (1, 2, 3))
AGENTS_WORDS = {
    "queued": "queued",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
    "unknown": "rendering_frames",
}


class _Refused(Exception):
    """A create the fake refuses: ``status`` (400 or 422) and Luma's ``detail``."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


class FakeLumaAgents(_LumaVendor):
    """State and switches of one fake Luma Agents account.

    * :meth:`fail_next` makes the next generation fail with a ``failure_code`` and reason;
    * :attr:`balance_empty` makes every create answer 402 "Insufficient balance".
    """

    status_words = AGENTS_WORDS
    bad_key = "Invalid or missing API key"

    def __init__(self, *, secret: str = "luma-api-fake-0123456789", polls_to_finish: int = 2, **kwargs: Any) -> None:
        super().__init__(secret=secret, polls_to_finish=polls_to_finish, **kwargs)
        self._fail_next: deque[tuple[str, str]] = deque()
        self.balance_empty = False

    def fail_next(self, code: str = "generation_failed", reason: str = "The generation failed.") -> None:
        self._fail_next.append((code, reason))

    def creates(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/generations"]

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/generations", self._create, methods=["POST"]),
            Route("/generations/{id}", self._get, methods=["GET"]),
        ]

    # -- validation (as Ray 3.2 does it) ------------------------------------------------

    def _ref(self, ref: Any, where: str, *, video: bool = False) -> str | None:
        """Check one ImageRef; returns the image/video it names (for the job), or raises."""
        if not isinstance(ref, dict):
            raise _Refused(f"{where} must be an object")
        given = [k for k in ("url", "data", "generation_id", "file_id") if ref.get(k)]
        if len(given) != 1:
            raise _Refused(f"{where}: provide exactly one of url, data, generation_id or file_id")
        kind = given[0]
        media = ref.get("media_type")
        if kind == "url" and not str(ref["url"]).startswith(("http://", "https://")):
            raise _Refused(f"{where}.url must be an http(s) URL", 422)
        if kind == "data" and not (isinstance(media, str) and "/" in media):
            raise _Refused(f"{where}.media_type is required with data")
        if video and kind in ("url", "data") and not str(media or "").startswith("video/"):
            raise _Refused(f"{where}.media_type must be a video/* type for a video source")
        if not video and kind in ("url", "data") and media is not None and not str(media).startswith("image/"):
            raise _Refused(f"{where}.media_type must be an image/* type", 422)
        if kind == "generation_id":
            source = self.jobs.get(str(ref["generation_id"]))
            if source is None:
                raise _Refused(f"{where}.generation_id: generation not found", 404)
            if source.state != "succeeded":
                raise _Refused(f"{where}.generation_id: the generation is not completed", 422)
        if kind == "file_id":
            raise _Refused(f"{where}.file_id: file not found", 404)  # this fake serves no Files API
        return str(ref[kind])[:200]

    def _check_video(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        """Check ``video`` options for ``kind``; returns what the job remembers."""
        video = body.get("video") or {}
        if not isinstance(video, dict):
            raise _Refused("video must be an object")
        if video.get("resolution", "720p") not in AGENTS_RESOLUTIONS:
            raise _Refused(f"video.resolution must be one of {list(AGENTS_RESOLUTIONS)}")
        for flag in ("hdr", "exr_export", "loop"):
            if flag in video and not isinstance(video[flag], bool):
                raise _Refused(f"video.{flag} must be a boolean")
        hdr, loop = video.get("hdr") is True, video.get("loop") is True
        if video.get("exr_export") and not hdr:
            raise _Refused("video.exr_export requires hdr=true", 422)
        if hdr and kind == "video_reframe":
            raise _Refused("video.hdr is not supported for video_reframe", 422)
        if hdr and video.get("resolution", "720p") not in ("720p", "1080p"):
            raise _Refused("video.hdr requires 720p or 1080p", 422)
        for key, only in (("loop", "video"), ("edit", "video_edit"), ("source_position", "video_reframe")):
            if key in video and kind != only:
                raise _Refused(f"video.{key} is only valid for type={only}", 422)
        if kind != "video" and "duration" in video:
            raise _Refused(f"video.duration is not accepted for {kind}: the output matches the source", 422)
        seconds = AGENTS_DURATIONS.get(video.get("duration", "5s"))
        if kind == "video" and seconds is None:
            raise _Refused(f"video.duration must be one of {list(AGENTS_DURATIONS)}")
        if loop and (seconds != 5 or hdr):
            raise _Refused("video.loop is not supported with duration=10s or hdr=true", 422)
        edit = video.get("edit")
        if edit is not None and (not isinstance(edit, dict) or edit.get("strength", "flex_1") not in EDIT_STRENGTHS):
            raise _Refused(f"video.edit.strength must be one of {sorted(EDIT_STRENGTHS)}")
        position = video.get("source_position")
        if position is not None and not (
            isinstance(position, dict)
            and all(isinstance(position.get(k), (int, float)) for k in ("x_norm", "y_norm", "w_norm", "h_norm"))
        ):
            raise _Refused("video.source_position needs x_norm, y_norm, w_norm and h_norm")
        return {"seconds": seconds, "image": self._check_frames(video, seconds or 5, hdr, loop)}

    def _check_frames(self, video: dict[str, Any], seconds: int, hdr: bool, loop: bool) -> str | None:
        """Start/end frames or keyframes + indexes; the first image named, if any."""
        anchors = [video[k] for k in ("start_frame", "end_frame") if video.get(k) is not None]
        keyframes, indexes = video.get("keyframes"), video.get("keyframe_indexes")
        if keyframes is None and indexes is None:
            if anchors and (seconds != 5 or hdr):
                raise _Refused("start_frame/end_frame support 5s SDR only; use keyframes", 422)
            named = [self._ref(a, f"video.{k}") for k, a in zip(("start_frame", "end_frame"), anchors, strict=False)]
            return named[0] if named else None
        if anchors or loop:
            raise _Refused("video.keyframes is mutually exclusive with start_frame, end_frame and loop", 422)
        if not isinstance(keyframes, list) or not isinstance(indexes, list) or len(keyframes) != len(indexes):
            raise _Refused("video.keyframes and video.keyframe_indexes must be lists of the same length")
        if not 1 <= len(keyframes) <= 64:
            raise _Refused("video.keyframes takes 1 to 64 anchors")
        grid = seconds * 24
        if len(set(indexes)) != len(indexes) or not all(isinstance(i, int) and 0 <= i <= grid for i in indexes):
            raise _Refused(f"video.keyframe_indexes must be unique frame positions in 0..{grid}")
        named = [self._ref(k, f"video.keyframes[{i}]") for i, k in enumerate(keyframes)]
        return named[0]

    def _check(self, body: Any) -> dict[str, Any]:
        """Check a create body; returns what the job remembers (raises :class:`_Refused`)."""
        if not isinstance(body, dict):
            raise _Refused("Request body must be a JSON object")
        if body.get("model", "uni-1") not in AGENTS_MODELS:
            raise _Refused(f"model: this account serves video models only ({sorted(AGENTS_MODELS)})")
        kind = body.get("type", "image")
        if kind not in AGENTS_TYPES:
            raise _Refused(f"type must be one of {list(AGENTS_TYPES)} for ray-3.2")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 6000:
            raise _Refused("prompt: 1 to 6000 characters required")
        ratio = body.get("aspect_ratio")
        if ratio is not None and ratio not in AGENTS_RATIOS:
            raise _Refused(f"aspect_ratio must be one of {list(AGENTS_RATIOS)} for ray-3.2")
        found = self._check_video(body, kind)
        source = body.get("source")
        if kind == "video" and source is not None:
            raise _Refused("source is only valid for video_edit and video_reframe", 422)
        if kind != "video":
            if source is None:
                raise _Refused(f"source is required for {kind}")
            found["source"] = self._ref(source, "source", video=True)
            origin = self.jobs.get(str(source.get("generation_id")))
            # The output is as long as the source: known for a generation, not for a file.
            found["seconds"] = origin.seconds if origin is not None else None
            if kind == "video_reframe" and ratio is None:
                raise _Refused("aspect_ratio is required for video_reframe")
        if "user_id" in body and not isinstance(body["user_id"], str):
            raise _Refused("user_id must be a string")
        return found

    # -- the Generation object --------------------------------------------------------

    def generation(self, job: FakeJob) -> dict[str, Any]:
        """The Generation object for ``job`` (SDK ``types/generation.py``)."""
        state = job.state if job.state in AGENTS_WORDS else "queued"
        failed = state == "failed"
        request = job.data["request"]
        return {
            "id": job.id,
            "created_at": self.created_at(job),
            "model": request.get("model"),
            "type": request.get("type"),
            "state": AGENTS_WORDS[state],
            "failure_code": (job.data.get("failure_code") or "generation_failed") if failed else None,
            "failure_reason": job.error if failed else None,
            "output": [{"type": "video", "url": self.result_url(job)}] if state == "succeeded" else None,
        }

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(rec):
            return refusal
        body = rec.json
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if refusal := self.create_fault(prompt, rec):
            return refusal
        if self.balance_empty:
            return self.reject(rec, "rejected", "Insufficient balance", 402)
        try:
            found = self._check(body)
        except _Refused as refused:
            return self.reject(rec, "rejected", refused.detail, refused.status)
        job = self.new_job(prompt, seconds=found["seconds"], request=body, image=found.get("image"))
        if found.get("source"):
            job.data["source"] = found["source"]
        if self._fail_next:
            code, reason = self._fail_next.popleft()
            job.data["failure_code"], job.error = code, reason
        rec.status = 201
        return JSONResponse(self.generation(job), status_code=201)

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self._auth(rec):
            return refusal
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            return self.reject(rec, "rejected", "Generation not found", 404)
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = self.advance(job)
        body = self.generation(job)
        if state == "unknown":
            body["state"] = AGENTS_WORDS["unknown"]
        rec.status = 200
        return JSONResponse(body)
