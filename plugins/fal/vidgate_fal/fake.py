"""A fake fal queue (vendor-protocols-2026 §2.12, §3.3) on :class:`vidgate.fakekit.FakeVendor`.

Speaks fal's queue protocol: ``POST /{app id}`` (``?fal_webhook=``), ``GET
/{owner}/{name}/requests/{id}/status``, ``GET .../requests/{id}`` (the result),
``PUT .../requests/{id}/cancel``; ``Authorization: Key <key>``; errors as
``{"detail": ...}`` (422 validation errors as FastAPI's ``[{loc, msg, type}]``). Status,
result and cancel URLs use the app's ``owner/name`` root without its subpath, as fal's
answers do. It knows a few apps (:data:`APPS`) with their own input rules, so a request
the real app would refuse is refused here too; other app ids are 404.

Webhooks are signed as fal signs them (§3.2), with the fake's own ED25519 key pair, whose
public key it serves as a JWKS at ``GET /.well-known/jwks.json`` (:attr:`FakeFal.jwks_url`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeJob, FakeVendor


@attrs.frozen
class AppSchema:
    """What one fake fal app accepts: its image input, and allowed values per field
    (as the app types them); ``default_seconds`` is what it makes without a duration."""

    image: str | None = None
    fields: dict[str, tuple[Any, ...]] = attrs.field(factory=dict)
    duration: str | None = "duration"
    default_seconds: int = 5


_KLING = {"duration": ("5", "10"), "aspect_ratio": ("16:9", "9:16", "1:1")}
APPS: dict[str, AppSchema] = {
    "fal-ai/kling-video/v2.1/master/text-to-video": AppSchema(fields=_KLING),
    "fal-ai/kling-video/v2.1/master/image-to-video": AppSchema(image="image_url", fields=_KLING),
    "fal-ai/kling-video/v2.1/pro/image-to-video": AppSchema(image="image_url", fields={"duration": ("5", "10")}),
    "fal-ai/minimax/hailuo-02/standard/text-to-video": AppSchema(fields={"duration": ("6", "10")}, default_seconds=6),
    "fal-ai/minimax/hailuo-02/standard/image-to-video": AppSchema(
        image="image_url", fields={"duration": ("6", "10")}, default_seconds=6
    ),
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": AppSchema(
        fields={"duration": ("5", "10"), "resolution": ("480p", "720p", "1080p")}
    ),
    "fal-ai/bytedance/seedance/v1/pro/image-to-video": AppSchema(
        image="image_url", fields={"duration": ("5", "10"), "resolution": ("480p", "720p", "1080p")}
    ),
    "fal-ai/pika/v2.1/text-to-video": AppSchema(fields={"duration": (5,), "resolution": ("720p", "1080p")}),
    "fal-ai/pika/v2.1/image-to-video": AppSchema(
        image="image_url", fields={"duration": (5,), "resolution": ("720p", "1080p")}
    ),
    "fal-ai/pika/v2.2/text-to-video": AppSchema(fields={"duration": (5, 10), "resolution": ("720p", "1080p")}),
    "fal-ai/veo3/fast": AppSchema(fields={"duration": ("8s",), "aspect_ratio": ("16:9", "9:16")}, default_seconds=8),
    "fal-ai/veo3/fast/image-to-video": AppSchema(image="image_url", fields={"duration": ("8s",)}, default_seconds=8),
    "fal-ai/wan/v2.2-a14b/text-to-video": AppSchema(duration=None, fields={"resolution": ("480p", "580p", "720p")}),
    "fal-ai/wan/v2.2-a14b/image-to-video": AppSchema(
        image="image_url", duration=None, fields={"resolution": ("480p", "580p", "720p")}
    ),
}


def _root(app: str) -> str:
    return "/".join(app.split("/")[:2])


class FakeFal(FakeVendor):
    """The fake queue. ``error_in_status`` (default True): a failed request's status is
    ``COMPLETED`` with ``error`` (as fal-client reads it); False: the status is a plain
    ``COMPLETED`` and the result GET answers the error (the reference's other reading)."""

    vendor = "fal"
    status_words = {
        "queued": "IN_QUEUE",
        "running": "IN_PROGRESS",
        "succeeded": "COMPLETED",
        "failed": "COMPLETED",
        "unknown": "RETICULATING",
    }

    def __init__(self, *, error_in_status: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error_in_status = error_in_status
        #: The key the fake signs its webhooks with; its public half is in the JWKS.
        self.signing_key = Ed25519PrivateKey.generate()
        self.user_id = "fake-user-0001"

    @property
    def jwks_url(self) -> str:
        """Where the fake serves its public key (a fal channel's ``options.webhook_jwks_url``)."""
        return f"{self.url}/.well-known/jwks.json"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/.well-known/jwks.json", self.jwks, methods=["GET"]),
            Route("/{owner}/{alias}/requests/{rid}/status", self.status, methods=["GET"]),
            Route("/{owner}/{alias}/requests/{rid}/cancel", self.cancel, methods=["PUT"]),
            Route("/{owner}/{alias}/requests/{rid}", self.result, methods=["GET"]),
            Route("/{app:path}", self.submit, methods=["POST"]),
        ]

    async def jwks(self, request: Request) -> Response:
        rec = await self.record(request)
        rec.status = 200
        public = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(public).decode().rstrip("=")
        return JSONResponse({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "fake-1", "use": "sig"}]})

    def error(self, kind: str, message: str, status: int) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    def new_job_id(self) -> str:
        return str(uuid.uuid4())

    def creates(self) -> list[Any]:
        return [r for r in self.requests if r.method == "POST"]

    async def submit(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Key {self.secret}", message="No user found for Key ID and Secret"):
            return refusal
        app = request.path_params["app"].strip("/")
        schema = APPS.get(app)
        if schema is None:
            return self.reject(rec, "rejected", f"Application '{app}' not found", 404)
        body = rec.json if isinstance(rec.json, dict) else None
        if body is None:
            return self.respond(rec, {"detail": [{"loc": ["body"], "msg": "field required", "type": "missing"}]}, 422)
        if refusal := self.create_fault(body.get("prompt"), rec):
            return refusal
        errors = []
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            errors.append({"loc": ["body", "prompt"], "msg": "field required", "type": "missing"})
        if schema.image and not isinstance(body.get(schema.image), str):
            errors.append({"loc": ["body", schema.image], "msg": "field required", "type": "missing"})
        for field, allowed in schema.fields.items():
            if field in body and body[field] not in allowed:
                errors.append(
                    {
                        "loc": ["body", field],
                        "msg": f"Input should be {' or '.join(repr(a) for a in allowed)}",
                        "type": "literal_error",
                    }
                )
        if errors:
            return self.respond(rec, {"detail": errors}, 422)
        seconds = schema.default_seconds
        if schema.duration and schema.duration in body:
            seconds = int(str(body[schema.duration]).removesuffix("s"))
        image = body.get(schema.image) if schema.image else None
        job = self.new_job(
            body["prompt"],
            seconds=seconds,
            callback_url=rec.query.get("fal_webhook"),
            app=app,
            input=body,
            image=image,
        )
        base = f"{self.base_url}/{_root(app)}/requests/{job.id}"
        rec.status = 200
        return JSONResponse(
            {
                "request_id": job.id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
        )

    def _job(self, request: Request) -> FakeJob | None:
        job = self.jobs.get(request.path_params["rid"])
        root = f"{request.path_params['owner']}/{request.path_params['alias']}"
        if job is None or _root(job.data["app"]) != root:
            return None
        return job

    async def status(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Key {self.secret}", message="No user found for Key ID and Secret"):
            return refusal
        job = self._job(request)
        if job is None:
            return self.reject(rec, "rejected", "Request not found", 404)
        if refusal := await self.poll_fault(job, rec):
            return refusal
        state = job.state if job.data.get("cancelled") else self.advance(job)
        rec.status = 200
        if state == "queued":
            return JSONResponse({"status": "IN_QUEUE", "queue_position": 0, "response_url": ""})
        if state in ("running", "unknown"):
            return JSONResponse({"status": self.word(state), "logs": []})
        out: dict[str, Any] = {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.5}}
        if state == "failed" and self.error_in_status:
            out.update(error=job.error, error_type="runner_error")
        return JSONResponse(out)

    async def result(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Key {self.secret}", message="No user found for Key ID and Secret"):
            return refusal
        job = self._job(request)
        if job is None:
            return self.reject(rec, "rejected", "Request not found", 404)
        if job.state in ("queued", "running"):
            return self.reject(rec, "rejected", "Request is still in progress", 400)
        if job.state == "failed":
            rec.status = 422
            return JSONResponse({"detail": job.error}, status_code=422, headers={"X-Fal-Error-Type": "runner_error"})
        rec.status = 200
        data = self.result_bytes(job)
        return JSONResponse(
            {
                "video": {"url": self.result_url(job), "content_type": "video/mp4", "file_size": len(data)},
                "seed": 42,
            }
        )

    async def cancel(self, request: Request) -> Response:
        rec = await self.record(request)
        if refusal := self.check_auth(rec, f"Key {self.secret}", message="No user found for Key ID and Secret"):
            return refusal
        job = self._job(request)
        if job is None:
            return self.respond(rec, {"status": "NOT_FOUND"}, 404)
        if job.state in ("succeeded", "failed"):
            return self.respond(rec, {"status": "ALREADY_COMPLETED"}, 400)
        job.data["cancelled"] = True
        job.held = True  # a cancelled request never completes in the fake
        return self.respond(rec, {"status": "CANCELLATION_REQUESTED"}, 202)

    def set_state(self, job: FakeJob, state: str, error: str | None = None) -> None:
        # fal's webhook fires once, when the request ends.
        callback, job.callback_url = job.callback_url, None
        super().set_state(job, state, error)
        job.callback_url = callback
        if callback and state in ("succeeded", "failed"):
            self.send_signed_webhook(callback, job)

    def signed_webhook(
        self, job: FakeJob, *, timestamp: int | None = None, key: Ed25519PrivateKey | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a webhook about ``job``, signed as fal signs them (with
        :attr:`signing_key` unless ``key``; now unless ``timestamp``)."""
        body = json.dumps(self.callback_body(job)).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = "\n".join([job.id, self.user_id, stamp, hashlib.sha256(body).hexdigest()]).encode()
        signature = (key or self.signing_key).sign(message).hex()
        headers = {
            "X-Fal-Webhook-Request-Id": job.id,
            "X-Fal-Webhook-User-Id": self.user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature,
        }
        return body, headers

    def send_signed_webhook(self, url: str, job: FakeJob) -> None:
        """POST a signed webhook about ``job`` to ``url`` (in the background, as fal does)."""
        body, headers = self.signed_webhook(job)
        # send_callback re-encodes the object with json.dumps: the same bytes as signed.
        self.send_callback(url, json.loads(body), headers=headers)

    def callback_body(self, job: FakeJob) -> Any:
        ok = job.state == "succeeded"
        return {
            "request_id": job.id,
            "gateway_request_id": job.id,
            "status": "OK" if ok else "ERROR",
            "payload": {"video": {"url": self.result_url(job)}} if ok else None,
            "error": None if ok else job.error,
        }
