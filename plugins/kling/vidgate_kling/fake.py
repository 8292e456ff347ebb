"""A fake Kling API server, strict like the real one, for tests.

It accepts Kling's two bearer credentials (the account's API key, or a JWT it verifies
exactly as Kling does), answers every call in Kling's envelope, keeps the task spaces of
the families (text2video, image2video, multi-image2video, omni-video, video-extend)
apart, checks each model's families, durations, modes and sound, accepts
``external_task_id`` in the query path, lists each family newest first
(``pageNum``/``pageSize``), walks tasks ``submitted -> processing -> succeed`` as they are
observed (queried or listed), reports ``final_unit_deduction``, and serves the result MP4
from its own host without auth. Switches inject Kling's error answers.
Every request is recorded in :attr:`FakeKling.requests` for wire-shape assertions.
It is a :class:`vidgate.fakekit.FakeVendor`, so prompt keywords (``[429]``, ``[500]``,
``[unknown-status]``, ``[echo-key]``...) inject faults too.

Use it in your own tests::

    from vidgate_kling.fake import FakeKling

    fake = FakeKling(access_key="ak", secret_key="sk", api_key="key")
    async with fake.serve():
        ...  # channel {"vendor": "kling", "base_url": fake.url,
             #          "credentials": {"api_key": "key"}}  (or access_key/secret_key)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections import deque
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded
from vidgate.testing import tiny_mp4

from .auth import b64url_decode

#: Bytes served as every result video: a real MP4.
VIDEO = tiny_mp4()

#: What each Kling model_name serves, from the reference's model table (section 2.1).
#: ``duration`` choices as strings; ``modes`` empty = Kling ignores ``mode`` for it.
_STD = ("5", "10")
_LONG = tuple(str(n) for n in range(3, 16))
MODELS: dict[str, dict[str, Any]] = {
    "kling-v1": {"families": {"text2video", "image2video", "video-extend"}, "durations": _STD},
    "kling-v1-5": {"families": {"image2video"}, "durations": _STD},
    "kling-v1-6": {
        "families": {"text2video", "image2video", "multi-image2video", "video-extend"},
        "durations": _STD,
    },
    "kling-v2-master": {"families": {"text2video", "image2video", "video-extend"}, "durations": _STD},
    "kling-v2-1": {"families": {"image2video"}, "durations": _STD},
    "kling-v2-1-master": {"families": {"text2video", "image2video", "video-extend"}, "durations": _STD},
    "kling-v2-5-turbo": {"families": {"text2video", "image2video", "video-extend"}, "durations": _STD},
    "kling-v2-6": {"families": {"text2video", "image2video", "video-extend"}, "durations": _STD, "sound": "pro"},
    "kling-v3": {"families": {"text2video", "image2video", "video-extend"}, "durations": _LONG, "sound": "yes"},
    "kling-video-o1": {"families": {"omni-video"}, "durations": tuple(str(n) for n in range(3, 11))},
    "kling-v3-omni": {"families": {"omni-video"}, "durations": _LONG, "sound": "yes"},
}
FAMILIES = ("text2video", "image2video", "multi-image2video", "omni-video", "video-extend")
#: How long the fake pretends every ``base`` reference video (and so its edit) is.
BASE_VIDEO_SECONDS = "8"
#: Legacy units per 5 s (new-api's table) for ``final_unit_deduction``.
UNITS_PER_5S = {"std": 2.0, "pro": 3.5}

#: HTTP status Kling uses for each business code (DOC error table).
HTTP_FOR_CODE = {
    1000: 401,
    1001: 401,
    1002: 401,
    1003: 401,
    1004: 401,
    1100: 429,
    1101: 429,
    1102: 429,
    1103: 403,
    1200: 400,
    1201: 400,
    1202: 404,
    1203: 404,
    1300: 400,
    1301: 400,
    1302: 429,
    1303: 429,
    1304: 429,
    5000: 500,
    5001: 503,
    5002: 504,
}
MESSAGES = {
    1102: "resource pack exhausted",
    1301: "Failure to pass the risk control system",
    1302: "The API request is too fast, please slow down the request frequency",
    1303: "parallel task over resource pack limit",
    5000: "Server internal error",
    5001: "Service temporarily unavailable",
}


#: vidgate.fakekit error kinds -> the Kling business code that expresses them.
CODE_FOR_KIND = {"rejected": 1201, "rate_limit": 1302, "server": 5000, "auth": 1002}
#: FakeVendor states -> Kling task_status words.
WORDS = {
    "queued": "submitted",
    "running": "processing",
    "succeeded": "succeed",
    "failed": "failed",
    "unknown": "under_review",
}


def _envelope(code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": secrets.token_hex(16)}
    if data is not None or code == 0:
        body["data"] = data
    return body


def _ms() -> int:
    return int(time.time() * 1000)


class FakeKling(FakeVendor):
    """State and switches of one fake Kling account.

    * ``api_key``: the account's API key (None: the account has none, only AK/SK).
    * ``polls_to_finish``: a task is ``submitted`` until observed, ``processing`` on the
      following observations, and final (``succeed``/``failed``) from this one on. A
      query and a list page that shows the task are both observations.
    * :meth:`fail_creates`: the next N creates answer a business code (HTTP per Kling).
    * :meth:`fail_next_task`: the next created task ends ``failed`` with a message.
    * :meth:`malformed_polls`: the next N queries answer garbage (non-JSON or a task
      without fields).
    * ``send_callbacks``: POST the bare task object to ``callback_url`` on each change.
    """

    vendor = "Kling"
    status_words = WORDS
    codes: ClassVar[dict[str, Any]] = CODE_FOR_KIND

    def __init__(
        self,
        access_key: str = "fake-ak",
        secret_key: str = "fake-sk",
        polls_to_finish: int = 3,
        send_callbacks: bool = True,
        api_key: str | None = "fake-kling-api-key",
        **kwargs: Any,
    ) -> None:
        super().__init__(secret=secret_key, polls_to_finish=polls_to_finish, result_bytes=VIDEO, **kwargs)
        self.access_key, self.secret_key, self.send_callbacks = access_key, secret_key, send_callbacks
        self.api_key = api_key
        self.tasks: dict[str, dict[str, dict[str, Any]]] = {f: {} for f in FAMILIES}
        self._create_errors: deque[tuple[int, str | None]] = deque()
        self._fail_tasks: deque[str] = deque()
        self._malformed: deque[str] = deque()
        # 18-digit numeric strings, like real Kling task ids.
        self._kling_ids = itertools.count(860000000000000001)

    # -- switches --------------------------------------------------------------------

    def fail_creates(self, code: int, times: int = 1, message: str | None = None) -> None:
        """The next ``times`` create calls answer Kling business ``code`` (with ``message``,
        by default Kling's own message for the code)."""
        self._create_errors.extend([(code, message)] * times)

    def fail_next_task(self, message: str = "Failure to pass the risk control system") -> None:
        """The next created task ends ``failed`` with ``task_status_msg`` = ``message``."""
        self._fail_tasks.append(message)

    def malformed_polls(self, times: int = 1, kind: str = "non_json") -> None:
        """The next ``times`` status reads (queries or list calls) answer ``kind``:
        ``non_json`` (an HTML page) or ``missing`` (code 0 but tasks without
        ``task_status``)."""
        self._malformed.extend([kind] * times)

    def set_status(self, family: str, task_id: str, status: str, message: str = "") -> dict[str, Any]:
        """Move a task to ``status`` now (and send its callback); returns the task.

        From then on the task is driven by hand: polls no longer walk it."""
        task = self.tasks[family][task_id]
        task["_manual"] = True
        self._set(task, status, message)
        return task

    def creates(self, family: str | None = None) -> list[Recorded]:
        """Recorded successful and failed create calls (optionally of one family)."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and r.path.startswith("/v1/videos/")
            and (family is None or r.path == f"/v1/videos/{family}")
        ]

    def lists(self, family: str | None = None) -> list[Recorded]:
        """Recorded list calls (``GET /v1/videos/{family}``), optionally of one family."""
        return [
            r
            for r in self.requests
            if r.method == "GET"
            and r.path.count("/") == 3
            and r.path.startswith("/v1/videos/")
            and (family is None or r.path == f"/v1/videos/{family}")
        ]

    def queries(self) -> list[Recorded]:
        """Recorded single-task queries (``GET /v1/videos/{family}/{id}``)."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and r.path.startswith("/v1/videos/") and r.path.count("/") == 4
        ]

    # -- the app ---------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos/{family}", self._create, methods=["POST"]),
            Route("/v1/videos/{family}", self._list, methods=["GET"]),
            Route("/v1/videos/{family}/{task_id}", self._query, methods=["GET"]),
            Route("/cdn/{name}", self._cdn, methods=["GET", "HEAD"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        """Base-class faults in Kling's envelope, with Kling's business codes (:attr:`codes`)
        at the HTTP status Kling gives each."""
        code = self.codes[kind]
        return JSONResponse(_envelope(code, message), status_code=HTTP_FOR_CODE.get(code, status))

    # -- helpers ---------------------------------------------------------------------

    def _reply(self, rec: Recorded, code: int, message: str = "SUCCEED", data: Any = None) -> JSONResponse:
        """Any answer in Kling's envelope (business ``code`` 0 is a success), recorded."""
        status = 200 if code == 0 else HTTP_FOR_CODE.get(code, 400)
        return self.respond(rec, _envelope(code, message, data), status, code=code)

    def _auth_error(self, request: Request) -> tuple[int, str] | None:
        """Kling's bearer checks (an API key, or a JWT); returns ``(code, message)`` on failure."""
        header = request.headers.get("authorization")
        if not header:
            return 1001, "Authorization is empty"
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return 1002, "Authorization is invalid"
        parts = token.split(".")
        if len(parts) != 3:
            # Not a JWT: the account's API key, compared like a secret.
            if self.api_key and hmac.compare_digest(token.encode(), self.api_key.encode()):
                return None
            return 1002, "Authorization is invalid"
        try:
            head = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            return 1002, "Authorization is invalid"
        if not isinstance(head, dict) or head.get("alg") != "HS256" or not isinstance(claims, dict):
            return 1002, "Authorization is invalid"
        expected = hmac.new(self.secret_key.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(signature, expected) or claims.get("iss") != self.access_key:
            return 1002, "Authorization is invalid"
        now = time.time()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
            return 1002, "Authorization is invalid"
        if nbf > now:
            return 1003, "Authorization is not active"
        if exp <= now:
            return 1004, "Authorization has expired"
        return None

    def _public(self, task: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in task.items() if not k.startswith("_")}

    def _set(self, task: dict[str, Any], status: str, message: str = "") -> None:
        if task["task_status"] == status:
            return
        task["task_status"] = status
        task["task_status_msg"] = message
        task["updated_at"] = _ms()
        if status == "succeed":
            base = (self.base_url or task["_host"]).rstrip("/")
            task["task_result"] = {
                "videos": [
                    {
                        "id": task["task_id"] + "0",
                        "url": f"{base}/cdn/{task['task_id']}.mp4",
                        "duration": task["_out_duration"],
                    }
                ]
            }
            rate = UNITS_PER_5S.get(task["_mode"], UNITS_PER_5S["std"])
            task["final_unit_deduction"] = f"{rate * float(task['_billed']) / 5:g}"
        if self.send_callbacks and task.get("_callback_url"):
            self.send_callback(task["_callback_url"], self._public(task))

    @staticmethod
    def _check_image(value: Any, field: str) -> str | None:
        if not isinstance(value, str) or not value:
            return f"{field} must be a non-empty string"
        if value.startswith(("http://", "https://")):
            return None
        if value.startswith("data:"):
            return f"{field}: invalid image, base64 must not carry a data: prefix"
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return f"{field}: invalid base64 image"
        return None

    def _video(self, video_id: Any) -> dict[str, Any] | None:
        """The succeeded task whose result video has id ``video_id`` (any family)."""
        for space in self.tasks.values():
            for task in space.values():
                for v in (task.get("task_result") or {}).get("videos", []):
                    if v["id"] == video_id and task["task_status"] == "succeed":
                        return task
        return None

    def _validate(self, family: str, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        if family == "video-extend":
            return self._validate_extend(body)
        # The legacy field "model" is still accepted and means kling-v1.
        model = body.get("model_name") or "kling-v1"
        spec = MODELS.get(model)
        if spec is None or family not in spec["families"]:
            return f"model_name {model!r} is invalid for {family}"
        duration = body.get("duration", "5")
        if not isinstance(duration, str):
            return "duration must be a string"
        allowed = ("5", "10") if family == "multi-image2video" else spec["durations"]
        if duration not in allowed:
            return f"duration {duration!r} is invalid for {model}"
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 2500):
            return "prompt must be a string of at most 2500 characters"
        multi_shot = body.get("multi_shot") is True
        if body.get("mode", "std") not in ("std", "pro"):
            return "mode is invalid"
        sound = body.get("sound", "off")
        if sound not in ("on", "off"):
            return "sound must be on or off"
        if sound == "on":
            kind = spec.get("sound")
            if kind is None:
                return f"{model} does not support sound"
            if kind == "pro" and body.get("mode") != "pro":
                return "sound is only supported in pro mode"
        multi_prompt = body.get("multi_prompt")
        if multi_prompt is not None and (not isinstance(multi_prompt, list) or len(multi_prompt) > 6):
            return "multi_prompt must be a list of at most 6 shots"
        if "element_list" in body and "voice_list" in body:
            return "element_list and voice_list cannot be used together"
        if family == "text2video":
            if not prompt and not multi_shot:
                return "prompt is required"
            if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
                return "aspect_ratio is invalid"
        elif family == "image2video":
            # aspect_ratio is not in the image2video schema; like Kling, ignore it.
            if not body.get("image") and not body.get("image_tail"):
                return "image or image_tail is required"
            for field in ("image", "image_tail", "static_mask"):
                if field in body and (err := self._check_image(body[field], field)):
                    return err
            masks = body.get("static_mask") or body.get("dynamic_masks") or body.get("camera_control")
            if body.get("image_tail") and masks:
                return "image_tail, masks and camera_control cannot be used together"
        elif family == "multi-image2video":
            images = body.get("image_list")
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                return "image_list must hold 1 to 4 images"
            for i, item in enumerate(images):
                if not isinstance(item, dict) or (err := self._check_image(item.get("image"), f"image_list[{i}]")):
                    return err or f"image_list[{i}] must be an object with image"
            if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
                return "aspect_ratio is invalid"
        else:
            if err := self._validate_omni(body, prompt, multi_shot):
                return err
        cfg = body.get("cfg_scale", 0.5)
        if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 0 <= cfg <= 1:
            return "cfg_scale must be a number in [0, 1]"
        return self._validate_common(body)

    def _validate_omni(self, body: dict[str, Any], prompt: Any, multi_shot: bool) -> str | None:
        if not prompt and not multi_shot:
            return "prompt is required"
        images = body.get("image_list", [])
        videos = body.get("video_list", [])
        if not isinstance(images, list) or not isinstance(videos, list):
            return "image_list and video_list must be lists"
        types = []
        for i, item in enumerate(images):
            if not isinstance(item, dict) or (err := self._check_image(item.get("image"), f"image_list[{i}]")):
                return err or f"image_list[{i}] must be an object with image"
            kind = item.get("type")
            if kind not in (None, "first_frame", "end_frame"):
                return f"image_list[{i}].type is invalid"
            types.append(kind)
        if "end_frame" in types and "first_frame" not in types:
            return "end_frame requires a first_frame"
        if len(images) > (4 if videos else 7):
            return "too many images"
        for i, v in enumerate(videos):
            if not isinstance(v, dict) or not str(v.get("video_url", "")).startswith(("http://", "https://")):
                return f"video_list[{i}].video_url must be a URL"
            if v.get("refer_type", "base") not in ("base", "feature"):
                return f"video_list[{i}].refer_type is invalid"
        base = any(v.get("refer_type") == "base" for v in videos)
        if "first_frame" not in types and not base and body.get("aspect_ratio") not in ("16:9", "9:16", "1:1"):
            return "aspect_ratio is required without a first frame or a base video"
        if videos and body.get("sound") == "on":
            return "sound must be off when video_list is given"
        return None

    def _validate_extend(self, body: dict[str, Any]) -> str | None:
        source = self._video(body.get("video_id"))
        if not body.get("video_id"):
            return "video_id is required"
        if source is None:
            return "video_id does not exist"
        if _ms() - source["created_at"] > 30 * 24 * 3600 * 1000:
            return "the video is older than 30 days"
        if source["_model"] == "kling-v1-5":
            return "videos made by kling-v1-5 cannot be extended"
        if float(source["_out_duration"]) + 5 > 180:
            return "the extended video would be longer than 3 minutes"
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 2500):
            return "prompt must be a string of at most 2500 characters"
        return self._validate_common(body)

    def _validate_common(self, body: dict[str, Any]) -> str | None:
        ext = body.get("external_task_id")
        if ext is not None:
            if not isinstance(ext, str):
                return "external_task_id must be a string"
            if any(t["task_info"].get("external_task_id") == ext for f in self.tasks.values() for t in f.values()):
                return "external_task_id already exists"
        if "callback_url" in body and not isinstance(body["callback_url"], str):
            return "callback_url must be a string"
        return None

    @staticmethod
    def _first_image(body: dict[str, Any]) -> Any:
        if body.get("image") or body.get("image_tail"):
            return body.get("image") or body.get("image_tail")
        images = body.get("image_list") or []
        return images[0].get("image") if images else None

    def _new_job(self, task_id: str, body: dict[str, Any], family: str, seconds: str) -> FakeJob:
        job = self.new_job(
            body.get("prompt"),
            seconds=int(float(seconds)),
            job_id=task_id,
            image=self._first_image(body),
            family=family,
            body=body,
        )
        if self._fail_tasks:
            job.error = self._fail_tasks.popleft()
        return job

    def _find(self, family: str, key: str) -> dict[str, Any] | None:
        space = self.tasks[family]
        if key in space:
            return space[key]
        for task in space.values():
            if task["task_info"].get("external_task_id") == key:
                return task
        return None

    def _observe(self, task: dict[str, Any]) -> dict[str, Any]:
        """Count one observation of ``task`` (a query or a list entry); its public object."""
        job = task["_job"]
        if task.get("_manual"):
            job.polls += 1
            return self._public(task)
        state = self.advance(job)
        if state == "unknown":
            return {**self._public(task), "task_status": WORDS["unknown"]}
        self._set(task, WORDS[state], (job.error or "") if state == "failed" else "")
        return self._public(task)

    # -- endpoints -------------------------------------------------------------------

    def _refuse(self, request: Request, rec: Recorded, family: str) -> Response | None:
        """What every business endpoint checks first: a known family, then the bearer."""
        if family not in FAMILIES:
            return self._reply(rec, 1202, "invalid request path")
        if err := self._auth_error(request):
            return self._reply(rec, *err)
        return None

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        family = request.path_params["family"]
        if refusal := self._refuse(request, rec, family):
            return refusal
        if self._create_errors:
            code, message = self._create_errors.popleft()
            return self._reply(rec, code, message or MESSAGES.get(code, f"error {code}"))
        if problem := self._validate(family, rec.json):
            return self._reply(rec, 1201, problem)
        body = rec.json
        if refusal := self.create_fault(body.get("prompt"), rec):
            return refusal
        now = _ms()
        task_id = str(next(self._kling_ids))
        info: dict[str, Any] = {"external_task_id": body["external_task_id"]} if body.get("external_task_id") else {}
        if family == "video-extend":
            # Kling extends with the source's model and mode, by 4-5 s; the result is the
            # whole extended video (its duration the new total).
            source = self._video(body["video_id"])
            assert source is not None
            model, mode, billed = source["_model"], source["_mode"], "5"
            out = f"{float(source['_out_duration']) + 5:g}"
            info["parent_video"] = dict(source["task_result"]["videos"][0])
        else:
            model = body.get("model_name") or "kling-v1"
            mode = body.get("mode") or ("pro" if family == "omni-video" else "std")
            billed = out = body.get("duration", "5")
            if any(v.get("refer_type") == "base" for v in body.get("video_list", [])):
                billed = out = BASE_VIDEO_SECONDS  # an edit is as long as its input video
        task: dict[str, Any] = {
            "task_id": task_id,
            "task_status": "submitted",
            "task_status_msg": "",
            "task_info": info,
            "created_at": now,
            "updated_at": now,
            "_model": model,
            "_mode": mode,
            "_billed": billed,
            "_out_duration": out,
            "_callback_url": body.get("callback_url"),
            "_host": str(request.base_url),
            "_job": self._new_job(task_id, body, family, billed),
        }
        if "watermark_info" in body:
            task["watermark_info"] = body["watermark_info"]
        self.tasks[family][task_id] = task
        data = {k: task[k] for k in ("task_id", "task_info", "task_status", "created_at", "updated_at")}
        return self._reply(rec, 0, data=data)

    async def _query(self, request: Request) -> Response:
        rec = await self.record(request)
        family = request.path_params["family"]
        if refusal := self._refuse(request, rec, family):
            return refusal
        task = self._find(family, request.path_params["task_id"])
        if refusal := await self.poll_fault(task["_job"] if task else None, rec):
            return refusal
        if self._malformed:
            kind = self._malformed.popleft()
            rec.code = -1
            if kind == "non_json":
                return Response("<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html")
            return JSONResponse(_envelope(0, "SUCCEED", {"task_id": request.path_params["task_id"]}))
        if task is None:
            return self._reply(rec, 1203, "task not found")
        return self._reply(rec, 0, data=self._observe(task))

    async def _list(self, request: Request) -> Response:
        rec = await self.record(request)
        family = request.path_params["family"]
        if refusal := self._refuse(request, rec, family):
            return refusal
        try:
            page = int(request.query_params.get("pageNum", "1"))
            size = int(request.query_params.get("pageSize", "30"))
        except ValueError:
            return self._reply(rec, 1201, "pageNum/pageSize must be integers")
        if not (1 <= page <= 1000 and 1 <= size <= 500):
            return self._reply(rec, 1201, "pageNum/pageSize out of range")
        tasks = sorted(self.tasks[family].values(), key=lambda t: (t["created_at"], t["task_id"]), reverse=True)
        shown = tasks[(page - 1) * size : page * size]
        # A poll fault a listed task carries ([500], [malformed], [slow]) hits the list call.
        faulty = next(
            (
                t["_job"]
                for t in shown
                if t["task_status"] in ("submitted", "processing")
                and any(f in t["_job"].faults for f in ("500", "malformed", "slow"))
            ),
            None,
        )
        if refusal := await self.poll_fault(faulty, rec):
            return refusal
        if self._malformed:
            kind = self._malformed.popleft()
            rec.code = -1
            if kind == "non_json":
                return Response("<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html")
            garbled = [{"task_id": t["task_id"]} for t in shown]
            return JSONResponse(_envelope(0, "SUCCEED", garbled))
        data = [self._observe(t) if t["task_status"] in ("submitted", "processing") else self._public(t) for t in shown]
        return self._reply(rec, 0, data=data)

    async def _cdn(self, request: Request) -> Response:
        # Kling's CDN needs no auth; unknown names are 404 like an expired asset.
        rec = await self.record(request)
        name = request.path_params["name"]
        task_id = name.removesuffix(".mp4")
        if not any(task_id in space and space[task_id]["task_status"] == "succeed" for space in self.tasks.values()):
            rec.code = 404
            return Response(b"not found", status_code=404)
        rec.code = 200
        return Response(VIDEO, media_type="video/mp4")


def create_app(access_key: str = "fake-ak", secret_key: str = "fake-sk", **kwargs: Any) -> Starlette:
    """A fake Kling app; its :class:`FakeKling` is ``app.state.fake``."""
    fake = FakeKling(access_key=access_key, secret_key=secret_key, **kwargs)
    app = fake.app
    app.state.fake = fake
    return app
