"""A faithful local fake of Google Veo, on both surfaces, for tests.

It speaks what vendor-protocols.md §3 describes and what the official ``google-genai``
SDK expects (it passes the SDK's ``generate_videos`` / ``operations.get`` /
``files.download`` round trip):

* Gemini API: ``x-goog-api-key`` (or ``?key=``) checked: a wrong key is
  ``400 INVALID_ARGUMENT`` with an ``ErrorInfo`` reason ``API_KEY_INVALID``, a missing key
  ``403 PERMISSION_DENIED``. ``POST /v1beta/models/{m}:predictLongRunning`` answers
  ``{"name": "models/{m}/operations/{12 lowercase alnum}"}``; ``GET /v1beta/{name}``
  answers the operation; the result URI is
  ``{url}/v1beta/files/{id}:download?alt=media`` (key checked; optionally a 302 to
  ``/_storage/...`` like production's redirect to a storage host).
* Vertex AI: ``POST /token`` implements the service-account JWT bearer grant and
  verifies the RS256 signature against accounts made by :meth:`FakeVeo.service_account`;
  ``Authorization: Bearer`` checked; ``POST /v1/projects/{p}/locations/{l}/publishers/
  google/models/{m}:predictLongRunning`` and ``...:fetchPredictOperation``; results inline
  ``bytesBase64Encoded`` or (``vertex_result = "gcs"`` or ``storageUri``) ``gcsUri``.
* Vertex also takes a pre-minted ``Authorization: Bearer`` token registered with
  :meth:`FakeVeo.issue_token` (channels with ``credentials.access_token``).
* Strict validation of the create body: one instance, inline images only on Gemini,
  ``durationSeconds`` (int or ``"8"``) within the model's set, ``1080p``/``4k`` only with
  8 s, known parameter names only, at most 3 ``referenceImages`` of ``referenceType``
  ``asset``, an extension ``video`` that is an inline MP4, 8 s for references and
  extensions (vendor-protocols-2026 §2.2).
* Retired models (:data:`vidgate_veo.models.RETIRED`, plus :attr:`FakeVeo.retired`)
  answer 404 ``NOT_FOUND`` as Google does: "... is no longer available" on the Gemini
  API, "Publisher Model ... was not found or your project does not have access to it"
  on Vertex.
* Switches: ``outcome`` (``"success"``, ``"filtered"``, ``"error"``), ``rate_limit_times``
  (HTTP 429 ``RESOURCE_EXHAUSTED`` N times), ``server_error_times`` (HTTP 500 N times),
  ``permission_denied`` (HTTP 403), ``redirect_downloads``, ``gemini_inline``,
  ``polls_to_finish``. Every request is recorded in :attr:`FakeVeo.requests`.

Use it in your own tests::

    from vidgate_veo.fake import FakeVeo

    fake = FakeVeo(api_key="k")
    async with fake.serve():
        ...  # channel {"vendor": "veo", "base_url": fake.url, "credentials": {"api_key": "k"}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
import time
import uuid
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from vidgate.fakekit import FakeVendor
from vidgate.testing import tiny_mp4

from .models import FAMILIES, RETIRED

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
FILTER_REASON = (
    "We encountered an issue with the audio for your prompt. You have not been charged. Please try a different prompt."
)
KNOWN_PARAMETERS = {
    "sampleCount",
    "durationSeconds",
    "aspectRatio",
    "resolution",
    "personGeneration",
    "negativePrompt",
    "enhancePrompt",
    "seed",
    "generateAudio",
    "storageUri",
    "fps",
    "pubsubTopic",
    "compressionQuality",
    "resizeMode",
}
_ALNUM = string.ascii_lowercase + string.digits


def sample_video() -> bytes:
    """The fake's video: a small valid H.264 MP4 (64x36, 8 frames)."""
    return tiny_mp4(64, 36)


def _rand_id(n: int = 12) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def google_error(http: int, status: str, message: str, details: list[Any] | None = None) -> JSONResponse:
    """Google's error body ``{"error": {code, message, status, details?}}``."""
    err: dict[str, Any] = {"code": http, "message": message, "status": status}
    if details:
        err["details"] = details
    return JSONResponse({"error": err}, status_code=http)


def make_service_account(
    token_uri: str, project_id: str = "fake-project", name: str = "vidgate-test"
) -> tuple[dict[str, Any], rsa.RSAPublicKey]:
    """A service-account key file (as a dict) with a fresh RSA key, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"{name}@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return account, key.public_key()


@attrs.define
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # decoded JSON, a form dict, or None
    status: int | None = None  # the HTTP status answered

    @property
    def json(self) -> Any:
        return self.body


@attrs.define
class Operation:
    name: str
    surface: str
    model: str
    outcome: str
    result_mode: str  # "uri", "inline" or "gcs"
    polls: int = 0
    file_id: str = ""


class FakeVeo(FakeVendor):
    """State and switches of the fake; :attr:`app` is the Starlette app to serve.

    A :class:`vidgate.fakekit.FakeVendor`: prompt keywords inject faults on the Gemini surface.
    """

    vendor = "Google"

    def __init__(self, *, api_key: str = "test-key", polls_to_finish: int = 2, video: bytes | None = None) -> None:
        self.api_key = api_key
        self.video = video if video is not None else sample_video()
        super().__init__(secret=api_key, polls_to_finish=polls_to_finish, result_bytes=self.video)
        self.requests: list[Recorded] = []  # type: ignore[assignment]
        self.operations: dict[str, Operation] = {}
        #: Vendor model ids this fake answers 404 for (Google's retirements by default).
        self.retired: set[str] = set(RETIRED)
        self.files: dict[str, bytes] = {}
        # switches
        self.outcome = "success"
        #: The ``error.message`` of an operation whose outcome is ``"error"``.
        self.error_message = "Internal error encountered while generating the video."
        self.vertex_result = "inline"
        self.gemini_inline = False
        self.redirect_downloads = False
        self.rate_limit_times = 0
        self.server_error_times = 0
        self.permission_denied = False
        # Vertex auth
        self.accounts: dict[str, rsa.RSAPublicKey] = {}
        self.tokens: dict[str, float] = {}
        self._sign_key = secrets.token_bytes(16)

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._handle, methods=["GET", "POST", "DELETE"])]

    def error(self, kind: str, message: str, status: int) -> Response:
        """Base-class faults in Google's error envelope."""
        if kind == "rate_limit":
            return google_error(
                429,
                "RESOURCE_EXHAUSTED",
                message,
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}],
            )
        gstatus = {"server": "INTERNAL", "auth": "PERMISSION_DENIED"}.get(kind, "INVALID_ARGUMENT")
        return google_error(status, gstatus, message)

    # -- set-up helpers ------------------------------------------------------------------

    def service_account(self, project_id: str = "fake-project", name: str = "vidgate-test") -> dict[str, Any]:
        """A new test service account whose ``token_uri`` is this fake (serve it first)."""
        if not self.url:
            raise RuntimeError("serve the fake before creating service accounts (token_uri needs its URL)")
        account, public = make_service_account(f"{self.url}/token", project_id, name)
        self.trust(account["client_email"], public)
        return account

    def issue_token(self, token: str | None = None, lifetime: float = 3599) -> str:
        """Register a bearer token (minted outside the gateway) valid for ``lifetime`` s."""
        token = token or "ya29.fake-" + secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + lifetime
        return token

    def trust(self, client_email: str, public_key: rsa.RSAPublicKey) -> None:
        """Accept JWTs from ``client_email`` signed by ``public_key``."""
        self.accounts[client_email] = public_key

    def calls(self, fragment: str, method: str | None = None) -> list[Recorded]:
        """Recorded requests whose path contains ``fragment`` (and with ``method``)."""
        return [r for r in self.requests if fragment in r.path and (method is None or r.method == method)]

    # -- dispatch ------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        raw = await request.body()
        body: Any = None
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = dict((await request.form()).items())
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        rec = Recorded(
            request.method, path, dict(request.query_params), {k.lower(): v for k, v in request.headers.items()}, body
        )
        self.requests.append(rec)
        resp = await self._route(request, path, body)
        rec.status = resp.status_code
        return resp

    async def _route(self, request: Request, path: str, body: Any) -> Response:
        if path == "/token" and request.method == "POST":
            return self._token(body)
        if m := re.fullmatch(r"/_storage/([a-z0-9]+)", path):
            return self._storage(m[1], request)
        if m := re.fullmatch(r"/(?:v1beta|v1)/files/([a-z0-9]+):download", path):
            return self._gemini_download(m[1], request)
        if m := re.fullmatch(
            r"/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):(\w+)", path
        ):
            return await self._vertex(request, body, m[2], m[3], m[4], m[5])
        if m := re.fullmatch(r"/(v1beta|v1)/models/([^/:]+):predictLongRunning", path):
            return self._gemini(request, body, create=m[2])
        if m := re.fullmatch(r"/(v1beta|v1)/(models/[^/:]+/operations/[a-z0-9]+)", path):
            if refusal := await self.poll_fault(self.jobs.get(m[2])):
                return refusal
            return self._gemini(request, body, operation=m[2])
        return google_error(404, "NOT_FOUND", f"The requested URL {path} was not found on this server.")

    def _injected(self) -> Response | None:
        if self.rate_limit_times > 0:
            self.rate_limit_times -= 1
            return google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}],
            )
        if self.server_error_times > 0:
            self.server_error_times -= 1
            return google_error(500, "INTERNAL", "An internal error has occurred. Please retry.")
        if self.permission_denied:
            return google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
        return None

    # -- Gemini API ----------------------------------------------------------------------

    def _gemini_key_error(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if not hmac.compare_digest(key, self.api_key):
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        return None

    def _gemini(
        self, request: Request, body: Any, *, create: str | None = None, operation: str | None = None
    ) -> Response:
        if err := self._gemini_key_error(request):
            return err
        if err := self._injected():
            return err
        if create is not None:
            if request.method != "POST":
                return google_error(405, "METHOD_NOT_ALLOWED", "Use POST")
            if create in self.retired:
                return google_error(
                    404,
                    "NOT_FOUND",
                    f"models/{create} is no longer available. Please migrate to a newer model.",
                )
            if err := self._validate(body, create, "gemini"):
                return err
            instance, params = body["instances"][0], body.get("parameters") or {}
            if refusal := self.create_fault(instance.get("prompt")):
                return refusal
            name = f"models/{create}/operations/{_rand_id()}"
            self._job(name, instance, params)
            self.operations[name] = Operation(
                name, "gemini", create, self.outcome, "inline" if self.gemini_inline else "uri"
            )
            return JSONResponse({"name": name})
        assert operation is not None
        if request.method != "GET":
            return google_error(405, "METHOD_NOT_ALLOWED", "Use GET")
        op = self.operations.get(operation)
        if op is None or op.surface != "gemini":
            return google_error(404, "NOT_FOUND", f"Operation {operation} not found.")
        return JSONResponse(self._advance(op))

    def _gemini_download(self, file_id: str, request: Request) -> Response:
        if err := self._gemini_key_error(request):
            return err
        if request.query_params.get("alt") != "media":
            return google_error(400, "INVALID_ARGUMENT", "Only alt=media downloads are supported by this fake.")
        if file_id not in self.files:
            return google_error(404, "NOT_FOUND", f"File files/{file_id} not found.")
        if self.redirect_downloads:
            sig = hmac.new(self._sign_key, file_id.encode(), hashlib.sha256).hexdigest()
            return RedirectResponse(f"{self.url}/_storage/{file_id}?sig={sig}", status_code=302)
        return Response(self.files[file_id], media_type="video/mp4")

    def _storage(self, file_id: str, request: Request) -> Response:
        sig = hmac.new(self._sign_key, file_id.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.query_params.get("sig", ""), sig) or file_id not in self.files:
            return Response("Forbidden", status_code=403)
        return Response(self.files[file_id], media_type="video/mp4")

    # -- Vertex AI -----------------------------------------------------------------------

    def _token(self, form: Any) -> Response:
        def refuse(error: str, description: str) -> JSONResponse:
            return JSONResponse({"error": error, "error_description": description}, status_code=400)

        if not isinstance(form, dict) or form.get("grant_type") != GRANT_TYPE:
            return refuse("unsupported_grant_type", "Invalid grant_type.")
        parts = str(form.get("assertion", "")).split(".")
        if len(parts) != 3:
            return refuse("invalid_grant", "Invalid JWT: not three segments.")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            return refuse("invalid_grant", "Invalid JWT: undecodable segment.")
        if header.get("alg") != "RS256":
            return refuse("invalid_grant", "Invalid JWT: alg must be RS256.")
        public = self.accounts.get(claims.get("iss"))
        if public is None:
            return refuse("invalid_grant", "Invalid JWT Signature.")
        try:
            public.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return refuse("invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        # google-auth always signs for Google's canonical endpoint; the plugin signs for
        # the key file's token_uri. Google accepts its canonical URI; the fake both.
        if claims.get("aud") not in (f"{self.url}/token", GOOGLE_TOKEN_URI):
            return refuse("invalid_grant", "Invalid JWT: aud must be the token URI.")
        if SCOPE not in str(claims.get("scope", "")).split():
            return refuse("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp <= now or iat > now + 60 or exp - iat > 3600:
            return refuse(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            )
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.tokens[token] = now + 3599
        return JSONResponse({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _job(self, name: str, instance: dict[str, Any], params: dict[str, Any]) -> None:
        aspect = params.get("aspectRatio", "16:9")
        resolution = params.get("resolution", "720p")
        sizes = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
        w, h = sizes.get(resolution, (1280, 720))
        self.new_job(
            instance.get("prompt"),
            seconds=int(params.get("durationSeconds", 8)),
            size=f"{w}x{h}" if aspect == "16:9" else f"{h}x{w}",
            job_id=name,
            image=instance.get("image"),
            last_frame=instance.get("lastFrame"),
            references=instance.get("referenceImages"),
            video=instance.get("video"),
            parameters=params,
        )

    async def _vertex(
        self, request: Request, body: Any, project: str, location: str, model: str, verb: str
    ) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if self.tokens.get(token, 0) < time.time():
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )
        if request.method != "POST":
            return google_error(405, "METHOD_NOT_ALLOWED", "Use POST")
        if err := self._injected():
            return err
        resource = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
        if verb == "predictLongRunning":
            if model in self.retired:
                return google_error(
                    404,
                    "NOT_FOUND",
                    f"Publisher Model `{resource}` was not found or your project does not have access to it. "
                    "Please ensure you are using a valid model version.",
                )
            if err := self._validate(body, model, "vertex"):
                return err
            instance, params = body["instances"][0], body.get("parameters") or {}
            if refusal := self.create_fault(instance.get("prompt")):
                return refusal
            mode = "gcs" if self.vertex_result == "gcs" or params.get("storageUri") else "inline"
            name = f"{resource}/operations/{uuid.uuid4()}"
            self._job(name, instance, params)
            self.operations[name] = Operation(name, "vertex", model, self.outcome, mode)
            return JSONResponse({"name": name})
        if verb == "fetchPredictOperation":
            op_name = body.get("operationName") if isinstance(body, dict) else None
            if refusal := await self.poll_fault(self.jobs.get(op_name) if isinstance(op_name, str) else None):
                return refusal
            op = self.operations.get(op_name) if isinstance(op_name, str) else None
            if op is None or op.surface != "vertex" or not op.name.startswith(resource + "/"):
                return google_error(404, "NOT_FOUND", f"Operation {op_name!r} not found.")
            return JSONResponse(self._advance(op))
        return google_error(404, "NOT_FOUND", f"Unknown method {verb}.")

    # -- shared --------------------------------------------------------------------------

    def _validate(self, body: Any, model: str, surface: str) -> Response | None:
        def bad(message: str) -> Response:
            return google_error(400, "INVALID_ARGUMENT", message)

        if model not in FAMILIES:
            return google_error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for predictLongRunning.",
            )
        family = FAMILIES[model]
        if not isinstance(body, dict):
            return bad("Invalid JSON payload received.")
        instances = body.get("instances")
        if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
            return bad("instances must hold exactly one instance.")
        inst = instances[0]
        if "prompt" in inst and not isinstance(inst["prompt"], str):
            return bad("instances[0].prompt must be a string.")
        for field in ("image", "lastFrame"):
            if field in inst and (err := self._check_image(inst[field], f"instances[0].{field}", surface)):
                return bad(err)
        if not inst.get("prompt") and "image" not in inst:
            return bad("A prompt or an image is required.")
        if "lastFrame" in inst and "image" not in inst:
            return bad("lastFrame requires image.")
        refs = inst.get("referenceImages")
        if refs is not None:
            if not family.reference_images:
                return bad(f"referenceImages is not supported by {model}.")
            if not isinstance(refs, list) or not 1 <= len(refs) <= family.reference_images:
                return bad(f"referenceImages must hold 1 to {family.reference_images} images.")
            for i, ref in enumerate(refs):
                where = f"instances[0].referenceImages[{i}]"
                # The REST docs write "asset"; the SDK sends its enum, "ASSET": both accepted.
                if not isinstance(ref, dict) or str(ref.get("referenceType", "")).lower() != "asset":
                    return bad(f"{where}.referenceType must be asset for {model}.")
                if err := self._check_image(ref.get("image"), f"{where}.image", surface):
                    return bad(err)
        if "video" in inst:
            if not family.extend:
                return bad(f"video (extension) is not supported by {model}.")
            if err := self._check_video(inst["video"], surface):
                return bad(err)
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            return bad("parameters must be an object.")
        unknown = set(params) - KNOWN_PARAMETERS
        if unknown:
            return bad(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'parameters'.")
        duration = params.get("durationSeconds", family.default_seconds)
        if isinstance(duration, str) and duration.isdigit():
            duration = int(duration)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in family.seconds:
            return bad(f"The value of durationSeconds for {model} must be one of {list(family.seconds)}.")
        if "aspectRatio" in params and params["aspectRatio"] not in ("16:9", "9:16"):
            return bad("aspectRatio must be 16:9 or 9:16.")
        if "resolution" in params:
            if len(family.resolutions) == 1:
                return bad(f"resolution is not supported by {model}.")
            if params["resolution"] not in family.resolutions:
                return bad(f"resolution must be one of {list(family.resolutions)}.")
            if params["resolution"] != "720p" and duration != 8:
                return bad(f"resolution {params['resolution']} requires durationSeconds 8.")
        if (refs is not None or "video" in inst) and duration != 8:
            return bad("durationSeconds must be 8 with referenceImages or video.")
        count = params.get("sampleCount", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
            return bad("sampleCount must be between 1 and 4.")
        if "personGeneration" in params and params["personGeneration"] not in (
            "dont_allow",
            "allow_adult",
            "allow_all",
        ):
            return bad("personGeneration must be dont_allow, allow_adult or allow_all.")
        if "storageUri" in params and surface != "vertex":
            return bad("storageUri is not supported in the Gemini API.")
        return None

    @staticmethod
    def _check_image(image: Any, where: str, surface: str) -> str | None:
        if not isinstance(image, dict):
            return f"{where} must be an object."
        if "gcsUri" in image:
            return None if surface == "vertex" else f"{where}.gcsUri is not supported in the Gemini API."
        data, mime = image.get("bytesBase64Encoded"), image.get("mimeType")
        if "inlineData" in image and isinstance(image["inlineData"], dict):  # the REST docs' variant
            data, mime = image["inlineData"].get("data"), image["inlineData"].get("mimeType")
        if not isinstance(data, str) or not data:
            return f"{where}.bytesBase64Encoded is required."
        if not isinstance(mime, str) or not mime.startswith("image/"):
            return f"{where}.mimeType must be an image type."
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return f"{where}.bytesBase64Encoded is not valid base64."
        return None

    @staticmethod
    def _check_video(video: Any, surface: str) -> str | None:
        where = "instances[0].video"
        if not isinstance(video, dict):
            return f"{where} must be an object."
        if "gcsUri" in video:
            return None if surface == "vertex" else f"{where}.gcsUri is not supported in the Gemini API."
        if video.get("mimeType") != "video/mp4":
            return f"{where}.mimeType must be video/mp4."
        try:
            data = base64.b64decode(str(video.get("bytesBase64Encoded") or ""), validate=True)
        except (binascii.Error, ValueError):
            return f"{where}.bytesBase64Encoded is not valid base64."
        if data[4:8] != b"ftyp":
            return f"{where} is not an MP4 file."
        return None

    def _advance(self, op: Operation) -> dict[str, Any]:
        op.polls += 1
        job = self.jobs.get(op.name)
        if job is not None:  # prompt keywords (vidgate.fakekit)
            job.polls += 1
            if job.held:
                op.polls -= 1
                return {"name": op.name, "metadata": {}}
            if job.take("fail"):
                op.outcome = "error"
        if op.polls < self.polls_to_finish:
            return {"name": op.name, "metadata": {}}  # done absent, as Google answers at first
        out: dict[str, Any] = {"name": op.name, "done": True}
        if op.outcome == "error":
            out["error"] = {"code": 13, "message": self.error_message}
            return out
        if op.outcome == "filtered":
            filt = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTER_REASON]}
            if op.surface == "gemini":
                out["response"] = {
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                    "generateVideoResponse": filt,
                }
            else:
                out["response"] = {
                    "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
                    **filt,
                }
            return out
        if op.surface == "gemini":
            if not op.file_id:
                op.file_id = _rand_id()
                self.files[op.file_id] = self.video
            if op.result_mode == "inline":
                video = {"encodedVideo": base64.b64encode(self.video).decode(), "encoding": "video/mp4"}
            else:
                video = {"uri": f"{self.url}/v1beta/files/{op.file_id}:download?alt=media"}
            out["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {"generatedSamples": [{"video": video}]},
            }
            return out
        if op.result_mode == "gcs":
            vid = {"gcsUri": f"gs://fake-veo-bucket/{op.name.rsplit('/', 1)[-1]}/sample_0.mp4", "mimeType": "video/mp4"}
        else:
            vid = {"bytesBase64Encoded": base64.b64encode(self.video).decode(), "mimeType": "video/mp4"}
        out["response"] = {
            "@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
            "videos": [vid],
        }
        return out


def create_app(**kwargs: Any) -> Starlette:
    """A fresh fake's Starlette app (the :class:`FakeVeo` is ``app.state.fake``). When you
    serve it yourself, set ``app.state.fake.url`` to the served URL (result URIs and the
    token URI use it); :meth:`FakeVeo.serve` does that for you."""
    fake = FakeVeo(**kwargs)
    fake.app.state.fake = fake
    return fake.app
