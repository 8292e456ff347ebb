"""The one cattrs converter for everything vidgate serialises: stored requests and jobs,
and the public task object."""

from __future__ import annotations

import base64
from typing import Any, Literal

import attrs
import cattrs

from . import schema
from .lifecycle import TaskStatus
from .request import Size, VideoRequest
from .schema import doc, ref
from .store.records import TaskRecord
from .vendor import DERIVE_OPERATIONS, TaskError, VendorJob

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


#: A failed video's ``error``: the same record a plugin reports the failure with
#: (published as ``VideoError`` in the OpenAPI document).
VideoError = TaskError


@attrs.frozen
class DerivedFrom:
    """For a remix, extension or edit: the source task and the operation."""

    video_id: str
    operation: str = attrs.field(metadata={"schema": {"enum": list(DERIVE_OPERATIONS)}})


@attrs.frozen
class VideoObject:
    """A task. A superset of OpenAI's Video object: its 13 fields plus ``task_id`` (same as
    ``id``), ``derived_from``, ``url`` (where to download the finished video) and ``usage``.
    Vendor ids and URLs never appear."""

    __schema_name__ = "Video"

    id: str = attrs.field(metadata=doc("The task's id.", examples=["video_3f2a…"]))
    task_id: str = attrs.field(metadata=doc("Same as `id`."))
    object: Literal["video"]
    model: str
    status: TaskStatus = attrs.field(metadata=doc("`cancelled` is terminal, like `completed` and `failed`."))
    progress: int = attrs.field(metadata=doc("Approximate percent; 100 only when completed.", minimum=0, maximum=100))
    created_at: int = attrs.field(metadata=doc("Unix seconds."))
    completed_at: int | None = attrs.field(metadata=doc("Unix seconds; set when finished."))
    expires_at: int | None = attrs.field(metadata=doc("Unix seconds after which the stored media may be deleted."))
    prompt: str | None
    seconds: str | None = attrs.field(metadata=doc("Clip length the vendor makes, as a string."))
    size: str | None = attrs.field(metadata=doc("`WxH` or `W:H` the vendor makes."))
    error: VideoError | None
    remixed_from_video_id: str | None
    derived_from: DerivedFrom | None
    url: str | None = attrs.field(
        metadata=doc("`/v1/videos/{id}/content` on this gateway, once completed.", format="uri")
    )
    # The usage facts are an open vocabulary (vidgate.billing.FACTS): the hand-written
    # ``Usage`` schema lists them.
    usage: dict[str, Any] | None = attrs.field(metadata={"schema": {"anyOf": [ref("Usage"), {"type": "null"}]}})


@attrs.frozen
class VideoList:
    """A page of the key's tasks, newest first by default."""

    object: Literal["list"]
    data: list[VideoObject]
    first_id: str | None
    last_id: str | None = attrs.field(metadata=doc("Pass as `after` for the next page."))
    has_more: bool


@attrs.frozen
class VideoDeleted:
    """The answer to a delete."""

    id: str
    object: Literal["video.deleted"]
    deleted: Literal[True]


@attrs.frozen
class ModelCapabilities:
    """What the model can do for this key (true when a vendor serving it can)."""

    text_to_video: bool
    image_to_video: bool
    remix: bool
    extend: bool
    edit: bool


@attrs.frozen
class ModelInfo:
    """A model this key may use."""

    __schema_name__ = "Model"

    id: str
    object: Literal["model"]
    created: int
    owned_by: str = attrs.field(metadata=doc("The vendor serving the model."))
    capabilities: ModelCapabilities
    seconds: list[int] = attrs.field(metadata=doc("Accepted durations; empty means any."))
    default_seconds: int | None
    description: str


@attrs.frozen
class ModelList:
    """The models this key may use."""

    object: Literal["list"]
    data: list[ModelInfo]


@attrs.frozen
class ErrorDetail:
    """What went wrong."""

    message: str
    type: str = attrs.field(
        metadata=doc(
            "The kind of error.",
            examples=[
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "rate_limit_error",
                "insufficient_quota",
                "server_error",
            ],
        )
    )
    param: str | None = attrs.field(metadata=doc("The offending field, e.g. `size` or `metadata.fps`."))
    code: str | None


@attrs.frozen
class ErrorBody:
    """The one error shape (OpenAI's), parsed by the openai SDKs."""

    __schema_name__ = "Error"

    error: ErrorDetail


#: The response records whose schemas ``/openapi.json`` publishes, read off these classes.
RESPONSE_RECORDS: tuple[type, ...] = (VideoObject, VideoList, VideoDeleted, ModelList, ErrorBody)
# The plugin-facing record a failed video's ``error`` is, under its name on the wire.
schema.NAMES[TaskError] = "VideoError"


def to_json(record: Any) -> Any:
    """A wire record as JSON-ready data (the one converter)."""
    return converter.unstructure(record)


def public_usage(task: TaskRecord) -> dict[str, Any] | None:
    """The billed usage facts and ``cost`` (price units) once the task is billed, else None."""
    if task.cost is None:
        return None
    return {**(task.usage or {}), "cost": task.cost / 1_000_000}


def video_record(task: TaskRecord, content_url: str | None) -> VideoObject:
    """The public record of a task. Vendor ids, URLs and keys are never part of it."""
    error = None
    if task.status == "failed":
        error = VideoError(task.error_code or "failed", task.error_message or "The task failed.")
    progress = 100 if task.status == "completed" else min(max(task.progress, 0), 99)
    return VideoObject(
        id=task.id,
        task_id=task.id,
        object="video",
        model=task.model,
        status=TaskStatus(task.status),
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


def video_object(task: TaskRecord, content_url: str | None) -> dict[str, Any]:
    """Render a task for clients (:func:`video_record` as JSON)."""
    data: dict[str, Any] = converter.unstructure(video_record(task, content_url))
    return data
