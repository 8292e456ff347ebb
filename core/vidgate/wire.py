"""The one cattrs converter for everything vidgate serialises: stored requests and jobs,
and the public task object."""

from __future__ import annotations

import base64
from typing import Any

import attrs
import cattrs

from .request import Size, VideoRequest
from .store.records import TaskRecord
from .vendor import TaskError, VendorJob

converter = cattrs.Converter()
converter.register_unstructure_hook(bytes, lambda b: base64.b64encode(b).decode("ascii"))
converter.register_structure_hook(bytes, lambda v, _: base64.b64decode(v))
converter.register_unstructure_hook(Size, lambda s: s.text)
converter.register_structure_hook(Size, lambda v, _: Size.parse(v))


def request_to_json(request: VideoRequest) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(request)
    return data


def request_from_json(data: dict[str, Any]) -> VideoRequest:
    return converter.structure(data, VideoRequest)


def job_to_json(job: VendorJob) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(job)
    return data


def job_from_json(data: dict[str, Any]) -> VendorJob:
    return converter.structure(data, VendorJob)


#: A failed video's ``error``: the same record a plugin reports the failure with.
VideoError = TaskError


@attrs.frozen
class DerivedFrom:
    video_id: str
    operation: str


@attrs.frozen
class VideoObject:
    """The public task: a superset of OpenAI's Video object (all 13 of its fields)."""

    id: str
    task_id: str
    object: str
    model: str
    status: str
    progress: int
    created_at: int
    completed_at: int | None
    expires_at: int | None
    prompt: str | None
    seconds: str | None
    size: str | None
    error: VideoError | None
    remixed_from_video_id: str | None
    derived_from: DerivedFrom | None
    url: str | None
    usage: dict[str, Any] | None


def public_usage(task: TaskRecord) -> dict[str, Any] | None:
    """The billed usage facts and ``cost`` (price units) once the task is billed, else None."""
    if task.cost is None:
        return None
    return {**(task.usage or {}), "cost": task.cost / 1_000_000}


def video_object(task: TaskRecord, content_url: str | None) -> dict[str, Any]:
    """Render a task for clients. Vendor ids, URLs and keys are never part of it."""
    error = None
    if task.status == "failed":
        error = VideoError(task.error_code or "failed", task.error_message or "The task failed.")
    progress = 100 if task.status == "completed" else min(max(task.progress, 0), 99)
    obj = VideoObject(
        id=task.id,
        task_id=task.id,
        object="video",
        model=task.model,
        status=task.status,
        progress=progress,
        created_at=int(task.created_at),
        completed_at=int(task.completed_at) if task.completed_at else None,
        expires_at=int(task.expires_at) if task.expires_at else None,
        prompt=task.prompt,
        seconds=str(task.seconds) if task.seconds is not None else None,
        size=task.size,
        error=error,
        remixed_from_video_id=task.remixed_from,
        derived_from=DerivedFrom(task.derived_from, task.operation or "remix") if task.derived_from else None,
        url=content_url if task.status == "completed" else None,
        usage=public_usage(task),
    )
    data: dict[str, Any] = converter.unstructure(obj)
    return data
