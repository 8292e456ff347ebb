"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

Written by hand (as small dicts) rather than generated, because the endpoints parse
their bodies themselves: the document states what the handlers really accept and
answer, and ``tests/test_videos_api.py`` checks it against them. Keep the two in step:
a new endpoint, field or status code belongs here too.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..media import VARIANTS
from ..request import MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SECONDS, SECONDS_DIGITS
from ..schema import schemas
from ..wire import RESPONSE_RECORDS
from .videos import MAX_LIST_LIMIT

JSON = "application/json"
MULTIPART = "multipart/form-data"
FORM = "application/x-www-form-urlencoded"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.1 / JSON Schema 2020-12 style)."""
    return {"anyOf": [schema, {"type": "null"}]}


# -- schemas -----------------------------------------------------------------------------

_SECONDS = {
    "description": 'Clip length in seconds: an integer or a string of digits (OpenAI sends "4").',
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS},
        {"type": "string", "pattern": rf"^\s*{SECONDS_DIGITS}\s*$"},
    ],
}

_SIZE = {
    "type": "string",
    "description": "Pixels `WxH` (e.g. `1280x720`) or an aspect ratio `W:H` (e.g. `16:9`); each side at most 8192 px.",
    "pattern": r"^\s*([0-9]{1,5}\s*[xX×*]\s*[0-9]{1,5}|[0-9]{1,3}\s*:\s*[0-9]{1,3})\s*$",
    "examples": ["1280x720", "16:9"],
}

_IMAGE_STRING = {
    "type": "string",
    "minLength": 1,
    "description": "An http(s) URL, a base64 `data:` URL, or raw base64 of a PNG, JPEG, WebP or GIF "
    "image (at most 20 MiB decoded).",
}

_IMAGE_OBJECT = {
    "type": "object",
    "description": "OpenAI's object form of `input_reference`. `file_id` is not supported (400).",
    "properties": {
        "image_url": _IMAGE_STRING,
        "file_id": {"type": "string", "description": "Not supported by vidgate; refused with 400."},
    },
}

_METADATA = {
    "type": "object",
    "description": "Vendor-specific options, validated by the vendor plugin (see each plugin's docs). "
    "They can never change the billed model.",
    "additionalProperties": True,
}

_WEBHOOK_URL = {
    "type": "string",
    "maxLength": 2048,
    "format": "uri",
    "description": "An http(s) URL that receives this task's signed webhook events (Standard Webhooks: "
    "`video.in_progress`, `video.completed`, `video.failed`, `video.cancelled`). It must be a public "
    "address; anything else is a 400 naming `webhook_url`. Default: the token's webhook URL.",
}

#: Request bodies (parsed by hand, so stated here) and the few objects no record types;
#: the response records' schemas are derived from :mod:`vidgate.wire` (below).
SCHEMAS: dict[str, Any] = {
    "VideoGenerationRequest": {
        "type": "object",
        "description": "The unified request. `seconds`/`duration` are synonyms; `image`, `images` and "
        "`input_reference` all mean visual reference (first = first frame, second = last frame). "
        "Unknown fields are ignored.",
        "required": ["model"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": "A model from `GET /v1/models`."},
            "prompt": {
                "type": ["string", "null"],
                "maxLength": MAX_PROMPT_CHARS,
                "description": "Required (non-blank) unless an image is given.",
            },
            "seconds": nullable(_SECONDS),
            "duration": nullable(_SECONDS),
            "size": nullable(_SIZE),
            "image": nullable({"anyOf": [_IMAGE_STRING, _IMAGE_OBJECT]}),
            "images": nullable(
                {
                    "anyOf": [
                        _IMAGE_STRING,
                        {"type": "array", "maxItems": MAX_IMAGES, "items": {"anyOf": [_IMAGE_STRING, _IMAGE_OBJECT]}},
                    ]
                }
            ),
            "input_reference": nullable({"anyOf": [_IMAGE_STRING, _IMAGE_OBJECT]}),
            "metadata": nullable(_METADATA),
            "webhook_url": nullable(_WEBHOOK_URL),
        },
    },
    "VideoCreateMultipart": {
        "type": "object",
        "description": "What current openai SDKs send to `POST /v1/videos`: text fields, plus an optional "
        "image file part. Numbers arrive as text.",
        "required": ["model"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "prompt": {"type": "string", "maxLength": MAX_PROMPT_CHARS},
            "webhook_url": _WEBHOOK_URL,
            "seconds": {"type": "string", "pattern": r"^\s*[0-9]{1,3}\s*$"},
            "duration": {"type": "string", "pattern": r"^\s*[0-9]{1,3}\s*$"},
            "size": _SIZE,
            "input_reference": {
                "description": "An image file part (PNG, JPEG, WebP or GIF, at most 20 MiB), or a text part "
                "holding a URL / data URL / base64.",
                "type": "string",
                "contentMediaType": "application/octet-stream",
            },
            "input_reference[image_url]": {**_IMAGE_STRING, "description": "The object form, flattened."},
            "image": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "An image file part or a text URL / data URL / base64.",
            },
            "images[]": {
                "type": "array",
                "maxItems": MAX_IMAGES,
                "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                "description": "Further references (files or text), in order.",
            },
            "metadata": {
                "type": "string",
                "contentMediaType": JSON,
                "description": "The `metadata` object, as a JSON string.",
            },
        },
        "patternProperties": {
            r"^metadata(\[[^\[\]]*\])+$": {
                "type": "string",
                "description": "One metadata key, flattened the way form encoders (and the openai SDK's "
                "`extra_body`) do: `metadata[fps]=12`. A value that parses as JSON takes that type.",
            }
        },
    },
    "RemixRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_PROMPT_CHARS,
                "description": "Must not be blank.",
            },
            "model": {
                "type": "string",
                "description": "The model the new task runs on and is billed for (default: the source's); one the "
                "source's channel serves that can make this kind of task, else a 400 naming `model`.",
            },
        },
    },
    "DeriveVideoRef": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string", "description": "One of your completed videos."}},
    },
    "ExtendRequest": {
        "type": "object",
        "description": "As the openai SDK sends it. In multipart/urlencoded forms the source is the text field "
        "`video[id]`; a `video` file upload is a 400 naming `video` (no bundled vendor takes uploaded videos).",
        "required": ["prompt", "video"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
            "seconds": {
                "type": ["string", "integer"],
                "pattern": "^[0-9]{1,4}$",
                "description": "Length of the new segment. Left out: the source's length, or the vendor's own "
                "where its extensions have a fixed length (Kling adds 5 s).",
            },
            "video": ref("DeriveVideoRef"),
            "video[id]": {"type": "string", "description": "The form spelling of `video.id`."},
            "model": {
                "type": "string",
                "description": "The model the new task runs on and is billed for (default: the source's); one the "
                "source's channel serves that can make this kind of task, else a 400 naming `model`.",
            },
        },
    },
    "EditRequest": {
        "type": "object",
        "description": "As the openai SDK sends it (see ExtendRequest for the form spellings).",
        "required": ["prompt", "video"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
            "video": ref("DeriveVideoRef"),
            "video[id]": {"type": "string", "description": "The form spelling of `video.id`."},
            "model": {
                "type": "string",
                "description": "The model the new task runs on and is billed for (default: the source's); one the "
                "source's channel serves that can make this kind of task, else a 400 naming `model`.",
            },
        },
    },
    "Usage": {
        "type": "object",
        "description": "What the task was billed for, once it is finished and billed (null before): the usage "
        "facts the price was computed from (those the vendor reported, else the estimate) and `cost`, in the "
        "gateway's price units. A task refunded in full has only `cost: 0`.",
        "required": ["cost"],
        "properties": {
            "cost": {"type": "number", "minimum": 0},
            "seconds": {"type": "number"},
            "width": {"type": "number"},
            "height": {"type": "number"},
            "resolution": {"type": "string"},
            "size": {"type": "string"},
            "fps": {"type": "number"},
            "frames": {"type": "number"},
            "count": {"type": "number"},
            "tokens": {"type": "number"},
            "video_tokens": {"type": "number"},
            "audio_tokens": {"type": "number"},
            "credits": {"type": "number"},
        },
        "additionalProperties": {"type": ["number", "string"]},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "store": {"type": "string"},
        },
    },
    "PluginInfo": {
        "type": "object",
        "required": ["name", "distribution", "version", "vendors", "models", "status", "error"],
        "properties": {
            "name": {"type": "string"},
            "distribution": {"type": ["string", "null"]},
            "version": {"type": ["string", "null"]},
            "vendors": {"type": "array", "items": {"type": "string"}},
            "models": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string"},
            "error": {"type": ["string", "null"]},
        },
    },
}

SCHEMAS.update(schemas(*RESPONSE_RECORDS))

# -- responses ---------------------------------------------------------------------------

_SHOULD_RETRY = {
    "description": "`false` when a retry cannot fix the error (the openai SDK then does not retry), "
    "`true` when it may.",
    "schema": {"type": "string", "enum": ["true", "false"]},
}
_REQUEST_ID = {"description": "This request's id, also in the gateway's logs.", "schema": {"type": "string"}}

_ERRORS = {
    "400": "The request is invalid; `error.param` names the field.",
    "401": "Missing, malformed, unknown, revoked or expired API key.",
    "403": "The key may not use this model (or its group has no channel for it).",
    "404": "No such task for this key (another key's task is also 404).",
    "409": "The task is in the wrong state for this call, or an Idempotency-Key was reused with another body.",
    "410": "The video expired (`expires_at` passed) and its stored media was deleted.",
    "408": "The request body did not arrive within `[server] body_read_timeout_seconds`.",
    "413": "The request body is larger than the configured limit.",
    "429": "Every channel is rate-limited (`rate_limit_exceeded`, with Retry-After) or the key's "
    "quota is exhausted (`insufficient_quota`).",
    "500": "An internal error; the request id is in `x-request-id`.",
    "503": "No channel could take the task right now; nothing was charged.",
}


def _error_response(status: str) -> dict[str, Any]:
    headers: dict[str, Any] = {"x-should-retry": _SHOULD_RETRY, "x-request-id": _REQUEST_ID}
    if status == "429":
        headers["Retry-After"] = {"description": "Seconds to wait (rate limits only).", "schema": {"type": "string"}}
    return {
        "description": _ERRORS[status],
        "headers": headers,
        "content": {JSON: {"schema": ref("Error")}},
    }


RESPONSES = {f"Error{s}": _error_response(s) for s in _ERRORS}


def errors(*statuses: int) -> dict[str, Any]:
    # 401 and 500 can come from any authenticated endpoint.
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in sorted({*statuses, 401, 500})}


def ok(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": ref(schema)}}}
    response["headers"] = {"x-request-id": _REQUEST_ID, **(headers or {})}
    return response


_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeating a create with the same key (and body) returns the same task and charges "
    "once; the same key with another body is a 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "`wait` or `wait=N` (N at most 60; `wait` is 60): hold the answer until the task is "
    "finished or N seconds passed, then answer the task as it is. Other preferences are ignored.",
    "schema": {"type": "string", "examples": ["wait", "wait=30"]},
}
_PREFERENCE_APPLIED = {
    "Preference-Applied": {
        "description": "`wait=N` when the request asked for `Prefer: wait`.",
        "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
    }
}
_POLL_AFTER = {
    "openai-poll-after-ms": {
        "description": "While the task is unfinished: milliseconds to wait before polling again, from the "
        "task's vendor (the openai SDK's poll helpers honour it).",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_CREATE_ERRORS = errors(400, 403, 408, 409, 413, 429, 503)


def _links(id_pointer: str = "$response.body#/id") -> dict[str, Any]:
    """OpenAPI links from a response holding a task to the calls on that task."""
    ops = {
        "GetVideo": "getVideo",
        "DeleteVideo": "deleteVideo",
        "GetVideoContent": "getVideoContent",
        "RemixVideo": "remixVideo",
        "CancelVideo": "cancelVideo",
    }
    return {name: {"operationId": op, "parameters": {"video_id": id_pointer}} for name, op in ops.items()}


def _created(description: str) -> dict[str, Any]:
    return {**ok("Video", description, _PREFERENCE_APPLIED), "links": _links()}


def _events(name: str, operation: str, tag: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "tags": [tag],
            "summary": "Server-Sent Events of the task until it is finished.",
            "description": "`text/event-stream`. The current state first, then one event per status or "
            "progress change; `event:` is `video.queued`, `video.in_progress`, `video.progress` (progress "
            "only), `video.completed`, `video.failed` or `video.cancelled`; `data:` the task object; `id:` a "
            "growing number, so reconnecting with `Last-Event-ID` resumes without repeats. A `: ping` "
            "comment every 15 s; the stream closes after the terminal event.",
            "parameters": [
                _path_id(name),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The `id` of the last event received.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "headers": {"x-request-id": _REQUEST_ID},
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **errors(404),
            },
        }
    }


_CANCEL_200 = (
    "The task, `cancelled`; or, while its submit is still in flight, as it is (the cancel takes effect as "
    "soon as the vendor has answered the submit)."
)

PATHS: dict[str, Any] = {
    "/v1/video/generations": {
        "post": {
            "operationId": "createGeneration",
            "tags": ["unified"],
            "summary": "Create a video task (the unified request).",
            "parameters": [_IDEMPOTENCY, _PREFER],
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("VideoGenerationRequest")}}},
            "responses": {"200": _created("The new task, usually `queued`."), **_CREATE_ERRORS},
        }
    },
    "/v1/video/generations/{task_id}": {
        "get": {
            "operationId": "getGeneration",
            "tags": ["unified"],
            "summary": "Get a task.",
            "parameters": [_path_id("task_id")],
            "responses": {"200": ok("Video", "The task.", _POLL_AFTER), **errors(404)},
        }
    },
    "/v1/video/generations/{task_id}/cancel": {
        "post": {
            "operationId": "cancelGeneration",
            "tags": ["unified"],
            "summary": "Cancel a task (same as `POST /v1/videos/{video_id}/cancel`).",
            "parameters": [_path_id("task_id")],
            "responses": {"200": ok("Video", _CANCEL_200), **errors(404, 409)},
        }
    },
    "/v1/videos": {
        "post": {
            "operationId": "createVideo",
            "tags": ["openai"],
            "summary": "Create a video task (OpenAI Videos API); multipart, JSON or urlencoded. A body with "
            "any other content type is read as JSON.",
            "parameters": [_IDEMPOTENCY, _PREFER],
            "requestBody": {
                "required": True,
                "content": {
                    MULTIPART: {"schema": ref("VideoCreateMultipart")},
                    JSON: {"schema": ref("VideoGenerationRequest")},
                    FORM: {"schema": ref("VideoCreateMultipart")},
                },
            },
            "responses": {"200": _created("The new task, usually `queued`."), **_CREATE_ERRORS},
        },
        "get": {
            "operationId": "listVideos",
            "tags": ["openai"],
            "summary": "List this key's tasks, newest first by default (cursor pagination).",
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "The `last_id` of the previous page (one of this key's task ids).",
                    "schema": {"type": "string"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": 20},
                },
                {
                    "name": "order",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
                },
            ],
            "responses": {"200": ok("VideoList", "One page of tasks."), **errors(400)},
        },
    },
    "/v1/videos/{video_id}/events": _events("video_id", "streamVideoEvents", "openai"),
    "/v1/video/generations/{task_id}/events": _events("task_id", "streamGenerationEvents", "unified"),
    "/v1/videos/{video_id}": {
        "get": {
            "operationId": "getVideo",
            "tags": ["openai"],
            "summary": "Get a task.",
            "parameters": [_path_id("video_id")],
            "responses": {"200": ok("Video", "The task.", _POLL_AFTER), **errors(404)},
        },
        "delete": {
            "operationId": "deleteVideo",
            "tags": ["openai"],
            "summary": "Delete a finished task and its stored media.",
            "parameters": [_path_id("video_id")],
            "responses": {"200": ok("VideoDeleted", "Deleted."), **errors(404, 409)},
        },
    },
    "/v1/videos/{video_id}/content": {
        "get": {
            "operationId": "getVideoContent",
            "tags": ["openai"],
            "summary": "Download a completed task's video (MP4) or another artifact: thumbnail (WebP), "
            "spritesheet, last_frame (images), audio, where the vendor made them (else 404). Supports Range.",
            "parameters": [
                _path_id("video_id"),
                {
                    "name": "variant",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(VARIANTS), "default": "video"},
                },
                {
                    "name": "Range",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "A byte range, e.g. `bytes=0-1023`.",
                },
            ],
            "responses": {
                "200": {
                    "description": "The bytes.",
                    "headers": {"x-request-id": _REQUEST_ID, "Accept-Ranges": {"schema": {"type": "string"}}},
                    # video/mp4 and image/webp as a rule; a vendor's own thumbnail may be
                    # another image type.
                    "content": {
                        "video/*": {"schema": {"type": "string", "contentMediaType": "video/mp4"}},
                        "image/*": {"schema": {"type": "string", "contentMediaType": "image/webp"}},
                        "audio/*": {"schema": {"type": "string"}},
                        "application/octet-stream": {"schema": {"type": "string"}},
                    },
                },
                "206": {
                    "description": "The requested byte range.",
                    "headers": {"x-request-id": _REQUEST_ID, "Content-Range": {"schema": {"type": "string"}}},
                    "content": {
                        "video/*": {"schema": {"type": "string"}},
                        "image/*": {"schema": {"type": "string"}},
                        "audio/*": {"schema": {"type": "string"}},
                        "application/octet-stream": {"schema": {"type": "string"}},
                        "multipart/byteranges": {"schema": {"type": "string"}},
                    },
                },
                "416": {
                    "description": "The Range starts beyond the end of the file (a Range that does not parse is "
                    "ignored and the whole file sent).",
                    "headers": {
                        "x-should-retry": _SHOULD_RETRY,
                        "x-request-id": _REQUEST_ID,
                        "Content-Range": {"schema": {"type": "string"}},
                    },
                    "content": {JSON: {"schema": ref("Error")}},
                },
                **errors(400, 404, 409, 410),
            },
        }
    },
    "/v1/videos/{video_id}/remix": {
        "post": {
            "operationId": "remixVideo",
            "tags": ["openai"],
            "summary": "Make a new task from a completed one with a new prompt (vendors that support it).",
            "parameters": [_path_id("video_id"), _IDEMPOTENCY],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": ref("RemixRequest")},
                    MULTIPART: {"schema": ref("RemixRequest")},
                    FORM: {"schema": ref("RemixRequest")},
                },
            },
            "responses": {
                "200": _created("The new task; `remixed_from_video_id` names the source."),
                **errors(400, 403, 404, 408, 409, 413, 429, 503),
            },
        }
    },
    "/v1/videos/extensions": {
        "post": {
            "operationId": "extendVideo",
            "tags": ["openai"],
            "summary": (
                "Continue one of your completed videos (models whose vendor extends). 404 for an unknown"
                " source, 409 for an unfinished one, 400 naming `video` for a model that cannot."
            ),
            "parameters": [_IDEMPOTENCY],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": ref("ExtendRequest")},
                    MULTIPART: {"schema": ref("ExtendRequest")},
                    FORM: {"schema": ref("ExtendRequest")},
                },
            },
            "responses": {
                "200": _created("The new task; `derived_from` names the source."),
                **errors(400, 403, 404, 408, 409, 413, 429, 503),
            },
        }
    },
    "/v1/videos/edits": {
        "post": {
            "operationId": "editVideo",
            "tags": ["openai"],
            "summary": (
                "Edit one of your completed videos as the prompt says (models whose vendor edits);"
                " errors as for extensions."
            ),
            "parameters": [_IDEMPOTENCY],
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {"schema": ref("EditRequest")},
                    MULTIPART: {"schema": ref("EditRequest")},
                    FORM: {"schema": ref("EditRequest")},
                },
            },
            "responses": {
                "200": _created("The new task; `derived_from` names the source."),
                **errors(400, 403, 404, 408, 409, 413, 429, 503),
            },
        }
    },
    "/v1/videos/{video_id}/cancel": {
        "post": {
            "operationId": "cancelVideo",
            "tags": ["openai"],
            "summary": "Cancel an unfinished task. Idempotent: a cancelled task is answered again; a completed or "
            "failed one is a 409 (`video_finished`).",
            "parameters": [_path_id("video_id")],
            "responses": {"200": ok("Video", _CANCEL_200), **errors(404, 409)},
        }
    },
    "/v1/models": {
        "get": {
            "operationId": "listModels",
            "tags": ["misc"],
            "summary": "The models this key may use.",
            "responses": {"200": ok("ModelList", "The models."), **errors()},
        }
    },
    "/-/plugins": {
        "get": {
            "operationId": "listPlugins",
            "tags": ["misc"],
            "summary": "The vendor plugins this gateway loaded, with their status.",
            "responses": {
                "200": {
                    "description": "The plugins.",
                    "headers": {"x-request-id": _REQUEST_ID},
                    "content": {JSON: {"schema": {"type": "array", "items": ref("PluginInfo")}}},
                },
                **errors(),
            },
        }
    },
    "/v1/callbacks/{channel}": {
        "post": {
            "operationId": "vendorCallback",
            "tags": ["misc"],
            "summary": "For vendors: a task changed. Signed or not, it only makes the gateway poll that task now. "
            "Bodies over `[server] max_callback_bytes` get 413.",
            "security": [],
            "parameters": [_path_id("channel")],
            "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
            "responses": {
                "200": {
                    "description": 'Noted: `{"ok": true}`, or the reply the vendor\'s plugin says the vendor '
                    "expects (e.g. an echoed `challenge`).",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
                "401": {
                    "description": "The plugin checked the callback's signature and it does not hold "
                    "(ignored; nothing is made due).",
                    "content": {
                        JSON: {"schema": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": False}}}}
                    },
                },
                "400": {
                    "description": "The channel's plugin could not read the body (nothing happens).",
                    "content": {
                        JSON: {"schema": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": False}}}}
                    },
                },
                "404": {
                    "description": "No such channel (answered without reading the body).",
                    "content": {
                        JSON: {"schema": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": False}}}}
                    },
                },
                **{k: v for k, v in errors(408, 413).items() if k != "401"},
            },
        }
    },
    "/healthz": {
        "get": {
            "operationId": "health",
            "tags": ["misc"],
            "summary": "Liveness and store reachability.",
            "security": [],
            "responses": {
                "200": ok("Health", "Healthy."),
                "503": {"description": "The store is unreachable.", "content": {JSON: {"schema": ref("Health")}}},
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "tags": ["misc"],
            "summary": "Prometheus metrics (only when `[server] metrics = true`; otherwise 404).",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "404": {"description": "Metrics are disabled.", "content": {JSON: {"schema": ref("Error")}}},
            },
        }
    },
    "/v1/operator/overview": {
        "get": {
            "operationId": "operatorOverview",
            "tags": ["operator"],
            "summary": "Channels, tasks by status, recent failures and usage (operator keys only; read-only).",
            "responses": {
                "200": {
                    "description": "The overview (see docs/api.md).",
                    "headers": {"x-request-id": _REQUEST_ID},
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["object", "channels", "tasks_by_status", "recent_failures", "usage"],
                            }
                        }
                    },
                },
                "403": {"description": "The key is not an operator key.", "content": {JSON: {"schema": ref("Error")}}},
                **errors(),
            },
        }
    },
    **{
        path: {
            "get": {
                "operationId": operation,
                "tags": ["console"],
                "summary": summary,
                "security": [],
                "responses": {
                    "200": {
                        "description": "The page (static; it signs in with a key itself).",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
        for path, operation, summary in (
            ("/console", "console", "The web console (docs/console.md)."),
            ("/console/operator", "operatorConsole", "The operator console (read-only)."),
        )
    },
    "/console/static/{name}": {
        "get": {
            "operationId": "consoleAsset",
            "tags": ["console"],
            "summary": "A script or stylesheet of the console.",
            "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                "404": {"description": "No such file.", "content": {JSON: {"schema": ref("Error")}}},
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "tags": ["misc"],
            "summary": "This document.",
            "security": [],
            "responses": {
                "200": {"description": "The OpenAPI document.", "content": {JSON: {"schema": {"type": "object"}}}}
            },
        }
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "vidgate",
        "version": __version__,
        "summary": "One asynchronous video-generation API in front of many video vendors.",
        "description": "Create a task, poll it, download the result. `/v1/video/generations` is the unified "
        "API; `/v1/videos` is compatible with OpenAI's Videos API (point the openai SDK's `base_url` at "
        "this gateway's `/v1`). Every error has the shape of `Error`.",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "tags": [
        {"name": "unified", "description": "vidgate's own endpoints."},
        {"name": "openai", "description": "OpenAI Videos API compatible."},
        {"name": "misc"},
        {"name": "operator", "description": "Read-only views for operator keys."},
        {"name": "console", "description": "The web console's static pages (docs/console.md)."},
    ],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "webhooks": {
        "videoEvent": {
            "post": {
                "summary": "A task's status changed (sent to the task's `webhook_url`).",
                "description": "Signed per Standard Webhooks: `webhook-id` (the event id, the same on every "
                "retry), `webhook-timestamp`, `webhook-signature` (`v1,<base64>` per signing secret, space "
                "separated). Answer 2xx; anything else is retried; 410 stops deliveries to the URL.",
                "requestBody": {"required": True, "content": {JSON: {"schema": ref("WebhookEvent")}}},
                "responses": {"200": {"description": "Received."}},
            }
        }
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A vidgate API key (`vg-…`)."}
        },
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}


SCHEMAS["WebhookEvent"] = {
    "type": "object",
    "required": ["id", "object", "type", "created_at", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^evt_"},
        "object": {"const": "event"},
        "type": {"type": "string", "enum": ["video.in_progress", "video.completed", "video.failed", "video.cancelled"]},
        "created_at": {"type": "integer"},
        "data": ref("Video"),
    },
}


def document(server_url: str | None = None, models: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document; ``servers`` points at ``server_url`` and ``model`` is limited
    to ``models`` (the models this gateway serves) when given."""
    doc = copy.deepcopy(_DOCUMENT)
    if server_url:
        doc["servers"] = [{"url": server_url.rstrip("/") or "/"}]
    if models:
        schemas = doc["components"]["schemas"]
        for name in ("VideoGenerationRequest", "VideoCreateMultipart"):
            schemas[name]["properties"]["model"]["enum"] = sorted(models)
    return doc


async def openapi(request: Request) -> Response:
    gw = request.app.state.gateway
    served = [name for name in gw.plugins.models if gw.dispatcher.serving(name)]
    return JSONResponse(document(gw.config.server.public_url or str(request.base_url), served))


routes = [Route("/openapi.json", openapi, methods=["GET"])]
