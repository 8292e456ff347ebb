"""The Kling vendor plugin: submit, poll (one task or a family's list), fetch, extend,
recover and callbacks over Kling's API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from vidgate import (
    CallContext,
    Channel,
    MediaSource,
    Model,
    PollResult,
    Problem,
    SourceTask,
    Submission,
    TaskError,
    VendorJob,
    VendorPlugin,
    VideoRequest,
)
from vidgate.errors import ChannelUnusable, TaskNotFound, VendorError, VendorRejected, VendorUnavailable

from . import mapping
from .auth import credential_problems
from .client import base_url, call

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
FAMILIES = mapping.FAMILIES
MODELS = mapping.MODELS

RECOVERED_POLL_AFTER = 1.0
# A callback is one task object, a few KiB; the gateway already caps callback bodies lower.
MAX_CALLBACK_BYTES = 1024 * 1024
#: The list endpoints' largest page (``pageSize`` 1..500).
LIST_PAGE_SIZE = 500
#: Pages one batch poll reads per family before leaving the rest to single polls.
MAX_LIST_PAGES = 2
#: Kling deletes generated assets (and refuses to extend them) 30 days after generation.
ASSET_LIFETIME_MS = 30 * 24 * 3600 * 1000

#: Kling task_status -> vidgate status.
STATUS = {"submitted": "queued", "processing": "in_progress", "succeed": "completed", "failed": "failed"}

#: Words in ``task_status_msg`` that mean Kling's moderation stopped the output. Kling has
#: no separate code for it in a failed task (its create-time codes are 1300/1301), so this
#: reads the message (heuristic: Kling's documented wording is "risk control").
_FILTER_WORDS = ("risk control", "content safety", "sensitive", "policy")


def _family(handle: Mapping[str, Any]) -> str:
    family = handle.get("family")
    if family not in FAMILIES:
        raise VendorUnavailable(f"Kling handle has an unknown family {family!r}")
    return str(family)


def _data(envelope: dict[str, Any]) -> dict[str, Any]:
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise VendorUnavailable("Kling reply has no data object", request_id=envelope.get("request_id"))
    return data


def _task_id(data: dict[str, Any]) -> str:
    tid = data.get("task_id")
    if isinstance(tid, bool) or not isinstance(tid, (str, int)) or str(tid) == "":
        raise VendorUnavailable("Kling reply has no task_id")
    return str(tid)


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _handle(task_id: str, family: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    handle: dict[str, Any] = {"task_id": task_id, "family": family, **extra}
    if (created := _ms(data.get("created_at"))) is not None:
        handle["created_at"] = created  # lets a batch poll stop paging early
    return handle


def _number(value: Any) -> float | None:
    # Kling sends decimals as strings ("5.1", "3.5"); accept numbers too.
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Kling(VendorPlugin):
    """Kling AI (Kuaishou) video generation over ``/v1/videos/{family}``.

    Channel credentials: ``api_key`` (sent as the bearer token) or ``access_key`` and
    ``secret_key`` (a JWT is minted from them and renewed before it expires).
    """

    name = "kling"
    models = MODELS
    poll_interval = 5.0  # Kling's guidance: poll every 5-10 s
    deadline = 40 * 60.0  # pro and 15 s renders outlive the old 20 min
    default_base_url = DEFAULT_BASE_URL
    credentials = ()  # either style: see validate_channel
    description = "Kling AI video API (text, image, multi-image, omni, extend)"
    poll_batch_size = LIST_PAGE_SIZE

    # -- configuration and mapping ---------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        return credential_problems(channel.credentials)

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        return mapping.validate(request, model, channel)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        return mapping.map_request(request, model, channel)

    # -- vendor calls ----------------------------------------------------------------

    def _url(self, ctx: CallContext, *parts: str) -> str:
        return "/".join([base_url(ctx, DEFAULT_BASE_URL), "v1", "videos", *parts])

    async def _create(self, family: str, body: dict[str, Any], extra: dict[str, Any], ctx: CallContext) -> Submission:
        # Our public id lets recover() find the task if Kling's answer is lost.
        body["external_task_id"] = ctx.task_id
        if ctx.callback_url:
            body["callback_url"] = ctx.callback_url
        envelope = await call(ctx, "POST", self._url(ctx, family), body)
        data = _data(envelope)
        task_id = _task_id(data)
        ctx.log.info("kling_submitted", kling_task_id=task_id, family=family, request_id=envelope.get("request_id"))
        return Submission(handle=_handle(task_id, family, data, **extra), vendor_task_id=task_id)

    @staticmethod
    def _extra(job: VendorJob) -> dict[str, Any]:
        return {"seconds_from_result": True} if job.payload.get("seconds_from_result") else {}

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        family = _family(job.payload)
        if family == mapping.VIDEO_EXTEND:
            raise VendorRejected("a Kling extension needs its source video", param="video")
        body = await asyncio.to_thread(mapping.resolve_images, job.payload["body"], ctx.request)
        return await self._create(family, body, self._extra(job), ctx)

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """``extend``: ``POST /v1/videos/video-extend`` with the source's Kling video id."""
        if operation != "extend" or _family(job.payload) != mapping.VIDEO_EXTEND:
            raise VendorRejected(f"Kling cannot {operation} videos", param="video")
        video_id = source.result.get("video_id")
        created = _ms(source.result.get("created_at"))
        if not isinstance(video_id, str) or not video_id:
            # A source stored before results kept Kling's video id: ask Kling again.
            envelope = await call(
                ctx, "GET", self._url(ctx, _family(source.handle), quote(str(source.handle["task_id"])))
            )
            data = _data(envelope)
            videos = (
                (data.get("task_result") or {}).get("videos") if isinstance(data.get("task_result"), dict) else None
            )
            first = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], dict) else {}
            video_id = str(first.get("id") or "")
            created = _ms(data.get("created_at"))
            if not video_id:
                raise TaskNotFound("Kling no longer lists a video for the source task")
        if created is not None and time.time() * 1000 - created > ASSET_LIFETIME_MS:
            raise TaskNotFound("Kling deletes videos 30 days after generation; this one can no longer be extended")
        total = int(source.handle.get("total_seconds") or source.seconds or 0) + mapping.EXTEND_SECONDS
        if total > mapping.EXTEND_MAX_TOTAL:
            raise VendorRejected(
                f"Kling extends a video to at most {mapping.EXTEND_MAX_TOTAL} s; this one would be {total} s",
                param="video",
            )
        body = {**job.payload["body"], "video_id": video_id}
        return await self._create(mapping.VIDEO_EXTEND, body, {"total_seconds": total}, ctx)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        family = _family(handle)
        try:
            envelope = await call(ctx, "GET", self._url(ctx, family, quote(str(handle["task_id"]), safe="")))
        except VendorRejected as exc:
            if exc.vendor_code == 1203:  # the task (not a model: this is a query) does not exist
                raise TaskNotFound(exc.message, vendor_code=1203, request_id=exc.request_id) from None
            raise
        return self._poll_result(_data(envelope), handle, envelope.get("request_id"), ctx)

    async def poll_many(self, handles: Mapping[str, dict[str, Any]], ctx: CallContext) -> Mapping[str, PollResult]:
        """Read the family list endpoints (``GET /v1/videos/{family}?pageNum=&pageSize=``,
        newest first, 500 a page): one call per family answers every task on its page.

        Kling's list takes no id filter, so the tasks are looked for on the first
        :data:`MAX_LIST_PAGES` pages; paging stops early once a page reaches back past the
        oldest wanted task (the newest-first order is what clients observe; unconfirmed in
        Kling's docs). A task not found is left out and polled on its own.
        """
        by_family: dict[str, dict[str, dict[str, Any]]] = {}
        for tid, handle in handles.items():
            by_family.setdefault(_family(handle), {})[tid] = handle
        answers: dict[str, PollResult] = {}
        failure: VendorError | None = None
        for family, wanted in by_family.items():
            try:
                answers.update(await self._list_family(family, wanted, ctx))
            except ChannelUnusable:
                raise  # the account is unusable: every task is, too
            except VendorError as exc:
                ctx.log.warning("kling_list_failed", family=family, vendor_code=exc.vendor_code, error=exc.message)
                failure = exc
        if failure is not None and not answers:
            raise failure
        return answers

    async def _list_family(
        self, family: str, wanted: Mapping[str, dict[str, Any]], ctx: CallContext
    ) -> dict[str, PollResult]:
        created = [c for h in wanted.values() if (c := _ms(h.get("created_at"))) is not None]
        oldest = min(created) if len(created) == len(wanted) else None
        remaining = set(wanted)
        answers: dict[str, PollResult] = {}
        for page in range(1, MAX_LIST_PAGES + 1):
            params = {"pageNum": str(page), "pageSize": str(LIST_PAGE_SIZE)}
            envelope = await call(ctx, "GET", self._url(ctx, family), params=params)
            items = envelope.get("data")
            if not isinstance(items, list):
                raise VendorUnavailable("Kling list reply has no data array", request_id=envelope.get("request_id"))
            page_oldest: int | None = None
            for item in items:
                if not isinstance(item, dict):
                    continue
                at = _ms(item.get("created_at"))
                if at is not None:
                    page_oldest = at if page_oldest is None else min(page_oldest, at)
                tid = str(item.get("task_id", ""))
                if tid not in remaining:
                    continue
                try:
                    answers[tid] = self._poll_result(item, wanted[tid], envelope.get("request_id"), ctx)
                except VendorUnavailable:
                    continue  # this task's entry is unusable: poll it on its own
                remaining.discard(tid)
            if not remaining or len(items) < LIST_PAGE_SIZE:
                break
            if oldest is not None and page_oldest is not None and page_oldest < oldest:
                break  # the page reaches past our oldest task: the rest are not listed
        return answers

    def _poll_result(
        self, data: dict[str, Any], handle: Mapping[str, Any], request_id: Any, ctx: CallContext
    ) -> PollResult:
        word = data.get("task_status")
        if not isinstance(word, str):
            raise VendorUnavailable("Kling task has no task_status", request_id=request_id)
        status = STATUS.get(word)
        if status is None:
            return PollResult.unknown(word)
        if status == "failed":
            reason = str(data.get("task_status_msg") or "Kling reported that the task failed.")
            ctx.log.info("kling_task_failed", reason=reason[:300], request_id=request_id)
            filtered = any(w in reason.lower() for w in _FILTER_WORDS)
            code = "content_filtered" if filtered else "vendor_failed"
            return PollResult(status="failed", error=TaskError(code, reason), vendor_status=word)
        if status == "completed":
            result = data.get("task_result")
            videos = result.get("videos") if isinstance(result, dict) else None
            video = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], dict) else {}
            url = video.get("url")
            if not isinstance(url, str) or not url:
                # "succeed" without a URL yet: treat as malformed, poll again.
                raise VendorUnavailable("Kling says succeed but gives no video URL", request_id=request_id)
            stored: dict[str, Any] = {"url": url}
            if video.get("id") is not None:
                stored["video_id"] = str(video["id"])  # extend and lip-sync take it
            duration = _number(video.get("duration"))
            if duration is not None:
                stored["duration"] = duration
            if (created := _ms(data.get("created_at"))) is not None:
                stored["created_at"] = created
            usage: dict[str, Any] = {}
            if (credits := _number(data.get("final_unit_deduction"))) is not None:
                usage["credits"] = credits
            if handle.get("seconds_from_result") and duration is not None:
                usage["seconds"] = duration  # a base-video edit is as long as its input
            return PollResult(status="completed", result=stored, vendor_status=word, usage=usage or None)
        # Kling reports no progress percentage; we do not invent one.
        return PollResult(status=status, vendor_status=word)

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        if variant != "video":
            return None  # Kling has no thumbnails; the gateway makes its own
        # Kling's CDN URL needs no auth: a plain GET.
        return await ctx.download(result["url"])

    async def recover(self, job: VendorJob, ctx: CallContext) -> Submission | None:
        """Look the task up by ``external_task_id`` (= our task id) in its family."""
        family = _family(job.payload)
        try:
            envelope = await call(ctx, "GET", self._url(ctx, family, quote(ctx.task_id, safe="")))
        except VendorError as exc:
            code, http = exc.vendor_code, exc.http_status
            if code == 1203 or (code == 1201 and http in (400, 404)):
                return None  # Kling never got it: the gateway submits again
            raise VendorUnavailable(
                f"Kling lookup by external_task_id failed: {exc.message}", vendor_code=code, request_id=exc.request_id
            ) from None
        data = _data(envelope)
        task_id = _task_id(data)
        ctx.log.info("kling_recovered", kling_task_id=task_id, family=family)
        # The task has been running at least a lease already: look at it soon.
        return Submission(
            handle=_handle(task_id, family, data, **self._extra(job)),
            vendor_task_id=task_id,
            poll_after=RECOVERED_POLL_AFTER,
        )

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel | None = None) -> str | None:
        """Kling POSTs the bare task object; accept an enveloped one too."""
        if len(body) > MAX_CALLBACK_BYTES:
            return None
        try:
            # A task object is a few levels deep; the C decoder raises RecursionError on
            # pathological nesting ([[[[...]]]]), which is as unparseable as bad syntax.
            obj = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if isinstance(obj, dict) and "task_id" not in obj and isinstance(obj.get("data"), dict):
            obj = obj["data"]
        if not isinstance(obj, dict):
            return None
        tid = obj.get("task_id")
        if isinstance(tid, bool) or not isinstance(tid, (str, int)) or str(tid) == "":
            return None
        return str(tid)
