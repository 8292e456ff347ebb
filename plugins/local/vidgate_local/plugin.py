"""The ``local`` vendor's verbs: renders in worker processes, tracked through job files."""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import re
import shutil
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import vidgate
from vidgate import (
    CallContext,
    CancelOutcome,
    CancelResult,
    Channel,
    MediaSource,
    Model,
    PollResult,
    Problem,
    Submission,
    TaskError,
    TaskFailed,
    VendorJob,
    VideoRequest,
)

from . import mapping
from .render import JobFiles, exit_with_parent, kill_render, render_job, write_atomic

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

# One pool per process, shared by every channel: renders are CPU-bound, so more workers
# than this would only slow each other down.
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # Forking a process that runs an event loop and threads can copy held locks;
            # forkserver/spawn start workers from a clean interpreter.
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            _pool = ProcessPoolExecutor(
                max_workers=2, mp_context=multiprocessing.get_context(method), initializer=exit_with_parent
            )
        return _pool


def _kill_workers() -> None:
    """Stop the pool without waiting for running renders.

    concurrent.futures would make interpreter exit wait for running work, holding a
    stopping gateway for as long as its longest render. A render restarts from its files,
    so the workers are killed instead."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    workers = list((pool._processes or {}).values())  # no public way before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()


def _discard_executor() -> None:
    """Forget a pool whose worker died, so the next render gets a fresh one."""
    global _pool
    with _pool_lock:
        _pool = None


def _copy_source(video: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(video, tmp)
    os.replace(tmp, target)


def _job_files(workdir: Path, job_id: Any) -> JobFiles:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise TaskFailed(f"local job {job_id!r} not found", code="not_found")
    return JobFiles(workdir / "jobs", job_id)


class Local(vidgate.VendorPlugin):
    """The ``local`` vendor: renders videos on this machine in worker processes."""

    name = "local"
    description = "Renders real H.264 MP4 videos on this machine; no account needed."
    models = [
        Model(
            "local-v1",
            description="Draws the prompt onto an animated background, or animates the reference image.",
            seconds=tuple(range(1, mapping.MAX_SECONDS + 1)),
            default_seconds=4,
            operations=frozenset({"remix", "extend", "edit"}),
        )
    ]
    poll_interval = 0.5
    deadline = 600

    def __init__(self) -> None:
        # Renders started by this process, by spec path. Only ever touched with the lock
        # held, from worker threads, because starting a process may block.
        self._running: dict[Path, Future[None]] = {}
        self._lock = threading.Lock()

    # -- requests -----------------------------------------------------------------------

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        """Refuse what the renderer cannot make (:func:`vidgate_local.mapping.problems`)."""
        return mapping.problems(request, model)

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        """Resolve every default, so the job says exactly what will be rendered."""
        return mapping.job(request, model)

    # -- vendor calls -------------------------------------------------------------------

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        """Store the job spec under the task id and start rendering it.

        The task id is the job id, so submitting the same task again finds the same job
        and never starts a second render of it.
        """
        return await self._start_job(dict(job.payload), ctx)

    async def derive(self, operation: str, source: vidgate.SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """Remix: the source's spec again with the new prompt. Extend and edit: a render
        that reads the gateway's stored copy of the source video (``source.media``)."""
        spec = dict(job.payload)
        if operation == "remix":
            if source.job is not None and source.job.payload.get("image"):
                spec["image"] = source.job.payload["image"]
        elif operation in ("extend", "edit"):
            video = source.media.get("video")
            if video is None or not await asyncio.to_thread(video.exists):
                raise vidgate.VendorRejected(f"the stored video of {source.id} is gone", param="video")
            # The gateway's file lives only for this call (object storage hands out a
            # temporary copy): the render, maybe restarted later, reads its own copy.
            files = _job_files(ctx.workdir, ctx.task_id)
            await asyncio.to_thread(_copy_source, video, files.source)
            spec["source_video"] = str(files.source)
            if source.job is not None and isinstance(fps := source.job.payload.get("fps"), int):
                spec["fps"] = fps  # the continuation plays at the source's rate
        else:
            raise vidgate.VendorRejected(f"local cannot {operation} videos", param="video")
        spec["operation"] = operation
        return await self._start_job(spec, ctx)

    async def _start_job(self, spec: dict[str, Any], ctx: CallContext) -> Submission:
        files = _job_files(ctx.workdir, ctx.task_id)
        if not await asyncio.to_thread(files.spec.exists):
            if (image := spec.get("image")) and "url" in image:
                # Fetch now, so the spec alone can restart the render after a crash.
                data, mime = await ctx.fetch_image(image["url"], param=image.get("param", "image"))
                spec["image"] = {"b64": base64.b64encode(data).decode("ascii"), "mime": mime}
            elif image and "request_image" in image:
                if ctx.request is None or not 0 <= image["request_image"] < len(ctx.request.images):
                    raise ValueError(f"the job refers to image {image['request_image']} the request does not have")
                ref = ctx.request.images[image["request_image"]]
                spec["image"] = {"b64": await asyncio.to_thread(ref.base64), "mime": image["mime"]}
            await asyncio.to_thread(_write_spec, files, spec)
        await asyncio.to_thread(self._ensure_rendering, files)
        ctx.log.info("local render submitted", job=files.id)
        return Submission(handle={"job": files.id}, vendor_task_id=files.id, poll_after=0.2)

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        """Report the job's state from its files; restart a render lost with the process
        that ran it."""
        files = _job_files(ctx.workdir, handle.get("job"))
        result, restarted = await asyncio.to_thread(self._poll_files, files)
        if restarted:
            ctx.log.warning("local render restarted", job=files.id)
        return result

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        """Stream the finished MP4, or the PNG of its last frame (``last_frame``); there is
        no vendor thumbnail (the gateway makes one)."""
        if variant == "last_frame":
            files = _job_files(ctx.workdir, handle.get("job"))
            if not await asyncio.to_thread(files.last_frame.exists):
                return None  # rendered before last frames existed
            return MediaSource.from_file(files.last_frame, "image/png")
        if variant != "video":
            return None
        files = _job_files(ctx.workdir, handle.get("job"))
        if not await asyncio.to_thread(files.video.exists):
            raise TaskFailed(f"the video of local job {files.id} is gone", code="not_found")
        return MediaSource.from_file(files.video, "video/mp4")

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """Kill the job's render process; a local render is never billed by anyone."""
        files = _job_files(ctx.workdir, handle.get("job"))
        outcome = await asyncio.to_thread(self._cancel_files, files)
        ctx.log.info("local render cancelled", job=files.id, outcome=outcome.value)
        return CancelResult(outcome, f"local job {files.id}")

    async def recover(self, job: VendorJob, ctx: CallContext) -> Submission | None:
        """A job exists exactly when its spec file does; make sure it is rendering."""
        files = _job_files(ctx.workdir, ctx.task_id)
        if not await asyncio.to_thread(files.spec.exists):
            return None
        await asyncio.to_thread(self._ensure_rendering, files)
        return Submission(handle={"job": files.id}, vendor_task_id=files.id, poll_after=0.2)

    async def shutdown(self) -> None:
        """Kill running renders; each restarts from its spec on the next poll."""
        await asyncio.to_thread(_kill_workers)
        with self._lock:
            self._running.clear()

    # -- blocking helpers (run in threads) ------------------------------------------------

    def _ensure_rendering(self, files: JobFiles) -> None:
        with self._lock:
            future = self._running.get(files.spec)
            if future is not None and not future.done():
                return
            if files.video.exists() or files.error.exists() or files.cancelled.exists():
                return
            self._start(files)

    def _start(self, files: JobFiles) -> None:
        # A progress file left by a render that died would make the new one look started.
        files.progress.unlink(missing_ok=True)
        try:
            future = _executor().submit(render_job, str(files.spec))
        except BrokenProcessPool:
            _discard_executor()
            future = _executor().submit(render_job, str(files.spec))
        self._running[files.spec] = future

    def _cancel_files(self, files: JobFiles) -> CancelOutcome:
        with self._lock:
            if files.video.exists() or files.error.exists():
                return CancelOutcome.FINISHED
            if not files.spec.exists():
                raise TaskFailed(f"local job {files.id} not found", code="not_found")
            kill_render(files)
            self._running.pop(files.spec, None)
            return CancelOutcome.CANCELLED

    def _poll_files(self, files: JobFiles) -> tuple[PollResult, bool]:
        """The job's state, and whether this call had to restart its render."""
        with self._lock:
            future = self._running.get(files.spec)
            # Looked at before the files: a render that is done has written its outcome.
            ended = future is None or future.done()
            if files.cancelled.exists():
                self._running.pop(files.spec, None)
                return PollResult(status="cancelled"), False
            if files.video.exists():
                self._running.pop(files.spec, None)
                return PollResult(status="completed", progress=100, result=_result(files), usage=_usage(files)), False
            if files.error.exists():
                self._running.pop(files.spec, None)
                return _failed(files.error.read_text(errors="replace")), False
            if not files.spec.exists():
                raise TaskFailed(f"local job {files.id} not found", code="not_found")
            if not ended:
                progress = _read_progress(files)
                if progress is None:
                    return PollResult(status="queued", progress=0), False
                return PollResult(status="in_progress", progress=progress), False
            crash = future.exception() if future is not None else None
            if crash is not None and files.progress.exists():
                # render_job never raises, so the process rendering this job died (killed,
                # out of memory). Jobs that had not started yet are restarted below; the
                # next _start replaces the broken pool.
                message = f"the render process died: {crash or type(crash).__name__}"
                write_atomic(files.error, message.encode())
                self._running.pop(files.spec, None)
                return _failed(message), False
            # Spec but no outcome and no render: the process meant to render it is gone.
            self._start(files)
            return PollResult(status="in_progress", progress=0), True


def _write_spec(files: JobFiles, spec: dict[str, Any]) -> None:
    files.dir.mkdir(parents=True, exist_ok=True)
    write_atomic(files.spec, json.dumps(spec).encode())


def _result(files: JobFiles) -> dict[str, Any]:
    """The completion: the job, and its extra artifacts (older jobs have no last frame)."""
    return {"job": files.id, "artifacts": ["last_frame"] if files.last_frame.exists() else []}


def _usage(files: JobFiles) -> dict[str, Any] | None:
    """What the render made (older jobs have no usage file: the estimate stands)."""
    try:
        made: dict[str, Any] = json.loads(files.usage.read_text())
    except (FileNotFoundError, ValueError):
        return None
    width, height = made.get("width"), made.get("height")
    if isinstance(width, int) and isinstance(height, int):
        made["resolution"] = f"{min(width, height)}p"
    return made


def _read_progress(files: JobFiles) -> int | None:
    try:
        return int(files.progress.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _failed(message: str) -> PollResult:
    return PollResult(status="failed", error=TaskError("render_failed", message.strip()[:500]))
