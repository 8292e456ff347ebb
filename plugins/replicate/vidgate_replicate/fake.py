"""A fake Replicate (vendor-protocols-2026 §2.13, §3.4) on :class:`vidgate.fakekit.FakeVendor`.

``POST /v1/models/{owner}/{name}/predictions`` and ``POST /v1/predictions {version}``,
``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``; Bearer auth; errors
as RFC 7807 problem details; predictions as ``{id, model, version, status, input, output,
error, logs, metrics{predict_time}, urls, created_at, started_at, completed_at}``;
webhooks (``webhook`` + ``webhook_events_filter``) signed per Standard Webhooks with
:attr:`FakeReplicate.webhook_secret`. Headers are recorded, so tests can prove the
plugin never sends ``Prefer: wait`` (which the fake does not emulate). It knows a few
models (:data:`MODELS`) with their input rules; other models are 404.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
from typing import Any

import attrs
from standardwebhooks.webhooks import Webhook
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor


@attrs.frozen
class ModelSchema:
    image: str | None = "image"
    image_required: bool = False
    fields: dict[str, tuple[Any, ...]] = attrs.field(factory=dict)
    duration: str | None = "duration"
    default_seconds: int = 5
    version: str = ""


MODELS: dict[str, ModelSchema] = {
    "bytedance/seedance-1-pro": ModelSchema(
        fields={"duration": (5, 10), "resolution": ("480p", "1080p")}, version="5b6f2a" + "0" * 58
    ),
    "kwaivgi/kling-v2.1": ModelSchema(image="start_image", image_required=True, fields={"duration": (5, 10)}),
    "minimax/hailuo-02": ModelSchema(
        image="first_frame_image",
        fields={"duration": (6, 10), "resolution": ("512p", "768p", "1080p")},
        default_seconds=6,
    ),
    "google/veo-3": ModelSchema(fields={"duration": (8,), "resolution": ("720p", "1080p")}, default_seconds=8),
    "wan-video/wan-2.2-i2v-fast": ModelSchema(image_required=True, duration=None),
}


#: What Replicate answers (HTTP 401) a missing or wrong token.
BAD_TOKEN = "You did not pass a valid authentication token"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class FakeReplicate(FakeVendor):
    vendor = "Replicate"
    status_words = {
        "queued": "starting",
        "running": "processing",
        "succeeded": "succeeded",
        "failed": "failed",
        "unknown": "reticulating",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/models/{owner}/{name}/predictions", self.create_for_model, methods=["POST"]),
            Route("/v1/predictions", self.create_for_version, methods=["POST"]),
            Route("/v1/predictions/{pid}", self.get, methods=["GET"]),
            Route("/v1/predictions/{pid}/cancel", self.cancel, methods=["POST"]),
        ]

    def error(self, kind: str, message: str, status: int) -> Response:
        titles = {401: "Unauthenticated", 404: "Not found", 422: "Input validation failed", 429: "Too many requests"}
        return JSONResponse(
            {
                "type": f"https://replicate.com/docs/errors#{status}",
                "title": titles.get(status, "Error"),
                "status": status,
                "detail": message,
            },
            status_code=status,
            media_type="application/problem+json",
        )

    def new_job_id(self) -> str:
        return secrets.token_hex(13)[:26]  # Replicate ids: 26 lower-case alphanumerics

    def creates(self) -> list[Any]:
        return [r for r in self.requests if r.method == "POST" and not r.path.endswith("/cancel")]

    async def create_for_model(self, request: Request) -> Response:
        rec = await self.record(request)
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        return await self._create(request, rec, model)

    async def create_for_version(self, request: Request) -> Response:
        rec = await self.record(request)
        version = rec.json.get("version") if isinstance(rec.json, dict) else None
        model = next((m for m, s in MODELS.items() if s.version and s.version == version), None)
        if model is None:
            return self.reject(rec, "rejected", "- version: Invalid version or not permitted", 422)
        return await self._create(request, rec, model)

    async def _create(self, request: Request, rec: Any, model: str) -> Response:
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_TOKEN):
            return refusal
        schema = MODELS.get(model)
        if schema is None:
            return self.reject(rec, "rejected", f"The requested resource {model} could not be found.", 404)
        body = rec.json if isinstance(rec.json, dict) else {}
        inp = body.get("input")
        if not isinstance(inp, dict):
            return self.reject(rec, "rejected", "- input: Invalid type. Expected: object", 422)
        if refusal := self.create_fault(inp.get("prompt"), rec):
            return refusal
        problems = []
        if not isinstance(inp.get("prompt"), str) or not inp["prompt"]:
            problems.append("- input.prompt: prompt is required")
        if schema.image_required and not isinstance(inp.get(schema.image or ""), str):
            problems.append(f"- input.{schema.image}: {schema.image} is required")
        for field, allowed in schema.fields.items():
            if field in inp and inp[field] not in allowed:
                choices = ", ".join(str(a) for a in allowed)
                problems.append(f"- input.{field}: {field} must be one of the following: {choices}")
        if problems:
            return self.reject(rec, "rejected", "\n".join(problems), 422)
        seconds = int(inp.get(schema.duration or "", schema.default_seconds) or schema.default_seconds)
        job = self.new_job(
            inp["prompt"],
            seconds=seconds,
            callback_url=body.get("webhook"),
            model=model,
            version=schema.version or "",
            input=inp,
            image=inp.get(schema.image) if schema.image else None,
            events=body.get("webhook_events_filter") or ["start", "output", "logs", "completed"],
            created_at=_now(),
        )
        rec.status = 201
        return JSONResponse(self.prediction(job), status_code=201)

    def prediction(self, job: FakeJob) -> dict[str, Any]:
        state = job.state
        word = "canceled" if job.data.get("canceled") else self.word(state)
        out: dict[str, Any] = {
            "id": job.id,
            "model": job.data["model"],
            "version": job.data["version"],
            "status": word,
            "input": job.data["input"],
            "output": self.result_url(job) if state == "succeeded" else None,
            "error": job.error if state == "failed" else None,
            "logs": "",
            "metrics": {"predict_time": 12.5} if state in ("succeeded", "failed") else {},
            "data_removed": False,
            "created_at": job.data["created_at"],
            "started_at": job.data.get("started_at"),
            "completed_at": job.data.get("completed_at"),
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{job.id}",
                "cancel": f"{self.base_url}/v1/predictions/{job.id}/cancel",
                "stream": f"{self.base_url}/v1/predictions/{job.id}/stream",
            },
        }
        return out

    async def get(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_TOKEN):
            return refusal
        job = self.jobs.get(request.path_params["pid"])
        if job is None:
            return self.reject(rec, "rejected", "The requested resource could not be found.", 404)
        if refusal := await self.poll_fault(job, rec):
            return refusal
        if not job.data.get("canceled"):
            state = self.advance(job)
            if state == "unknown":
                rec.status = 200
                return JSONResponse({**self.prediction(job), "status": self.word("unknown")})
        rec.status = 200
        return JSONResponse(self.prediction(job))

    async def cancel(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Bearer {self.secret}", message=BAD_TOKEN):
            return refusal
        job = self.jobs.get(request.path_params["pid"])
        if job is None:
            return self.reject(rec, "rejected", "The requested resource could not be found.", 404)
        if job.state in ("queued", "running"):
            job.data["canceled"] = True
            job.held = True
            job.data["completed_at"] = _now()
        rec.status = 200
        return JSONResponse(self.prediction(job))

    def set_state(self, job: FakeJob, state: str, error: str | None = None) -> None:
        callback, job.callback_url = job.callback_url, None
        super().set_state(job, state, error)
        job.callback_url = callback
        if state == "running":
            job.data.setdefault("started_at", _now())
        if state in ("succeeded", "failed"):
            job.data["completed_at"] = _now()
        event = {"running": "start", "succeeded": "completed", "failed": "completed"}.get(state)
        if callback and event in job.data["events"]:
            self.send_signed_webhook(callback, job)

    def send_signed_webhook(self, url: str, job: FakeJob, secret: str | None = None) -> dict[str, str]:
        """POST the prediction to ``url`` signed per Standard Webhooks (with ``secret``,
        default :attr:`webhook_secret`); returns the body and headers sent."""
        body = json.dumps(self.prediction(job))
        msg_id = f"msg_{secrets.token_hex(12)}"
        now = datetime.datetime.now(datetime.UTC)
        signature = Webhook(secret or self.webhook_secret).sign(msg_id, now, body)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        self.send_callback(url, json.loads(body), headers=headers)
        return {"body": body, **headers}
