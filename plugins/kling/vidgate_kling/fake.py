"""A fake Kling API server, strict like the real one, for tests.

It verifies the JWT exactly as Kling does, answers every call in Kling's envelope, keeps
text2video and image2video tasks apart, accepts ``external_task_id`` in the query path,
walks tasks ``submitted -> processing -> succeed`` as they are polled, and serves the
result MP4 from its own host without auth. Switches inject Kling's error answers.
Every request is recorded in :attr:`FakeKling.requests` for wire-shape assertions.
It is a :class:`vidgate.fakekit.FakeVendor`, so prompt keywords (``[429]``, ``[500]``,
``[unknown-status]``, ``[echo-key]``...) inject faults too.

Use it in your own tests::

    from vidgate_kling.fake import FakeKling

    fake = FakeKling(access_key="ak", secret_key="sk")
    async with fake.serve():
        ...  # channel {"vendor": "kling", "base_url": fake.url,
             #          "credentials": {"access_key": "ak", "secret_key": "sk"}}
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
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded
from vidgate.testing import tiny_mp4

from .auth import b64url_decode

#: Bytes served as every result video: a real MP4.
VIDEO = tiny_mp4()

T2V_MODELS = frozenset(
    {"kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6", "kling-v3"}
)
I2V_MODELS = T2V_MODELS | {"kling-v1-5", "kling-v2-1"}
FAMILIES = {"text2video": T2V_MODELS, "image2video": I2V_MODELS}

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


def _ms() -> int:
    return int(time.time() * 1000)


class FakeKling(FakeVendor):
    """State and switches of one fake Kling account.

    * ``polls_to_finish``: a task is ``submitted`` until polled, ``processing`` on the
      following polls, and final (``succeed``/``failed``) from this poll number on.
    * :meth:`fail_creates`: the next N creates answer a business code (HTTP per Kling).
    * :meth:`fail_next_task`: the next created task ends ``failed`` with a message.
    * :meth:`malformed_polls`: the next N queries answer garbage (non-JSON or a task
      without fields).
    * ``send_callbacks``: POST the bare task object to ``callback_url`` on each change.
    """

    vendor = "Kling"
    status_words = WORDS

    def __init__(
        self,
        access_key: str = "fake-ak",
        secret_key: str = "fake-sk",
        polls_to_finish: int = 3,
        send_callbacks: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(secret=secret_key, polls_to_finish=polls_to_finish, result_bytes=VIDEO, **kwargs)
        self.access_key, self.secret_key, self.send_callbacks = access_key, secret_key, send_callbacks
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
        """The next ``times`` queries answer ``kind``: ``non_json`` (an HTML page) or
        ``missing`` (code 0 but a task without ``task_status``)."""
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

    # -- the app ---------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/videos/{family}", self._create, methods=["POST"]),
            Route("/v1/videos/{family}", self._list, methods=["GET"]),
            Route("/v1/videos/{family}/{task_id}", self._query, methods=["GET"]),
            Route("/cdn/{name}", self._cdn, methods=["GET", "HEAD"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        """Base-class faults in Kling's envelope, with Kling's business codes."""
        code = CODE_FOR_KIND[kind]
        return self._reply(Recorded("", "", {}), code, message, status=HTTP_FOR_CODE.get(code, status))

    # -- helpers ---------------------------------------------------------------------

    def _reply(
        self, rec: Recorded, code: int, message: str = "SUCCEED", data: Any = None, status: int | None = None
    ) -> JSONResponse:
        rec.code = code
        rec.status = status or (200 if code == 0 else HTTP_FOR_CODE.get(code, 400))
        body: dict[str, Any] = {"code": code, "message": message, "request_id": secrets.token_hex(16)}
        if data is not None or code == 0:
            body["data"] = data
        return JSONResponse(body, status_code=rec.status)

    def _auth_error(self, request: Request) -> tuple[int, str] | None:
        """Kling's JWT checks; returns ``(code, message)`` on failure."""
        header = request.headers.get("authorization")
        if not header:
            return 1001, "Authorization is empty"
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return 1002, "Authorization is invalid"
        parts = token.split(".")
        if len(parts) != 3:
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
                        "duration": task["_duration"],
                    }
                ]
            }
            task["final_unit_deduction"] = "1" if task["_duration"] == "5" else "2"
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

    def _validate(self, family: str, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        model = body.get("model_name", "kling-v1")
        if model not in FAMILIES[family]:
            return f"model_name {model!r} is invalid for {family}"
        duration = body.get("duration", "5")
        if not isinstance(duration, str):
            return "duration must be a string"
        allowed = {str(n) for n in range(3, 16)} if model == "kling-v3" else {"5", "10"}
        if duration not in allowed:
            return f"duration {duration!r} is invalid for {model}"
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 2500):
            return "prompt must be a string of at most 2500 characters"
        if family == "text2video":
            if not prompt:
                return "prompt is required"
            if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
                return "aspect_ratio is invalid"
        else:
            # aspect_ratio is not in the image2video schema; like Kling, ignore it.
            if not body.get("image") and not body.get("image_tail"):
                return "image or image_tail is required"
            for field in ("image", "image_tail", "static_mask"):
                if field in body and (err := self._check_image(body[field], field)):
                    return err
        if body.get("mode", "std") not in ("std", "pro"):
            return "mode is invalid"
        cfg = body.get("cfg_scale", 0.5)
        if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 0 <= cfg <= 1:
            return "cfg_scale must be a number in [0, 1]"
        ext = body.get("external_task_id")
        if ext is not None:
            if not isinstance(ext, str):
                return "external_task_id must be a string"
            if any(t["task_info"].get("external_task_id") == ext for f in self.tasks.values() for t in f.values()):
                return "external_task_id already exists"
        if "callback_url" in body and not isinstance(body["callback_url"], str):
            return "callback_url must be a string"
        return None

    def _new_job(self, task_id: str, body: dict[str, Any]) -> FakeJob:
        job = self.new_job(
            body.get("prompt"),
            seconds=int(body.get("duration", "5")),
            job_id=task_id,
            image=body.get("image") or body.get("image_tail"),
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

    # -- endpoints -------------------------------------------------------------------

    def _refuse(self, request: Request, rec: Recorded, family: str) -> Response | None:
        """What every business endpoint checks first: a known family, then the JWT."""
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
        task: dict[str, Any] = {
            "task_id": task_id,
            "task_status": "submitted",
            "task_status_msg": "",
            "task_info": {"external_task_id": body["external_task_id"]} if body.get("external_task_id") else {},
            "created_at": now,
            "updated_at": now,
            "_duration": body.get("duration", "5"),
            "_callback_url": body.get("callback_url"),
            "_host": str(request.base_url),
            "_job": self._new_job(task_id, body),
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
            return JSONResponse(
                {
                    "code": 0,
                    "message": "SUCCEED",
                    "request_id": secrets.token_hex(16),
                    "data": {"task_id": request.path_params["task_id"]},
                }
            )
        if task is None:
            return self._reply(rec, 1203, "task not found")
        job = task["_job"]
        if task.get("_manual"):
            job.polls += 1
            return self._reply(rec, 0, data=self._public(task))
        state = self.advance(job)
        if state == "unknown":
            return self._reply(rec, 0, data={**self._public(task), "task_status": WORDS["unknown"]})
        self._set(task, WORDS[state], (job.error or "") if state == "failed" else "")
        return self._reply(rec, 0, data=self._public(task))

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
        tasks = sorted(self.tasks[family].values(), key=lambda t: t["created_at"], reverse=True)
        return self._reply(rec, 0, data=[self._public(t) for t in tasks[(page - 1) * size : page * size]])

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
