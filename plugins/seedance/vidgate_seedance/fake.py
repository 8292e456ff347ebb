"""A fake Ark (BytePlus ModelArk / Volcengine Ark) content-generation server, for tests.

Strict where the reference (section 2.6) is: Bearer key, ``{"error": {code, message,
param, type}}`` envelopes with Ark's code names, the platform's model ids, ``content[]``
item types and roles, resolution/ratio/duration per model family, ``service_tier`` (no
flex for 2.x), ``execution_expires_after`` and ``priority`` ranges, ``draft`` tasks and
their ``draft_task`` finals, the list endpoint with repeated ``filter.task_ids``, ``DELETE``
that cancels only a queued task (and deletes a finished one's record), unsigned callbacks
of the task object (none for ``cancelled``), ``usage.completion_tokens`` by Ark's formula,
and ``last_frame_url`` with ``return_last_frame``.

It is a :class:`vidgate.fakekit.FakeVendor`: the kit's prompt keywords inject faults
(``[429]``, ``[500]``, ``[malformed]``, ``[slow]``, ``[unknown-status]``, ``[fail]``,
``[hold]``, ``[echo-key]``), and so do its own:

* ``[filtered]``: the task fails ``OutputVideoSensitiveContentDetected``;
* ``[input-filtered]``: the create is refused ``InputTextSensitiveContentDetected``;
* ``[queued]``: the task stays ``queued`` until :meth:`FakeArk.release`.

Use it::

    fake = FakeArk(platform="byteplus")
    async with fake.serve():
        ...  # channel {"vendor": "seedance", "base_url": fake.api_url,
             #          "credentials": {"api_key": fake.secret}}
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor, Recorded
from vidgate.testing import tiny_png

API = "/api/v3"
TASKS = f"{API}/contents/generations/tasks"

#: Models per platform -> family ("2.x" or "1.x") and what it takes.
_SUFFIXES = {
    "seedance-2-0-260128": "2.x",
    "seedance-2-0-fast-260128": "2.x",
    "seedance-2-0-mini-260615": "2.x",
    "seedance-2-5-260628": "2.5",
    "seedance-1-0-pro-250528": "1.x",
    "seedance-1-0-lite-t2v-250428": "1.x-t2v",
    "seedance-1-0-lite-i2v-250428": "1.x-i2v",
}
PREFIX = {"byteplus": "dreamina-", "volcengine": "doubao-"}
DURATIONS = {"2.x": range(4, 16), "2.5": range(4, 31), "1.x": range(2, 13)}
RESOLUTIONS = ("480p", "720p", "1080p", "4k")
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive")
ROLES = {
    "image_url": ("first_frame", "last_frame", "reference_image"),
    "video_url": ("reference_video",),
    "audio_url": ("reference_audio",),
}
HTTP = {
    "InvalidParameter": 400,
    "MissingParameter": 400,
    "InputTextSensitiveContentDetected": 400,
    "AuthenticationError": 401,
    "ModelNotOpen": 404,
    "ResourceNotFound": 404,
    "RateLimitExceeded.EndpointRPMExceeded": 429,
    "InternalServiceError": 500,
}
_KIND_CODE = {
    "rate_limit": "RateLimitExceeded.EndpointRPMExceeded",
    "rejected": "InvalidParameter",
    "server": "InternalServiceError",
    "auth": "AuthenticationError",
}
#: What Ark answers (HTTP 401) a missing or wrong key.
BAD_KEY = "The API key in the request is missing or invalid."
WORDS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "unknown": "pending_review",
}


def _pixels(resolution: str, ratio: str) -> tuple[int, int]:
    short = {"480p": 480, "720p": 720, "1080p": 1080, "4k": 2160}[resolution]
    w, h = (int(x) for x in ratio.split(":"))
    return (2 * round(short * w / h / 2), short) if w >= h else (short, 2 * round(short * h / w / 2))


class FakeArk(FakeVendor):
    """One fake Ark account on ``platform`` (``byteplus`` or ``volcengine``).

    ``list_qps``: when set, list calls closer together than ``1/list_qps`` s answer 429.
    """

    vendor = "Seedance"
    codes: ClassVar[dict[str, Any]] = _KIND_CODE
    status_words = WORDS

    def __init__(self, platform: str = "byteplus", *, list_qps: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform
        self.list_qps = list_qps
        self._last_list = 0.0
        self._seq = itertools.count(1)
        self.deleted: set[str] = set()

    @property
    def api_url(self) -> str:
        """The channel ``base_url`` for this fake (Ark's ``/api/v3`` root)."""
        return self.url + API

    def models(self) -> dict[str, str]:
        return {PREFIX[self.platform] + s: fam for s, fam in _SUFFIXES.items()}

    def new_job_id(self) -> str:
        return f"cgt-{time.strftime('%Y%m%d%H%M%S')}-{next(self._seq):05d}"

    def release(self, job: FakeJob | None = None) -> None:
        """Let ``[hold]`` and ``[queued]`` jobs (one or all) go on."""
        super().release(job)
        for j in [job] if job is not None else list(self.jobs.values()):
            j.data["stay_queued"] = False

    def creates(self) -> list[Recorded]:
        return self.recorded("POST", TASKS)

    def list_calls(self) -> list[Recorded]:
        return self.recorded("GET", TASKS)

    # -- envelopes -----------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(TASKS, self._create, methods=["POST"]),
            Route(TASKS, self._list, methods=["GET"]),
            Route(TASKS + "/{id}", self._get, methods=["GET"]),
            Route(TASKS + "/{id}", self._delete, methods=["DELETE"]),
            Route("/_fake/frames/{id}", self._frame, methods=["GET"]),
        ]

    def code_for(self, kind: str) -> Any:
        # A kind is one of the kit's (mapped by codes) or an Ark code itself.
        return self.codes.get(kind, kind)

    def error(self, kind: str, message: str, status: int, *, param: str | None = None) -> Response:
        code = self.code_for(kind)
        body: dict[str, Any] = {"code": code, "message": message, "type": "BadRequest" if status == 400 else code}
        if param:
            body["param"] = param
        return JSONResponse({"error": body}, status_code=status)

    # -- the task object -----------------------------------------------------------

    def task_object(self, job: FakeJob) -> dict[str, Any]:
        d = job.data
        obj: dict[str, Any] = {
            "id": job.id,
            "model": d["model"],
            "status": WORDS.get(job.state, job.state),
            "resolution": d["resolution"],
            "ratio": d["ratio"],
            "duration": job.seconds,
            "framespersecond": 24,
            "service_tier": d.get("service_tier", "default"),
            "execution_expires_after": d.get("execution_expires_after", 172800),
            "draft": d.get("draft", False),
            "created_at": int(job.created_at),
            "updated_at": int(d.get("updated_at", job.created_at)),
        }
        if d.get("draft_task_id"):
            obj["draft_task_id"] = d["draft_task_id"]
        if "seed" in d:
            obj["seed"] = d["seed"]
        if job.state == "succeeded":
            # A signed TOS-style URL; the query must survive byte-exact.
            content = {"video_url": self.result_url(job) + "?X-Tos-Expires=86400&X-Tos-Signature=5f2a9c"}
            if d.get("return_last_frame"):
                content["last_frame_url"] = f"{self.base_url}/_fake/frames/{job.id}.png"
            obj["content"] = content
            w, h = (int(x) for x in (job.size or "0x0").split("x"))
            tokens = int((job.seconds or 0) * w * h * 24 / 1024)
            obj["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        if job.state == "failed":
            code = d.get("fail_code") or "InternalServiceError"
            obj["error"] = {"code": code, "message": job.error or "The video could not be generated."}
        return obj

    def callback_body(self, job: FakeJob) -> Any:
        return self.task_object(job)

    def _advance(self, job: FakeJob) -> dict[str, Any]:
        if job.state in ("cancelled", "expired"):
            job.polls += 1
            return self.task_object(job)
        if job.data.get("stay_queued"):
            job.polls += 1
            return self.task_object(job)
        before = job.state
        state = self.advance(job)
        if state != before:
            job.data["updated_at"] = time.time()
        if state == "unknown":
            return {**self.task_object(job), "status": WORDS["unknown"]}
        return self.task_object(job)

    # -- validation ----------------------------------------------------------------

    def _validate(self, body: Any) -> tuple[str, str, str | None] | None:  # noqa: C901 - one check per field
        """``(code, message, param)`` for what Ark refuses, else None."""
        if not isinstance(body, dict):
            return "InvalidParameter", "the request body must be a JSON object", None
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return "MissingParameter", "model is required", "model"
        family = self.models().get(model)
        if family is None and not model.startswith("ep-"):
            return "ModelNotOpen", f"the model {model} is not activated or does not exist", "model"
        family = family or "2.x"
        content = body.get("content")
        if not isinstance(content, list) or not content:
            return "MissingParameter", "content is required", "content"
        roles: list[str] = []
        drafts = 0
        for item in content:
            if not isinstance(item, dict):
                return "InvalidParameter", "content items must be objects", "content"
            kind = item.get("type")
            if kind == "text":
                if not isinstance(item.get("text"), str):
                    return "InvalidParameter", "text must be a string", "content"
            elif kind in ROLES:
                ref = item.get(kind)
                if not isinstance(ref, dict) or not isinstance(ref.get("url"), str) or not ref["url"]:
                    return "InvalidParameter", f"{kind}.url is required", "content"
                url = ref["url"]
                if not url.startswith(("http://", "https://", "data:")) or (
                    url.startswith("data:") and ";base64," not in url
                ):
                    return "InvalidParameter", f"{kind}.url must be a URL or a base64 data URL", "content"
                role = item.get("role", "first_frame" if kind == "image_url" else None)
                if role not in ROLES[kind]:
                    return "InvalidParameter", f"role {role!r} is invalid for {kind}", "content"
                roles.append(role)
                if kind != "image_url" and family == "1.x":
                    return "InvalidParameter", f"{model} takes no {kind}", "content"
            elif kind == "draft_task":
                drafts += 1
                ref = item.get("draft_task")
                if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
                    return "InvalidParameter", "draft_task.id is required", "content"
            else:
                return "InvalidParameter", f"content type {kind!r} is invalid", "content"
        if drafts and len(content) > 1:
            return "InvalidParameter", "a draft_task item must be the only content", "content"
        if "last_frame" in roles and "first_frame" not in roles:
            return "InvalidParameter", "last_frame needs a first_frame", "content"
        if "reference_image" in roles and ("first_frame" in roles or "last_frame" in roles):
            return "InvalidParameter", "reference images cannot be mixed with frames", "content"
        images = [r for r in roles if r in ROLES["image_url"]]
        if family == "1.x-t2v" and images:
            return "InvalidParameter", f"{model} is a text-to-video model", "content"
        if family == "1.x-i2v" and not images:
            return "InvalidParameter", f"{model} needs an image", "content"
        if not drafts and not any(i.get("type") == "text" for i in content) and not roles:
            return "MissingParameter", "a text prompt is required", "content"
        base = family.split("-")[0]
        duration = body.get("duration", 5)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration not in DURATIONS[base]:
            return "InvalidParameter", f"duration {duration!r} is invalid for {model}", "duration"
        if body.get("resolution", "720p") not in RESOLUTIONS:
            return "InvalidParameter", "resolution is invalid", "resolution"
        if body.get("ratio", "16:9") not in RATIOS:
            return "InvalidParameter", "ratio is invalid", "ratio"
        tier = body.get("service_tier", "default")
        if tier not in ("default", "flex") or (tier == "flex" and base != "1.x"):
            return "InvalidParameter", f"service_tier {tier!r} is invalid for {model}", "service_tier"
        expires = body.get("execution_expires_after", 172800)
        if not isinstance(expires, int) or not 3600 <= expires <= 259200:
            return "InvalidParameter", "execution_expires_after must be 3600-259200", "execution_expires_after"
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or not 0 <= priority <= 9:
            return "InvalidParameter", "priority must be 0-9", "priority"
        for flag in ("watermark", "generate_audio", "camera_fixed", "return_last_frame", "draft"):
            if flag in body and not isinstance(body[flag], bool):
                return "InvalidParameter", f"{flag} must be a boolean", flag
        if body.get("generate_audio") and base == "1.x":
            return "InvalidParameter", f"{model} makes no audio", "generate_audio"
        if "callback_url" in body and not isinstance(body["callback_url"], str):
            return "InvalidParameter", "callback_url must be a string", "callback_url"
        return None

    # -- endpoints -----------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_KEY):
            return refusal
        body = rec.json
        if isinstance(body, dict):
            # The official SDKs send every unset field as null: Ark reads null as absent.
            body = {k: v for k, v in body.items() if v is not None}
        if problem := self._validate(body):
            return self.reject(rec, problem[0], problem[1], HTTP.get(problem[0], 400), param=problem[2])
        items = body["content"]
        draft_of: FakeJob | None = None
        if items[0].get("type") == "draft_task":
            draft_of = self.jobs.get(items[0]["draft_task"]["id"])
            if draft_of is None or draft_of.id in self.deleted:
                return self.reject(rec, "InvalidParameter", "the draft task does not exist", param="content")
            if not draft_of.data.get("draft") or draft_of.state != "succeeded":
                return self.reject(
                    rec, "InvalidParameter", "draft_task must be a succeeded draft task", param="content"
                )
            if draft_of.data["model"] != body["model"]:
                return self.reject(rec, "InvalidParameter", "the final must use the draft's model", param="model")
        prompt = " ".join(i["text"] for i in items if i.get("type") == "text")
        if draft_of is not None:
            prompt = draft_of.prompt
        if refusal := self.create_fault(prompt, rec):
            return refusal
        if "[input-filtered]" in prompt:
            return self.reject(
                rec,
                "InputTextSensitiveContentDetected",
                "The request failed because the input text may contain sensitive information.",
            )
        if draft_of is not None:
            seconds, ratio = draft_of.seconds or 5, draft_of.data["ratio"]
        else:
            seconds, ratio = body.get("duration", 5), body.get("ratio", "16:9")
        resolution = body.get("resolution", "720p")
        images = [i for i in items if i.get("type") == "image_url"]
        if ratio == "adaptive":
            ratio = "16:9"  # the fake's images are not decoded: adaptive behaves as 16:9
        w, h = _pixels(resolution, ratio)
        passed = {
            k: body[k]
            for k in ("service_tier", "execution_expires_after", "seed", "return_last_frame", "draft", "watermark")
            if k in body
        }
        job = self.new_job(
            prompt,
            seconds=seconds,
            size=f"{w}x{h}",
            callback_url=body.get("callback_url"),
            model=body["model"],
            resolution=resolution,
            ratio=ratio,
            image=images[0]["image_url"]["url"] if images else None,
            roles=[i.get("role") for i in items if i.get("type") in ROLES],
            draft_task_id=draft_of.id if draft_of else None,
            stay_queued="[queued]" in prompt,
            **passed,
        )
        if "[filtered]" in prompt:
            job.error = "The output video may contain sensitive information."
            job.data["fail_code"] = "OutputVideoSensitiveContentDetected.PolicyViolation"
        rec.status = 200
        return JSONResponse({"id": job.id})

    async def _get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_KEY):
            return refusal
        job = self.jobs.get(request.path_params["id"])
        if refusal := await self.poll_fault(job, rec):
            return refusal
        if job is None or job.id in self.deleted:
            return self.reject(rec, "ResourceNotFound", "the task does not exist", 404)
        rec.status = 200
        return JSONResponse(self._advance(job))

    async def _list(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_KEY):
            return refusal
        now = time.monotonic()
        if self.list_qps is not None and now - self._last_list < 1.0 / self.list_qps:
            return self.reject(rec, "RateLimitExceeded.EndpointRPMExceeded", "list requests exceed 1 QPS", 429)
        self._last_list = now
        q = request.query_params
        try:
            page_num, page_size = int(q.get("page_num", "1")), int(q.get("page_size", "10"))
        except ValueError:
            return self.reject(rec, "InvalidParameter", "page_num/page_size must be integers")
        if not (1 <= page_num <= 500 and 1 <= page_size <= 500):
            return self.reject(rec, "InvalidParameter", "page_num/page_size out of range")
        ids = q.getlist("filter.task_ids")
        rec.query = {**rec.query, "filter.task_ids": ",".join(ids)}  # all of them, for assertions
        jobs = [j for j in self.jobs.values() if j.id not in self.deleted and (not ids or j.id in ids)]
        for job in jobs:  # a list answers what each task's own GET would (faults included)
            if refusal := await self.poll_fault(job, rec):
                return refusal
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        items = [self._advance(j) for j in jobs[(page_num - 1) * page_size : page_num * page_size]]
        status = q.get("filter.status")
        if status:
            items = [i for i in items if i["status"] == status]
        rec.status = 200
        return JSONResponse({"items": items, "total": len(jobs)})

    async def _delete(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_KEY):
            return refusal
        job = self.jobs.get(request.path_params["id"])
        if job is None or job.id in self.deleted:
            return self.reject(rec, "ResourceNotFound", "the task does not exist", 404)
        if job.state == "queued":
            job.state = "cancelled"  # no callback for cancelled (reference 2.6)
            job.data["updated_at"] = time.time()
        elif job.state == "running":
            return self.reject(
                rec, "InvalidParameter", "a running task cannot be cancelled", 400, param="id"
            )  # (unconfirmed) the code and status Ark refuses with
        else:
            self.deleted.add(job.id)  # a finished task's record is deleted
        rec.status = 200
        return JSONResponse({})

    async def _frame(self, request: Request) -> Response:
        rec = await self.record(request)
        job = self.jobs.get(request.path_params["id"].removesuffix(".png"))
        if job is None or job.state != "succeeded" or not job.data.get("return_last_frame"):
            rec.status = 404
            return Response(b"not found", status_code=404)
        rec.status = 200
        return Response(self.last_frame_bytes(job), media_type="image/png")

    def last_frame_bytes(self, job: FakeJob) -> bytes:
        """The PNG a ``return_last_frame`` job serves as its ``last_frame_url``."""
        return tiny_png(64, 36)
