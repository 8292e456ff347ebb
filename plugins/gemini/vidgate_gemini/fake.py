"""A faithful local fake of the Gemini API's Interactions API (video), for tests.

It speaks vendor-protocols-2026 §2.3 and what the official ``google-genai`` 3.x client
sends (its ``client.interactions.create/get/cancel`` round-trip against it):

* ``x-goog-api-key`` (or ``?key=``) checked: a wrong key is ``400 INVALID_ARGUMENT`` with
  an ``ErrorInfo`` reason ``API_KEY_INVALID``, a missing key ``403 PERMISSION_DENIED``.
* ``POST /{v1beta|v1}/interactions``: ``model`` must be served (retired ids answer 404
  "... is no longer available"), ``background: true`` is required for video, ``input`` is
  a string, a list of content blocks, or a list of ``user_input`` steps (the SDK's form);
  ``response_format`` ``{type: "video", aspect_ratio, resolution, duration: "<n>s" (3-10),
  delivery}`` and ``generation_config.video_config.task`` are checked; a
  ``previous_interaction_id`` must name a completed, stored interaction, and the chain
  stays within 40 s. Answers the Interaction (``id`` ``v1_...``, ``status`` ``queued``).
* ``GET /{v}/interactions/{id}``: the Interaction; once done, ``steps[]`` end with a
  ``model_output`` step whose ``content[0]`` is ``{type: "video", mime_type, data}``
  (inline base64) or ``{..., uri}`` (``delivery: "uri"``, served at
  ``/{v}/files/{id}:download?alt=media`` with the key), and ``usage`` reports the tokens
  (5,792 video tokens per second).
* ``POST /{v}/interactions/{id}/cancel``: a queued or running interaction becomes
  ``cancelled``; a finished one is answered as it is (Google's answer there is
  unconfirmed).
* Switches: :attr:`FakeGemini.final_status` (``completed``, or ``failed``,
  ``incomplete``, ``budget_exceeded``), :attr:`FakeGemini.video_tokens_per_second`, and the
  prompt keywords of :mod:`vidgate.fakekit`; :meth:`FakeGemini.webhook` builds the
  Standard-Webhooks delivery Google sends for an interaction.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import string
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor
from vidgate.testing import tiny_mp4

SERVED = {"gemini-omni-1.1-flash"}
RETIRED = {"gemini-omni-flash-preview", "veo-3.1-generate-preview", "veo-3.0-generate-001"}
TASKS = {"text_to_video", "image_to_video", "reference_to_video", "edit", "extend", "upscale"}
_ALNUM = string.ascii_lowercase + string.digits


def google_error(http: int, status: str, message: str, details: list[Any] | None = None) -> JSONResponse:
    err: dict[str, Any] = {"code": http, "message": message, "status": status}
    if details:
        err["details"] = details
    return JSONResponse({"error": err}, status_code=http)


class FakeGemini(FakeVendor):
    """The Interactions API fake; ``secret`` is the API key."""

    vendor = "Google"
    status_words = {
        "queued": "queued",
        "running": "in_progress",
        "succeeded": "completed",
        "failed": "failed",
        "cancelled": "cancelled",
        "unknown": "idle",  # a real Interactions word, not expected for video
    }

    def __init__(self, *, api_key: str = "gemini-test-key", polls_to_finish: int = 2, video: bytes | None = None):
        self.video = video if video is not None else tiny_mp4(64, 36)
        super().__init__(secret=api_key, polls_to_finish=polls_to_finish, result_bytes=self.video)
        self.final_status = "completed"
        self.video_tokens_per_second = 5792
        self.files: dict[str, bytes] = {}

    @property
    def api_key(self) -> str:
        return self.secret

    def new_job_id(self) -> str:
        return "v1_" + "".join(secrets.choice(_ALNUM) for _ in range(24))

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/{version:str}/interactions", self._create, methods=["POST"]),
            Route("/{version:str}/interactions/{id:str}", self._get, methods=["GET", "DELETE"]),
            Route("/{version:str}/interactions/{id:str}/cancel", self._cancel, methods=["POST"]),
            Route("/{version:str}/files/{name:str}", self._download, methods=["GET"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        if kind == "rate_limit":
            return google_error(
                429,
                "RESOURCE_EXHAUSTED",
                message,
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}],
            )
        gstatus = {"server": "INTERNAL", "auth": "PERMISSION_DENIED"}.get(kind, "INVALID_ARGUMENT")
        return google_error(status, gstatus, message)

    # -- helpers ----------------------------------------------------------------------

    def creates(self) -> list[Any]:
        """The recorded create bodies."""
        return [r.json for r in self.recorded("POST", re.compile(r"/interactions$"))]

    def webhook(self, job: FakeJob, secret: str, event: str = "interaction.completed") -> tuple[bytes, dict[str, str]]:
        """The Standard-Webhooks delivery about ``job`` (a thin payload: the id and
        status; Google's exact payload is unconfirmed), signed with ``secret``."""
        from standardwebhooks.webhooks import Webhook

        body = json.dumps(
            {"type": event, "timestamp": int(time.time()), "data": {"id": job.id, "status": self.word(job.state)}}
        )
        msg_id = "msg_" + secrets.token_hex(8)
        now = int(time.time())
        signature = Webhook(secret).sign(msg_id, _utc(now), body)
        return body.encode(), {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}

    # -- handlers ---------------------------------------------------------------------

    def _key_error(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return google_error(
                403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers. Please use API Key."
            )
        if not hmac.compare_digest(key, self.secret):
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            )
        return None

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if err := self._key_error(request):
            rec.status = err.status_code
            return err
        resp = self._create_answer(rec.json)
        if isinstance(resp, Response):
            rec.status = resp.status_code
            return resp
        body, blocks, seconds, size, previous = resp
        prompt = " ".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        if refusal := self.create_fault(prompt, rec):
            return refusal
        job = self.new_job(
            prompt,
            seconds=seconds,
            size=size,
            image=[b for b in blocks if b.get("type") == "image"],
            body=body,
            previous=previous,
            total=seconds + (self.jobs[previous].data["total"] if previous else 0),
        )
        rec.status = 200
        return JSONResponse(self._interaction(job))

    def _create_answer(self, body: Any) -> Response | tuple[dict[str, Any], list[dict[str, Any]], int, str, Any]:
        def bad(message: str) -> Response:
            return google_error(400, "INVALID_ARGUMENT", message)

        if not isinstance(body, dict):
            return bad("Invalid JSON payload received.")
        model = body.get("model")
        if model in RETIRED:
            return google_error(404, "NOT_FOUND", f"models/{model} is no longer available.")
        if model not in SERVED:
            return google_error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta.")
        if body.get("background") is not True:
            return bad("Video generation requires background=true.")
        blocks = _blocks(body.get("input"))
        if blocks is None:
            return bad("input must be a string, content blocks or user_input steps.")
        for i, b in enumerate(blocks):
            if b.get("type") == "image":
                if not (isinstance(b.get("uri"), str) or _valid_b64(b.get("data"))):
                    return bad(f"input[{i}].data must be base64 image bytes or uri must be set.")
                if not str(b.get("mime_type", "")).startswith("image/"):
                    return bad(f"input[{i}].mime_type must be an image type.")
            elif b.get("type") != "text" or not isinstance(b.get("text"), str):
                return bad(f"input[{i}] is not a supported content block.")
        fmt = body.get("response_format")
        if not isinstance(fmt, dict) or fmt.get("type") != "video":
            return bad("response_format.type must be video for this model.")
        aspect = fmt.get("aspect_ratio", "16:9")
        resolution = fmt.get("resolution", "720p")
        if aspect not in ("16:9", "9:16"):
            return bad("response_format.aspect_ratio must be 16:9 or 9:16.")
        if resolution not in ("360p", "720p", "1080p", "4k"):
            return bad("response_format.resolution must be one of 360p, 720p, 1080p, 4k.")
        m = re.fullmatch(r"(\d+)s", str(fmt.get("duration", "8s")))
        if m is None or not 3 <= int(m[1]) <= 10:
            return bad("response_format.duration must be between 3s and 10s.")
        if fmt.get("delivery", "inline") not in ("inline", "uri"):
            return bad("response_format.delivery must be inline or uri.")
        task = ((body.get("generation_config") or {}).get("video_config") or {}).get("task")
        if task is not None and task not in TASKS:
            return bad(f"generation_config.video_config.task {task!r} is not supported.")
        seconds = int(m[1])
        previous = body.get("previous_interaction_id")
        if previous is not None:
            source = self.jobs.get(previous)
            if source is None:
                return google_error(404, "NOT_FOUND", f"Interaction {previous} not found.")
            if source.state != "succeeded" or not source.data["body"].get("store", True):
                return bad(f"Interaction {previous} is not a completed, stored interaction.")
            if source.data["total"] + seconds > 40:
                return bad("Extensions are limited to 40s in total.")
        elif task == "extend":
            return bad("task extend requires previous_interaction_id.")
        w, h = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}[resolution]
        size = f"{w}x{h}" if aspect == "16:9" else f"{h}x{w}"
        return body, blocks, seconds, size, previous

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if err := self._key_error(request):
            rec.status = err.status_code
            return err
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            rec.status = 404
            return google_error(404, "NOT_FOUND", f"Interaction {request.path_params['id']} not found.")
        if request.method == "DELETE":
            del self.jobs[job.id]
            rec.status = 200
            return JSONResponse({})
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = self.advance(job) if job.state in ("queued", "running") else job.state
        rec.status = 200
        return JSONResponse(self._interaction(job, unknown=state == "unknown"))

    async def _cancel(self, request: Request) -> Response:
        rec = await self.record(request)
        if err := self._key_error(request):
            rec.status = err.status_code
            return err
        job = self.jobs.get(request.path_params["id"])
        if job is None:
            rec.status = 404
            return google_error(404, "NOT_FOUND", f"Interaction {request.path_params['id']} not found.")
        if job.state in ("queued", "running"):
            self.set_state(job, "cancelled")
        rec.status = 200
        return JSONResponse(self._interaction(job))

    async def _download(self, request: Request) -> Response:
        rec = await self.record(request)
        if err := self._key_error(request):
            rec.status = err.status_code
            return err
        name = request.path_params["name"].removesuffix(":download")
        if request.query_params.get("alt") != "media" or name not in self.files:
            rec.status = 404
            return google_error(404, "NOT_FOUND", f"File files/{name} not found.")
        rec.status = 200
        return Response(self.files[name], media_type="video/mp4")

    # -- the Interaction ----------------------------------------------------------------

    def _interaction(self, job: FakeJob, *, unknown: bool = False) -> dict[str, Any]:
        body = job.data["body"]
        state = job.state
        if state == "failed" and job.error is None:
            job.error = "The model could not generate this video."
        word = "idle" if unknown else self.word(state)
        if state == "succeeded" and self.final_status != "completed":
            word = self.final_status
        out: dict[str, Any] = {
            "id": job.id,
            "object": "interaction",
            "status": word,
            "model": body["model"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.created_at)),
        }
        if job.data["previous"]:
            out["previous_interaction_id"] = job.data["previous"]
        if word == "failed":
            out["errors"] = [{"code": "internal", "message": job.error}]
        if word == "completed":
            fmt = body["response_format"]
            video: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
            if fmt.get("delivery") == "uri":
                name = job.id.removeprefix("v1_")
                self.files[name] = self.video
                video["uri"] = f"{self.base_url}/v1beta/files/{name}:download?alt=media"
            else:
                video["data"] = base64.b64encode(self.video).decode()
            out["steps"] = [
                {"type": "user_input", "content": _blocks(body["input"])},
                {"type": "model_output", "content": [video]},
            ]
        if word in ("completed", "cancelled", "incomplete", "budget_exceeded", "failed"):
            out["usage"] = self._usage(job, done=word == "completed")
        return out

    def _usage(self, job: FakeJob, *, done: bool) -> dict[str, Any]:
        text = sum(len(b.get("text", "").split()) for b in _blocks(job.data["body"]["input"]) or [])
        images = 258 * len(job.data["image"])
        video = (job.seconds or 0) * self.video_tokens_per_second if done else 0
        out: dict[str, Any] = {
            "total_input_tokens": text + images,
            "total_output_tokens": video,
            "total_tokens": text + images + video,
            "input_tokens_by_modality": [{"modality": "text", "tokens": text}]
            + ([{"modality": "image", "tokens": images}] if images else []),
        }
        if video:
            out["output_tokens_by_modality"] = [{"modality": "video", "tokens": video}]
        return out


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    """The content blocks of ``input``: a string, blocks, or ``user_input`` steps."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list) or not value:
        return None
    out: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict):
            return None
        if item.get("type") == "user_input":
            content = item.get("content")
            if isinstance(content, str):
                out.append({"type": "text", "text": content})
            elif isinstance(content, list) and all(isinstance(c, dict) for c in content):
                out.extend(content)
            else:
                return None
        else:
            out.append(item)
    return out


def _valid_b64(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True


def _utc(seconds: int) -> Any:
    import datetime

    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
