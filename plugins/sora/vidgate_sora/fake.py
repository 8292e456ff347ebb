"""A faithful fake of the OpenAI Videos API, for tests (ours and yours).

It behaves like the last published API (vendor-protocols.md §2): Bearer auth, ``POST
/v1/videos`` in multipart **and** JSON with strict enums (``seconds`` is a *string*),
the full 13-field Video object, ``queued -> in_progress -> completed`` over a few polls
with ``openai-poll-after-ms``, ``/content`` (mp4, ``variant=thumbnail`` webp,
``spritesheet`` jpeg) only once completed, list with cursors, delete, remix, and
switchable failures. Every request is recorded with its exact wire shape.

Use it in a test::

    from vidgate.testing import run_gateway, serve_app
    from vidgate_sora.fake import FakeVideosAPI

    fake = FakeVideosAPI(api_keys={"sk-test"})
    async with serve_app(fake.app) as served:
        channel = {"name": "sora", "vendor": "sora", "base_url": served.url + "/v1",
                   "credentials": {"api_key": "sk-test"}, "options": {"poll_interval": 0.05}}
        ...
        assert fake.creates()[0].fields["seconds"] == "4"
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from vidgate.fakekit import FakeVendor
from vidgate.testing import tiny_mp4

__all__ = ["FakeVideosAPI", "RecordedPart", "RecordedRequest", "sample_mp4", "SAMPLE_WEBP"]

MODELS = ("sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08")
SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PRO_ONLY_SIZES = ("1024x1792", "1792x1024")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
CREATE_FIELDS = ("prompt", "model", "seconds", "size", "input_reference")
MAX_PROMPT = 32_000

# A 1x1 lossless WebP: what ``variant=thumbnail`` serves.
SAMPLE_WEBP = bytes.fromhex("524946461a000000574542505650384c0d0000002f0000001007101111888888fe0700")
# A tiny JPEG-looking body for ``variant=spritesheet`` (only the magic matters here).
SAMPLE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


def sample_mp4() -> bytes:
    """The fake's video: a small valid H.264 MP4 (64x64, 8 frames)."""
    return tiny_mp4(64, 64)


@attrs.define
class RecordedPart:
    """One multipart part: a text field (``filename`` None) or a file."""

    name: str
    value: str | None = None
    filename: str | None = None
    content_type: str | None = None
    data: bytes | None = attrs.field(default=None, repr=lambda d: f"<{len(d)} bytes>" if d is not None else "None")


@attrs.define
class RecordedRequest:
    """One request the fake received, as it was on the wire."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    content_type: str = ""
    json: Any = None
    parts: list[RecordedPart] = attrs.field(factory=list)
    status: int | None = None  # what the fake answered
    at: float = attrs.field(factory=time.monotonic)  # when it arrived (time.monotonic)

    @property
    def fields(self) -> dict[str, Any]:
        """Body fields by name: JSON keys, or multipart text fields (files excluded)."""
        if self.json is not None:
            return dict(self.json) if isinstance(self.json, dict) else {}
        return {p.name: p.value for p in self.parts if p.filename is None}

    @property
    def files(self) -> dict[str, RecordedPart]:
        return {p.name: p for p in self.parts if p.filename is not None}

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/form-data")


@attrs.define
class _Scripted:
    """A canned error answer for the next create calls."""

    status: int
    type: str
    code: str | None
    message: str
    headers: dict[str, str] = attrs.field(factory=dict)


class _Reject(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_


class FakeVideosAPI(FakeVendor):
    """State, switches and the Starlette ``app`` of the fake (routes under ``/v1``).

    :param api_keys: keys accepted as ``Authorization: Bearer <key>``.
    :param polls_to_finish: retrieves after which a video is ``completed`` (progress
        rises evenly before).
    :param poll_after_ms: value of the ``openai-poll-after-ms`` header (None = omit).
    :param extra_fields: create fields accepted besides the spec's; any other unknown
        field is a 400 ``unknown_parameter`` naming it, as the real API does.
    :param thumbnails: serve ``variant=thumbnail``; when False it answers 404.
    :param auth: the key headers accepted: ``bearer`` (``Authorization: Bearer``) and/or
        ``api-key`` (Azure's ``api-key: <key>``).
    :param retired_models: models a create answers 404 ``model_not_found`` for (an
        upstream that no longer serves them).
    :param derived: serve remix, extensions and edits; when False those routes answer a
        bare 404 ``{"detail": "Not Found"}``, as a vLLM-Omni or SGLang server does.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = ("sk-test",),
        *,
        polls_to_finish: int = 3,
        poll_after_ms: int | None = 10,
        extra_fields: Iterable[str] = (),
        thumbnails: bool = True,
        video_bytes: bytes | None = None,
        auth: Iterable[str] = ("bearer",),
        retired_models: Iterable[str] = (),
        derived: bool = True,
    ) -> None:
        self.api_keys = set(api_keys)
        super().__init__(
            secret=next(iter(sorted(self.api_keys)), "sk-test"),
            polls_to_finish=max(1, polls_to_finish),
            result_bytes=video_bytes if video_bytes is not None else sample_mp4(),
        )
        self.poll_after_ms = poll_after_ms
        self.extra_fields = set(extra_fields)
        self.thumbnails = thumbnails
        self.auth = set(auth)
        self.retired_models = set(retired_models)
        self.derived = derived
        self.video_bytes: bytes = self._result_bytes  # type: ignore[assignment]
        self.requests: list[RecordedRequest] = []  # type: ignore[assignment]
        self.videos: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._polls: dict[str, int] = {}
        self._fate: dict[str, dict[str, Any]] = {}
        self._create_errors: deque[_Scripted] = deque()
        self._next_fate: deque[dict[str, Any]] = deque()
        self._retrieve_errors: deque[_Scripted] = deque()
        self.quota_exhausted = False
        self._ids = itertools.count(1)

    # -- switches ---------------------------------------------------------------------

    def rate_limit(self, times: int = 1, *, retry_after: float | None = 0.1, retry_after_ms: int | None = None) -> None:
        """The next ``times`` creates answer 429 ``rate_limit_exceeded`` (with
        ``retry-after`` seconds and/or ``retry-after-ms`` headers)."""
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        for _ in range(times):
            self._create_errors.append(
                _Scripted(429, "requests", "rate_limit_exceeded", "Rate limit reached for requests.", headers)
            )

    def server_error(self, times: int = 1) -> None:
        """The next ``times`` creates answer 500."""
        for _ in range(times):
            self._create_errors.append(_Scripted(500, "server_error", None, "The server had an error."))

    def retrieve_error(self, times: int = 1, status: int = 500) -> None:
        """The next ``times`` retrieves (``GET /v1/videos/{id}``) answer ``status``
        (500 server error, or 429 rate limit)."""
        for _ in range(times):
            if status == 429:
                scripted = _Scripted(
                    429, "requests", "rate_limit_exceeded", "Rate limit reached.", {"retry-after": "0"}
                )
            else:
                scripted = _Scripted(status, "server_error", None, "The server had an error.")
            self._retrieve_errors.append(scripted)

    def exhaust_quota(self, exhausted: bool = True) -> None:
        """Every create answers 429 ``insufficient_quota`` until switched off."""
        self.quota_exhausted = exhausted

    def fail_next(self, code: str = "video_generation_failed", message: str = "Video generation failed.") -> None:
        """The next created video ends ``failed`` with ``error{code, message}``."""
        self._next_fate.append({"fail": {"code": code, "message": message}})

    def unknown_status_next(self, word: str = "rendering", polls: int = 2) -> None:
        """The next created video reports status ``word`` for its first ``polls`` retrieves,
        then carries on normally."""
        self._next_fate.append({"unknown": word, "unknown_polls": polls})

    # -- inspection -------------------------------------------------------------------

    def creates(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/videos`` requests (all, answered or refused)."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/videos"]

    def extensions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/videos/extensions")]

    def edits(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/videos/edits")]

    def remixes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/remix")]

    # -- app --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        routes = [
            Route("/videos", self._create, methods=["POST"]),
            Route("/videos", self._list, methods=["GET"]),
            # Before /videos/{video_id}: the same paths with POST.
            Route("/videos/extensions", self._extension, methods=["POST"]),
            Route("/videos/edits", self._edit, methods=["POST"]),
            Route("/videos/{video_id}", self._retrieve, methods=["GET"]),
            Route("/videos/{video_id}", self._delete, methods=["DELETE"]),
            Route("/videos/{video_id}/content", self._content, methods=["GET"]),
            Route("/videos/{video_id}/remix", self._remix, methods=["POST"]),
        ]
        return [Mount("/v1", routes=routes)]

    def error(
        self,
        kind: str,
        message: str,
        status: int,
        *,
        type_: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """OpenAI's error envelope; ``kind`` gives the ``type`` and ``code`` unless ``type_``
        or ``code`` are given (through :meth:`reject`'s fields)."""
        kind_type, kind_code = {
            "rate_limit": ("requests", "rate_limit_exceeded"),
            "server": ("server_error", None),
            "auth": ("invalid_request_error", "invalid_api_key"),
        }.get(kind, ("invalid_request_error", None))
        body = {
            "error": {
                "message": message,
                "type": type_ or kind_type,
                "param": param,
                "code": code if code is not None else kind_code,
            }
        }
        return JSONResponse(body, status_code=status, headers={**(headers or {}), "x-request-id": _req_id()})

    def _ok(self, body: dict[str, Any], *, poll_hint: bool = False) -> JSONResponse:
        headers = {"x-request-id": _req_id()}
        if poll_hint and self.poll_after_ms is not None and body.get("status") in ("queued", "in_progress"):
            headers["openai-poll-after-ms"] = str(self.poll_after_ms)
        return JSONResponse(body, headers=headers)

    async def _record(self, request: Request) -> RecordedRequest:
        rec = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            content_type=request.headers.get("content-type", ""),
        )
        self.requests.append(rec)
        if request.method in ("POST", "PUT", "PATCH"):
            if rec.is_multipart:
                try:
                    form = await request.form(max_files=8, max_fields=64, max_part_size=32 * 1024 * 1024)
                except Exception:
                    rec.json = None
                    rec.parts = []
                    rec.status = -1  # marks an unparseable body
                    return rec
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        data = await value.read()
                        rec.parts.append(RecordedPart(name, None, value.filename, value.content_type, data))
                    else:
                        rec.parts.append(RecordedPart(name, value))
                await form.close()
            else:
                raw = await request.body()
                if raw:
                    try:
                        rec.json = json.loads(raw)
                    except ValueError:
                        rec.status = -1
        return rec

    def _authorized(self, rec: RecordedRequest) -> bool:
        auth = rec.headers.get("authorization", "")
        if "bearer" in self.auth and auth.startswith("Bearer ") and auth[7:] in self.api_keys:
            return True
        return "api-key" in self.auth and rec.headers.get("api-key", "") in self.api_keys

    async def _guard(self, request: Request) -> tuple[RecordedRequest, Response | None]:
        rec = await self._record(request)
        if not self._authorized(rec):
            return rec, self.reject(rec, "auth", "Incorrect API key provided.", 401)
        if rec.status == -1:
            return rec, self.reject(
                rec, "rejected", "We could not parse the body of your request.", 400, code="invalid_body"
            )
        return rec, None

    def _video(self, *, model: str, prompt: str, seconds: str, size: str, remixed_from: str | None) -> dict[str, Any]:
        vid = f"video_{next(self._ids):04d}{secrets.token_hex(6)}"
        video = {
            "id": vid,
            "object": "video",
            "model": model,
            "status": "queued",
            "progress": 0,
            "created_at": int(time.time()),
            "completed_at": None,
            "expires_at": None,
            "prompt": prompt,
            "size": size,
            "seconds": seconds,
            "remixed_from_video_id": remixed_from,
            "error": None,
        }
        self.videos[vid] = video
        self._order.append(vid)
        self._polls[vid] = 0
        self._fate[vid] = self._next_fate.popleft() if self._next_fate else {}
        return video

    # -- handlers ---------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        if self.quota_exhausted:
            return self.reject(
                rec,
                "rejected",
                "You exceeded your current quota, please check your plan and billing details.",
                429,
                type_="insufficient_quota",
                code="insufficient_quota",
            )
        if self._create_errors:
            err = self._create_errors.popleft()
            return self.reject(
                rec, "rejected", err.message, err.status, type_=err.type, code=err.code, headers=err.headers
            )
        try:
            fields = self._create_fields(rec)
        except _Reject as exc:
            return self.reject(rec, "rejected", exc.message, exc.status, type_=exc.type, param=exc.param, code=exc.code)
        if refusal := self.create_fault(fields["prompt"], rec):
            return refusal
        video = self._video(remixed_from=None, **fields)
        image = "input_reference" in rec.files or "input_reference" in (rec.json or {})
        self.new_job(
            fields["prompt"], seconds=int(fields["seconds"]), size=fields["size"], job_id=video["id"], image=image
        )
        rec.status = 200
        return self._ok(video, poll_hint=True)

    def _create_fields(self, rec: RecordedRequest) -> dict[str, str]:
        if rec.is_multipart:
            names = [p.name for p in rec.parts]
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup is not None:
                raise _Reject(400, f"Duplicate parameter: '{dup}'.", dup, "duplicate_parameter")
            body: dict[str, Any] = {p.name: p.value for p in rec.parts if p.filename is None}
            files = rec.files
            for name in files:
                if name != "input_reference":
                    raise _Reject(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
            if "input_reference" in files:
                part = files["input_reference"]
                if not part.filename:
                    raise _Reject(400, "input_reference must be a file with a filename.", "input_reference")
                if (part.content_type or "").split(";")[0] not in IMAGE_TYPES:
                    raise _Reject(
                        400,
                        f"Invalid file type '{part.content_type}' for input_reference: expected "
                        "image/jpeg, image/png or image/webp.",
                        "input_reference",
                        "invalid_value",
                    )
                if not part.data:
                    raise _Reject(400, "input_reference is empty.", "input_reference")
            elif "input_reference" in body:
                raise _Reject(400, "input_reference must be uploaded as a file.", "input_reference", "invalid_type")
        elif rec.content_type.split(";")[0].strip() == "application/json":
            body = rec.json
            if not isinstance(body, dict):
                raise _Reject(400, "The request body must be a JSON object.", None, "invalid_body")
            ref = body.get("input_reference")
            if ref is not None:
                ok = (
                    isinstance(ref, dict)
                    and len(ref) == 1
                    and (isinstance(ref.get("image_url"), str) or isinstance(ref.get("file_id"), str))
                )
                if not ok:
                    raise _Reject(
                        400,
                        "input_reference must be an object with exactly one of image_url or file_id.",
                        "input_reference",
                        "invalid_type",
                    )
        else:
            raise _Reject(400, "Content-Type must be application/json or multipart/form-data.", None, "invalid_body")
        for name in body:
            if name not in CREATE_FIELDS and name not in self.extra_fields:
                raise _Reject(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Reject(400, "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        if len(prompt) > MAX_PROMPT:
            raise _Reject(400, f"prompt is longer than {MAX_PROMPT} characters.", "prompt", "string_above_max_length")
        model = body.get("model", "sora-2")
        if model in self.retired_models:
            raise _Reject(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                "model",
                "model_not_found",
            )
        if model not in MODELS:
            raise _Reject(
                400, f"Invalid value: '{model}'. Supported values are: {', '.join(MODELS)}.", "model", "invalid_value"
            )
        seconds = body.get("seconds", "4")
        if not isinstance(seconds, str):
            raise _Reject(
                400,
                f"Invalid type for 'seconds': expected one of {', '.join(SECONDS)} as a string, "
                f"but got {type(seconds).__name__} instead.",
                "seconds",
                "invalid_type",
            )
        if seconds not in SECONDS:
            raise _Reject(
                400,
                f"Invalid value: '{seconds}'. Supported values are: {', '.join(SECONDS)}.",
                "seconds",
                "invalid_value",
            )
        size = body.get("size", "720x1280")
        if size not in SIZES:
            raise _Reject(
                400, f"Invalid value: '{size}'. Supported values are: {', '.join(SIZES)}.", "size", "invalid_value"
            )
        if size in PRO_ONLY_SIZES and not model.startswith("sora-2-pro"):
            raise _Reject(400, f"The size {size} is only available for sora-2-pro.", "size", "invalid_value")
        return {"model": model, "prompt": prompt, "seconds": seconds, "size": size}

    def _advance(self, video: dict[str, Any]) -> dict[str, Any]:
        """One retrieve moves an unfinished video one step along."""
        vid = video["id"]
        if video["status"] in ("completed", "failed"):
            return video
        fate = self._fate.get(vid, {})
        job = self.jobs.get(vid)
        if job is not None:  # prompt keywords (vidgate.fakekit)
            job.polls += 1
            if job.take("unknown-status"):
                job.unknown_polls += 1
                return {**video, "status": self.word("unknown")}
            if job.held:
                video["status"] = "in_progress"
                return video
            if job.take("fail"):
                fate["fail"] = {"code": "video_generation_failed", "message": "Video generation failed."}
        self._polls[vid] += 1
        n = self._polls[vid]
        if fate.get("unknown") and n <= fate.get("unknown_polls", 0):
            video["status"] = fate["unknown"]
            return video
        step = n - fate.get("unknown_polls", 0) if fate.get("unknown") else n
        if step < self.polls_to_finish:
            video["status"] = "in_progress"
            video["progress"] = max(video["progress"], step * 100 // self.polls_to_finish)
            return video
        now = int(time.time())
        video["completed_at"] = now
        if "fail" in fate:
            video["status"] = "failed"
            video["error"] = dict(fate["fail"])
        else:
            video["status"] = "completed"
            video["progress"] = 100
            video["expires_at"] = now + 3600
        return video

    def _lookup(self, video_id: str) -> dict[str, Any] | None:
        return self.videos.get(video_id)

    def _missing(self, rec: RecordedRequest, video_id: str) -> Response:
        message = f"Video with id '{video_id[:100]}' not found."
        return self.reject(rec, "rejected", message, 404, param="video_id", code="not_found")

    async def _retrieve(self, request: Request) -> Response:
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        if self._retrieve_errors:
            err = self._retrieve_errors.popleft()
            return self.reject(
                rec, "rejected", err.message, err.status, type_=err.type, code=err.code, headers=err.headers
            )
        video = self._lookup(request.path_params["video_id"])
        if video is None:
            return self._missing(rec, request.path_params["video_id"])
        if refusal := await self.poll_fault(self.jobs.get(video["id"]), rec):
            return refusal
        rec.status = 200
        return self._ok(self._advance(video), poll_hint=True)

    async def _content(self, request: Request) -> Response:
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        video = self._lookup(request.path_params["video_id"])
        if video is None:
            return self._missing(rec, request.path_params["video_id"])
        variant = request.query_params.get("variant", "video")
        if variant not in ("video", "thumbnail", "spritesheet"):
            return self.reject(
                rec, "rejected", f"Invalid value: '{variant}'.", 400, param="variant", code="invalid_value"
            )
        if video["status"] != "completed":
            return self.reject(
                rec, "rejected", "Video is not ready yet; wait until it is completed.", 400, code="video_not_ready"
            )
        rec.status = 200
        if variant == "video":
            return Response(self.video_bytes, media_type="video/mp4")
        if variant == "thumbnail":
            if not self.thumbnails:
                return self.reject(
                    rec, "rejected", "No thumbnail for this video.", 404, param="variant", code="not_found"
                )
            return Response(SAMPLE_WEBP, media_type="image/webp")
        return Response(SAMPLE_JPEG, media_type="image/jpeg")

    async def _list(self, request: Request) -> Response:
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        q = request.query_params
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            return self.reject(rec, "rejected", f"Invalid value: '{order}'.", 400, param="order", code="invalid_value")
        raw_limit = q.get("limit", "20")
        if not raw_limit.isdigit() or int(raw_limit) > 100:
            return self.reject(
                rec, "rejected", "limit must be an integer from 0 to 100.", 400, param="limit", code="invalid_value"
            )
        ids = list(self._order) if order == "asc" else list(reversed(self._order))
        if after := q.get("after"):
            if after not in ids:
                return self.reject(
                    rec, "rejected", f"No video with id '{after[:100]}'.", 400, param="after", code="invalid_value"
                )
            ids = ids[ids.index(after) + 1 :]
        limit = int(raw_limit)
        page = ids[:limit]
        rec.status = 200
        return self._ok(
            {
                "object": "list",
                "data": [self.videos[i] for i in page],
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
                "has_more": len(ids) > limit,
            }
        )

    async def _delete(self, request: Request) -> Response:
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        vid = request.path_params["video_id"]
        video = self._lookup(vid)
        if video is None:
            return self._missing(rec, vid)
        if video["status"] not in ("completed", "failed"):
            return self.reject(
                rec, "rejected", "Only completed or failed videos can be deleted.", 400, code="video_not_finished"
            )
        del self.videos[vid]
        self._order.remove(vid)
        rec.status = 200
        return self._ok({"id": vid, "object": "video.deleted", "deleted": True})

    def _no_route(self, rec: RecordedRequest) -> Response:
        rec.status = 404
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    async def _remix(self, request: Request) -> Response:
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        if not self.derived:
            return self._no_route(rec)
        source = self._lookup(request.path_params["video_id"])
        if source is None:
            return self._missing(rec, request.path_params["video_id"])
        body = rec.fields
        for name in body:
            if name != "prompt":
                return self.reject(
                    rec, "rejected", f"Unknown parameter: '{name}'.", 400, param=name, code="unknown_parameter"
                )
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt or len(prompt) > MAX_PROMPT:
            return self.reject(
                rec, "rejected", "prompt must be 1 to 32000 characters.", 400, param="prompt", code="invalid_value"
            )
        if source["status"] != "completed":
            return self.reject(
                rec, "rejected", "Only completed videos can be remixed.", 400, param="video_id", code="video_not_ready"
            )
        video = self._video(
            model=source["model"],
            prompt=prompt,
            seconds=source["seconds"],
            size=source["size"],
            remixed_from=source["id"],
        )
        rec.status = 200
        return self._ok(video, poll_hint=True)

    async def _extension(self, request: Request) -> Response:
        return await self._derived(request, "extend")

    async def _edit(self, request: Request) -> Response:
        return await self._derived(request, "edit")

    async def _derived(self, request: Request, operation: str) -> Response:
        """``POST /videos/extensions`` and ``/videos/edits``: JSON ``{prompt, [seconds],
        video: {id}}`` or multipart with ``video[id]`` (or a ``video`` file, which this
        fake refuses: it keeps no uploaded sources)."""
        rec, refused = await self._guard(request)
        if refused is not None:
            return refused
        if not self.derived:
            return self._no_route(rec)
        body = rec.fields
        allowed = {"prompt", "video", "video[id]"} | ({"seconds"} if operation == "extend" else set())
        for name in body:
            if name not in allowed:
                return self.reject(
                    rec, "rejected", f"Unknown parameter: '{name}'.", 400, param=name, code="unknown_parameter"
                )
        if "video" in rec.files:
            return self.reject(
                rec, "rejected", "This fake does not keep uploaded videos.", 400, param="video", code="unsupported"
            )
        ref = body.get("video")
        video_id = ref.get("id") if isinstance(ref, dict) else body.get("video[id]")
        if not isinstance(video_id, str) or not video_id:
            return self.reject(
                rec,
                "rejected",
                "Missing required parameter: 'video'.",
                400,
                param="video",
                code="missing_required_parameter",
            )
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt or len(prompt) > MAX_PROMPT:
            return self.reject(
                rec, "rejected", "prompt must be 1 to 32000 characters.", 400, param="prompt", code="invalid_value"
            )
        seconds = str(body.get("seconds", ""))
        if operation == "extend" and seconds not in ("4", "8", "12", "16", "20"):
            return self.reject(
                rec, "rejected", "seconds must be one of 4, 8, 12, 16, 20.", 400, param="seconds", code="invalid_value"
            )
        source = self._lookup(video_id)
        if source is None:
            return self._missing(rec, video_id)
        if source["status"] != "completed":
            return self.reject(
                rec, "rejected", "Only completed videos can be used.", 400, param="video", code="video_not_ready"
            )
        # OpenAI: "For extensions, this is the stitched total duration."
        total = str(int(source["seconds"]) + int(seconds)) if operation == "extend" else source["seconds"]
        video = self._video(model=source["model"], prompt=prompt, seconds=total, size=source["size"], remixed_from=None)
        rec.status = 200
        return self._ok(video, poll_hint=True)


def _req_id() -> str:
    return f"req_{secrets.token_hex(8)}"
