"""The OpenAI Videos surface: ``/v1/videos`` create, retrieve, list, delete, content, remix,
cancel.

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
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    FileResponse, JSONResponse, MalformedRangeHeader, RangeNotSatisfiable, RedirectResponse, Response,
)
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import APIError, Problem, RequestInvalid, invalid, not_found
from ..gateway import request_fingerprint
from ..media import SERVABLE_TYPES, VARIANTS, MediaReader, MediaStorage
from ..request import MAX_IMAGE_BYTES, Image, VideoRequest, image_from_bytes, prompt_problem
from ..wire import request_from_json
from .errors import error_response
from .forms import parse_multipart, parse_urlencoded, text
from . import events
from .common import (
    created_response,
    webhook_url,
    unified_request,
    MAX_JSON_DEPTH,
    _depth,
    loads_strict,
    gateway,
    idempotency_key,
    read_body,
    read_json,
    task_json,
    task_response,
    token,
)

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
            file_digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
            digest.update(name.encode() + b"\0" + file_digest)
            if name not in _UPLOAD_FIELDS:
                continue  # unknown file parts are ignored, like unknown JSON fields
            img = image_from_bytes(
                data, "input_reference" if name == "input_reference" else "image", problems,
                declared_type=part.content_type, filename=part.filename,
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
            problems.append(Problem("input_reference.file_id", "file ids are not supported; send image_url or upload the file"))
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
    data = [task_json(request, t) for t in tasks]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "first_id": tasks[0].id if tasks else None,
            "last_id": tasks[-1].id if tasks else None,
            "has_more": has_more,
        }
    )


async def delete(request: Request) -> Response:
    caller = await token(request)
    task = await gateway(request).delete(caller, request.path_params["video_id"])
    return JSONResponse({"id": task.id, "object": "video.deleted", "deleted": True})


async def content(request: Request) -> Response:
    caller = await token(request)
    gw = gateway(request)
    task = await gw.task_for(caller, request.path_params["video_id"])
    variant = request.query_params.get("variant", "video")
    if variant not in VARIANTS:
        # OpenAI also had "spritesheet"; no vendor behind vidgate makes one.
        raise invalid(f"variant must be one of {', '.join(VARIANTS)}; got {variant[:40]!r}.", "variant", "unsupported_variant")
    if task.status != "completed":
        # 409 for every unfinished state, failed included: the video is in the wrong
        # state for this call. x-should-retry: false, so the SDK does not hammer it.
        code = {"failed": "video_failed", "cancelled": "video_cancelled"}.get(task.status, "video_not_ready")
        raise APIError(
            f"Video '{task.id}' is {task.status}; its content is available once it is completed.",
            409, "invalid_request_error", None, code, retryable=False,
        )
    if task.media is None and task.expires_at is not None and task.expires_at < time.time():
        raise APIError(
            f"Video '{task.id}' expired at {int(task.expires_at)}; its stored media was deleted.",
            410, "invalid_request_error", None, "video_expired", retryable=False,
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
    filename = f"{task.id}.{'mp4' if variant == 'video' else 'webp'}"
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
    stat_result = os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, stored.size, stored.mtime, stored.mtime, stored.mtime))
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
                error = APIError(
                    f"The Range is outside the file ({size} bytes).", 416, "invalid_request_error", "Range",
                    "range_not_satisfiable", retryable=False, headers={"Content-Range": f"bytes */{size}"},
                )
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

    async def _handle_single_range(self, send: Send, start: int, end: int, file_size: int, send_header_only: bool) -> None:
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
    # One key, one request: a remix of another video is another request.
    fingerprint = request_fingerprint({"remix_of": source.id, "body": fingerprint})
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt is required.", "prompt", "missing_required_parameter")
    if (bad := prompt_problem(prompt)) is not None:
        raise invalid(f"prompt {bad[0]}.", "prompt", bad[1])
    if caller.models is not None and source.model not in caller.models:
        # The source's channel is reused as is, so apply the key's model list here.
        raise APIError(
            f"This API key may not use the model '{source.model}'.", 403, "permission_error", "model",
            "model_not_allowed", retryable=False,
        )
    gw.check_remix(source)
    stored = await gw.store.task_request(source.id)
    assert stored is not None
    base = await asyncio.to_thread(request_from_json, stored)  # inline images are decoded here
    unified = VideoRequest(
        model=source.model, prompt=prompt, seconds=source.seconds, size=base.size, metadata=base.metadata,
        remix_of=source.id,
    )
    task = await gw.submit(
        caller, unified, idempotency_key=idempotency_key(request), fingerprint=fingerprint, remix_source=source
    )
    return task_response(request, task)


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
    Route("/v1/videos/{video_id}", item, methods=["GET", "DELETE"]),
    Route("/v1/videos/{video_id}/content", content, methods=["GET", "HEAD"]),
    Route("/v1/videos/{video_id}/remix", remix, methods=["POST"]),
    Route("/v1/videos/{video_id}/events", events.stream("video_id"), methods=["GET"]),
    Route("/v1/videos/{video_id}/cancel", cancel, methods=["POST"]),
]
