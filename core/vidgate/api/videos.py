"""The OpenAI Videos surface: ``/v1/videos`` create, retrieve, list, delete, content, cancel,
and the derived tasks: remix, extensions, edits.

Create accepts JSON and ``multipart/form-data`` (what current openai SDKs always send),
and maps both into the same unified request as ``/v1/video/generations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import Problem, RequestInvalid, conflict, gone, invalid, not_found, range_not_satisfiable
from ..media import EXTENSIONS, SERVABLE_TYPES, VARIANTS, MediaReader, MediaStorage
from ..request import MAX_IMAGE_BYTES, Image, image_from_bytes, prompt_problem
from ..submitting import request_fingerprint
from ..wire import VideoDeleted, VideoList, to_json, video_record
from . import events
from .common import (
    MAX_JSON_DEPTH,
    FastJSONResponse,
    _depth,
    content_url,
    created_response,
    gateway,
    idempotency_key,
    loads_strict,
    read_body,
    read_json,
    task_response,
    token,
    unified_request,
    webhook_url,
)
from .errors import error_response
from .forms import parse_multipart, parse_urlencoded, text

MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
_TEXT_FIELDS = ("model", "prompt", "seconds", "duration", "size", "image", "webhook_url")
_UPLOAD_FIELDS = ("input_reference", "image", "images", "images[]")
_LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only: str.isdigit() accepts "²"
# A text part may carry an image as a data URL (input_reference[image_url]); allow the
# same 20 MiB image as JSON does (base64 grows it by 4/3). The whole body is still
# bounded by server.max_body_bytes.
_MAX_TEXT_PART = MAX_IMAGE_BYTES * 4 // 3 + 1024


_METADATA_KEY = re.compile(r"metadata((?:\[[^\[\]]{0,64}\]){1,4})")


def _set_metadata(fields: dict[str, Any], path: str, value: str, problems: list[Problem]) -> None:
    """Set ``metadata[a][b]=value`` (form encoders' flattening) into ``fields["metadata"]``.

    Form values are text; a value that parses as JSON (``12``, ``true``, ``[1]``) takes
    that type, anything else stays a string, so ``metadata[fps]=12`` means ``{"fps": 12}``.
    ``[]`` appends to a list.
    """
    keys = re.findall(r"\[([^\[\]]*)\]", path)
    try:
        parsed: Any = loads_strict(value)
    except ValueError:  # not JSON (or NaN/Infinity, which are not JSON either): text
        parsed = value
    target = fields.setdefault("metadata", {})
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if not isinstance(target, dict) or key == "" and i == 0:
            problems.append(Problem("metadata", f"cannot combine metadata{path} with the other metadata fields"))
            return
        if last:
            if key == "":
                problems.append(Problem("metadata", f"metadata{path}: list items need a key"))
                return
            target[key] = parsed
        elif keys[i + 1] == "" and i + 1 == len(keys) - 1:
            items = target.setdefault(key, [])
            if not isinstance(items, list):
                problems.append(Problem(f"metadata.{key}", "is given both as a value and as a list"))
                return
            items.append(parsed)
            return
        else:
            target = target.setdefault(key, {})


def _is_form(request: Request) -> bool:
    """Multipart (the openai SDK, ``curl -F``) or urlencoded (``curl -d k=v``, HTML forms).

    Anything else is read as JSON, whatever its declared type, so ``curl -d '{...}'``
    without a content type works too.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return kind in ("multipart/form-data", "application/x-www-form-urlencoded")


async def _read_multipart(request: Request) -> tuple[dict[str, Any], list[Image], str]:
    body = await read_body(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        parts = await asyncio.to_thread(parse_multipart, content_type, body)
    else:
        parts = parse_urlencoded(body)
    fields: dict[str, Any] = {}
    images: list[str] = []
    uploads: list[Image] = []
    problems: list[Problem] = []
    digest = hashlib.sha256()
    for part in parts:
        name = part.name
        if part.filename is not None:
            data = part.data
            file_digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())  # noqa: B023 (awaited here)
            digest.update(name.encode() + b"\0" + file_digest)
            if name not in _UPLOAD_FIELDS:
                continue  # unknown file parts are ignored, like unknown JSON fields
            img = image_from_bytes(
                data,
                "input_reference" if name == "input_reference" else "image",
                problems,
                declared_type=part.content_type,
                filename=part.filename,
            )
            if img is not None:
                uploads.append(img)
            continue
        if len(part.data) > _MAX_TEXT_PART:
            problems.append(Problem(name, "is too large for a text field", "too_large"))
            continue
        value = text(part, problems)
        if value is None:
            continue
        digest.update(f"{name}\0{value}\0".encode())
        if name in _TEXT_FIELDS:
            fields[name] = value
        elif name in ("input_reference[image_url]", "input_reference"):
            # The object form {image_url} flattened by form encoders, or a bare URL.
            fields["input_reference"] = value
        elif name == "input_reference[file_id]":
            problems.append(
                Problem("input_reference.file_id", "file ids are not supported; send image_url or upload the file")
            )
        elif name in ("images", "images[]") or re.fullmatch(r"images\[[0-9]{1,2}\]", name):
            images.append(value)
        elif name == "metadata":
            try:
                fields["metadata"] = loads_strict(value)
            except ValueError:
                problems.append(Problem("metadata", "must be a JSON object (sent as a JSON string in multipart)"))
            else:
                if _depth(fields["metadata"]) > MAX_JSON_DEPTH:
                    problems.append(Problem("metadata", "is nested too deeply"))
        elif m := _METADATA_KEY.fullmatch(name):
            # What the openai SDK makes of extra_body={"metadata": {...}} in multipart.
            _set_metadata(fields, m[1], value, problems)
    if images:
        fields["images"] = images
    if problems:
        raise RequestInvalid(problems)
    return fields, uploads, digest.hexdigest()


async def create(request: Request) -> Response:
    caller = await token(request)
    if _is_form(request):
        fields, uploads, fingerprint = await _read_multipart(request)
        hook = webhook_url(fields)
        unified, _ = await unified_request(request, fields, uploads)
    else:
        body = await read_json(request)
        hook = webhook_url(body)
        unified, fingerprint = await unified_request(request, body)
    task = await gateway(request).submit(
        caller, unified, idempotency_key=idempotency_key(request), fingerprint=fingerprint, webhook_url=hook
    )
    return await created_response(request, task)


async def retrieve(request: Request) -> Response:
    caller = await token(request)
    task = await gateway(request).task_for(caller, request.path_params["video_id"])
    return task_response(request, task, poll_hint=True)


async def list_videos(request: Request) -> Response:
    caller = await token(request)
    gw = gateway(request)
    params = request.query_params
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("order must be 'asc' or 'desc'.", "order")
    raw_limit = params.get("limit", str(DEFAULT_LIST_LIMIT)).strip()
    if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
        raise invalid(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}.", "limit")
    limit = int(raw_limit)
    after = None
    if after_id := params.get("after"):
        after = await gw.store.get_task(after_id) if len(after_id) < 200 else None
        # A deleted task (hidden) still marks its place, so deleting while paginating works.
        if after is None or after.token_id != caller.id:
            raise invalid("after must be the id of one of your videos.", "after")
    tasks = await gw.store.list_tasks(caller.id, after=after, limit=limit + 1, order=order)
    has_more = len(tasks) > limit
    tasks = tasks[:limit]
    page = VideoList(
        object="list",
        data=[video_record(t, content_url(request, t) if t.status == "completed" else None) for t in tasks],
        first_id=tasks[0].id if tasks else None,
        last_id=tasks[-1].id if tasks else None,
        has_more=has_more,
    )
    return FastJSONResponse(to_json(page))


async def delete(request: Request) -> Response:
    caller = await token(request)
    task = await gateway(request).delete(caller, request.path_params["video_id"])
    return JSONResponse(to_json(VideoDeleted(id=task.id, object="video.deleted", deleted=True)))


async def content(request: Request) -> Response:
    caller = await token(request)
    gw = gateway(request)
    task = await gw.task_for(caller, request.path_params["video_id"])
    variant = request.query_params.get("variant", "video")
    if variant not in VARIANTS:
        raise invalid(
            f"variant must be one of {', '.join(VARIANTS)}; got {variant[:40]!r}.", "variant", "unsupported_variant"
        )
    if task.status != "completed":
        # 409 for every unfinished state, failed included: the video is in the wrong
        # state for this call. x-should-retry: false, so the SDK does not hammer it.
        code = {"failed": "video_failed", "cancelled": "video_cancelled"}.get(task.status, "video_not_ready")
        raise conflict(f"Video '{task.id}' is {task.status}; its content is available once it is completed.", code)
    if task.media is None and task.expires_at is not None and task.expires_at < time.time():
        raise gone(
            f"Video '{task.id}' expired at {int(task.expires_at)}; its stored media was deleted.", "video_expired"
        )
    info = (task.media or {}).get(variant)
    if info is None:
        raise not_found(f"Video '{task.id}' has no stored {variant}.", "variant")
    # Only a type the gateway sniffed when storing is sent (media stored before sniffing
    # existed may carry a vendor's claim such as text/html); the browser must not sniff
    # either, and a document opened from here runs nothing.
    media_type = info.get("content_type")
    if media_type not in SERVABLE_TYPES:
        media_type = "application/octet-stream"
    ext = EXTENSIONS.get(media_type, "bin")
    name = task.id if variant in ("video", "thumbnail") else f"{task.id}.{variant}"
    filename = f"{name}.{ext}"
    cfg = gw.config.media
    if cfg.serve == "redirect":
        url = await gw.media.presigned_url(
            task.id, variant, expires_seconds=cfg.presign_seconds, filename=filename, content_type=media_type
        )
        if url is not None:
            # The URL is a bearer credential for these bytes until it expires: never cache it.
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": "private, no-store"})
    # Stat here, not in FileResponse: media deleted meanwhile (retention, a concurrent
    # DELETE) is then a 404 instead of FileResponse's RuntimeError.
    stored = await gw.media.stat(task.id, variant)
    if stored is None:
        raise not_found(f"Video '{task.id}' has no stored {variant}.", "variant")
    kwargs: dict[str, Any] = dict(
        media_type=media_type,
        filename=filename,
        content_disposition_type="inline",
        headers={
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
    stat_result = os.stat_result(
        (stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, stored.size, stored.mtime, stored.mtime, stored.mtime)
    )
    if stored.path is not None:
        return _MediaResponse(stored.path, stat_result=stat_result, **kwargs)
    return _StoredMediaResponse(gw.media, task.id, variant, stat_result=stat_result, **kwargs)


class _MediaResponse(FileResponse):
    """FileResponse (HEAD, Range, If-Range) whose Range errors keep the one error shape.

    A Range header that does not parse is ignored (RFC 9110 allows it) and the whole
    file is sent; an unsatisfiable one is a 416 in the error shape.
    """

    # Starlette's 64 KiB costs a thread hop and an ASGI message per chunk, which capped a
    # download at about a third of a plain file server; 1 MiB amortises both, and a
    # download holds one chunk at a time (uvicorn's write buffer pauses us beyond that).
    chunk_size = 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        http_range = Headers(scope=scope).get("range")
        if http_range is not None and self.stat_result is not None:
            size = self.stat_result.st_size
            try:
                self._parse_range_header(http_range, size)
            except MalformedRangeHeader:
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]}
            except RangeNotSatisfiable:
                error = range_not_satisfiable(size)
                await error_response(error)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _StoredMediaResponse(_MediaResponse):
    """The same response (Range, HEAD, If-Range, errors) over media that is not a local file.

    FileResponse reads through ``_open_file`` (seek, read); this one hands it a reader over
    the storage's ranged reads, so object storage is streamed a chunk at a time.
    """

    def __init__(self, storage: MediaStorage, task_id: str, variant: str, **kwargs: Any) -> None:
        super().__init__(f"{task_id}/{variant}", **kwargs)
        self._storage, self._task_id, self._variant = storage, task_id, variant
        self._range_end: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        await super().__call__({**scope, "extensions": extensions}, receive, send)

    async def _handle_single_range(
        self, send: Send, start: int, end: int, file_size: int, send_header_only: bool
    ) -> None:
        self._range_end = end  # ask the store for just this range
        await super()._handle_single_range(send, start, end, file_size, send_header_only)

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[Any]:
        reader = _RangedReader(self._storage, self._task_id, self._variant, self._range_end)
        try:
            yield reader
        finally:
            await asyncio.shield(reader.aclose())


class _RangedReader:
    """``seek``/``read`` over ranged reads: one open read per contiguous run of bytes."""

    def __init__(self, storage: MediaStorage, task_id: str, variant: str, end: int | None) -> None:
        self._storage, self._task_id, self._variant, self._end = storage, task_id, variant, end
        self._pos = 0
        self._reader: MediaReader | None = None
        self._reader_pos = -1

    async def seek(self, pos: int) -> None:
        self._pos = pos

    async def read(self, n: int) -> bytes:
        if self._reader is None or self._reader_pos != self._pos:
            await self.aclose()
            end = self._end if self._end is not None and self._end > self._pos else None
            self._reader = await self._storage.open_range(self._task_id, self._variant, self._pos, end)
            self._reader_pos = self._pos
        data = await self._reader.read(n)
        self._pos += len(data)
        self._reader_pos = self._pos
        return data

    async def aclose(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.aclose()


def _derive_model(body: dict[str, Any]) -> str | None:
    """The model a derived request names (xAI-style bodies carry one), or None."""
    model = body.get("model")
    if model is None:
        return None
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise invalid("model must be the name of a model.", "model")
    return model.strip()


def _derive_prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt is required.", "prompt", "missing_required_parameter")
    if (bad := prompt_problem(prompt)) is not None:
        raise invalid(f"prompt {bad[0]}.", "prompt", bad[1])
    return prompt


async def remix(request: Request) -> Response:
    caller = await token(request)
    gw = gateway(request)
    source = await gw.task_for(caller, request.path_params["video_id"])
    if _is_form(request):
        fields, _, fingerprint = await _read_multipart(request)
        body: Any = fields
    else:
        body = await read_json(request)
        fingerprint = request_fingerprint(body)
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, "invalid_json")
    prompt = _derive_prompt(body)
    task = await gw.derive(
        caller,
        source.id,
        "remix",
        prompt=prompt,
        param="video_id",
        idempotency_key=idempotency_key(request),
        fingerprint=fingerprint,
        model=_derive_model(body),
    )
    return task_response(request, task)


_SECONDS = re.compile(r"[0-9]{1,4}")


async def _derive_body(request: Request) -> tuple[dict[str, Any], str]:
    """The body of ``/v1/videos/extensions`` and ``/edits`` as the openai SDK sends it:
    JSON ``{"prompt", "seconds", "video": {"id"}}``, or a form with ``video[id]`` (or
    ``video`` as plain text), or a form with a ``video`` file (refused: no bundled vendor
    takes an uploaded source video). Returns ``(fields, fingerprint)`` with ``video_id``."""
    if not _is_form(request):
        body = await read_json(request)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.", None, "invalid_json")
        video = body.get("video")
        if isinstance(video, dict):
            video_id = video.get("id")
        else:
            video_id = None
        if not isinstance(video_id, str) or not video_id.strip():
            raise invalid(
                'video must be an object {"id": "<the id of one of your completed videos>"}.',
                "video",
                "missing_required_parameter",
            )
        return {**body, "video_id": video_id.strip()}, request_fingerprint(body)
    raw = await read_body(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        parts = await asyncio.to_thread(parse_multipart, content_type, raw)
    else:
        parts = parse_urlencoded(raw)
    fields: dict[str, Any] = {}
    problems: list[Problem] = []
    for part in parts:
        if part.name == "video" and part.filename is not None:
            raise invalid(
                "Uploading a source video is not supported by this gateway's vendors; send "
                'video[id] (or JSON {"video": {"id": ...}}) naming one of your completed videos.',
                "video",
                "unsupported_video_upload",
            )
        if part.filename is not None:
            continue
        if len(part.data) > _MAX_TEXT_PART:
            problems.append(Problem(part.name, "is too large for a text field", "too_large"))
            continue
        value = text(part, problems)
        if value is None:
            continue
        if part.name in ("video[id]", "video"):
            fields["video_id"] = value.strip()
        elif part.name in ("prompt", "seconds", "model"):
            fields[part.name] = value
    if problems:
        raise RequestInvalid(problems)
    if not fields.get("video_id"):
        raise invalid(
            "video[id] is required: the id of one of your completed videos.", "video", "missing_required_parameter"
        )
    fingerprint = request_fingerprint(fields)
    return fields, fingerprint


def _derive_seconds(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _SECONDS.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        raise invalid(f"seconds must be a whole number of seconds, got {str(raw)[:40]!r}.", "seconds")
    if value < 1:
        raise invalid("seconds must be at least 1.", "seconds")
    return value


def _derived(operation: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        caller = await token(request)
        gw = gateway(request)
        fields, fingerprint = await _derive_body(request)
        source = await gw.task_for(caller, fields["video_id"])
        prompt = _derive_prompt(fields)
        seconds = _derive_seconds(fields.get("seconds")) if operation == "extend" else None
        task = await gw.derive(
            caller,
            source.id,
            operation,
            prompt=prompt,
            seconds=seconds,
            param="video",
            idempotency_key=idempotency_key(request),
            fingerprint=fingerprint,
            model=_derive_model(fields),
        )
        return task_response(request, task)

    endpoint.__name__ = f"{operation}_video"
    return endpoint


extensions = _derived("extend")
edits = _derived("edit")


async def cancel(request: Request) -> Response:
    caller = await token(request)
    key = "video_id" if "video_id" in request.path_params else "task_id"
    task = await gateway(request).cancel(caller, request.path_params[key])
    return task_response(request, task)


async def collection(request: Request) -> Response:
    return await (create if request.method == "POST" else list_videos)(request)


async def item(request: Request) -> Response:
    return await (delete if request.method == "DELETE" else retrieve)(request)


# One route per path, so a 405 lists every method the path allows.
routes = [
    Route("/v1/videos", collection, methods=["GET", "POST"]),
    Route("/v1/videos/extensions", extensions, methods=["POST"]),
    Route("/v1/videos/edits", edits, methods=["POST"]),
    Route("/v1/videos/{video_id}", item, methods=["GET", "DELETE"]),
    Route("/v1/videos/{video_id}/content", content, methods=["GET", "HEAD"]),
    Route("/v1/videos/{video_id}/remix", remix, methods=["POST"]),
    Route("/v1/videos/{video_id}/events", events.stream("video_id"), methods=["GET"]),
    Route("/v1/videos/{video_id}/cancel", cancel, methods=["POST"]),
]
