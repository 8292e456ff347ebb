"""HTTP to Google: the two Veo surfaces and the classification of Google's errors.

=============  ===============================================================================================  =====================================================
               Vertex AI (``surface = "vertex"``, default)                                                      Gemini API (``surface = "gemini"``, legacy: relays)
=============  ===============================================================================================  =====================================================
auth           ``Authorization: Bearer <credentials.access_token, or minted from credentials.service_account>``  ``x-goog-api-key: <credentials.api_key>``
create         ``POST {base}/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:predictLongRunning``      ``POST {base}/v1beta/models/{m}:predictLongRunning``
poll           ``POST {base}/v1/.../models/{m}:fetchPredictOperation {"operationName"}``                          ``GET {base}/v1beta/{operation name}``
=============  ===============================================================================================  =====================================================

Google retired Veo on the Gemini API (2.0/3.0 on 2026-06-30, the 3.1 previews on
2026-10-22): that surface stays for relays that still serve ``predictLongRunning``.

Google answers success with exactly HTTP 200 and errors with
``{"error": {"code", "message", "status", "details"}}``.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from vidgate import CallContext, Channel
from vidgate.errors import (
    ChannelUnusable,
    ModelRetired,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from vidgate.vendorhttp import retry_after, transport_errors

from .auth import ServiceAccount, access_token, forget_token

GEMINI_BASE = "https://generativelanguage.googleapis.com"
SURFACES = ("gemini", "vertex")
DEFAULT_LOCATION = "us-central1"
_BIG_BODY = 1 << 20  # parse bodies above this size off the event loop (inline videos)


def surface_of(channel: Channel) -> str:
    """The channel's surface (option ``surface``), ``vertex`` unless set."""
    surface = str(channel.options.get("surface") or "vertex").lower()
    if surface not in SURFACES:
        raise ChannelUnusable(f"options.surface must be 'gemini' or 'vertex', not {surface!r}")
    return surface


@attrs.frozen
class Settings:
    """A channel's Veo settings, checked: what a call needs besides the HTTP session."""

    surface: str
    base: str
    version: str
    api_key: str | None = attrs.field(default=None, repr=False)
    account: ServiceAccount | None = None
    access_token: str | None = attrs.field(default=None, repr=False)
    project: str | None = None
    location: str | None = None

    @classmethod
    def of(cls, channel: Channel) -> Settings:
        """Read and check the channel's settings; ``ChannelUnusable`` names the bad key."""
        surface = surface_of(channel)
        creds, opts = channel.credentials, channel.options
        if surface == "gemini":
            api_key = creds.get("api_key")
            if not isinstance(api_key, str) or not api_key:
                raise ChannelUnusable("credentials.api_key is required for the Gemini API surface")
            return cls(
                surface,
                (channel.base_url or GEMINI_BASE).rstrip("/"),
                str(opts.get("api_version") or "v1beta"),
                api_key=api_key,
            )
        token = creds.get("access_token")
        account: ServiceAccount | None = None
        if creds.get("service_account"):
            account = ServiceAccount.parse(creds.get("service_account"))
        elif not isinstance(token, str) or not token:
            raise ChannelUnusable(
                "credentials.service_account (the key file's JSON) or credentials.access_token is required "
                "for the Vertex AI surface"
            )
        project = creds.get("project") or opts.get("project") or (account.project_id if account else None)
        if not isinstance(project, str) or not project:
            raise ChannelUnusable("credentials.project is required for the Vertex AI surface")
        location = str(creds.get("location") or opts.get("location") or DEFAULT_LOCATION)
        return cls(
            surface,
            (channel.base_url or vertex_base(location)).rstrip("/"),
            str(opts.get("api_version") or "v1"),
            account=account,
            access_token=token if account is None else None,
            project=project,
            location=location,
        )


def vertex_base(location: str) -> str:
    """Google's regional Vertex host (``global`` has no region prefix)."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


# --- error classification ----------------------------------------------------------

_PARAM_HINTS = (
    ("durationseconds", "seconds"),
    ("aspectratio", "size"),
    ("resolution", "size"),
    ("lastframe", "images"),
    ("image", "image"),
    ("prompt", "prompt"),
)


def _param_hint(message: str) -> str | None:
    lowered = message.lower()
    return next((param for needle, param in _PARAM_HINTS if needle in lowered), None)


def _error_parts(body: Any) -> tuple[str, str, list[Any]]:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", "", []
    details = err.get("details")
    return str(err.get("message") or ""), str(err.get("status") or ""), details if isinstance(details, list) else []


def _retry_after(headers: Any, details: list[Any]) -> float | None:
    if (seconds := retry_after(headers)) is not None:
        return seconds
    for d in details:  # google.rpc.RetryInfo {"retryDelay": "30s"}
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            m = re.match(r"^\s*([\d.]+)s\s*$", str(d.get("retryDelay", "")))
            if m:
                return float(m[1])
    return None


def classify(status: int, body: Any, headers: Any, *, creating: bool) -> VendorError:
    """Turn a non-200 Google answer into the error class that tells the core what to do."""
    message, gstatus, details = _error_parts(body)
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict) and "reason" in d}
    code = gstatus or status
    text = message or f"HTTP {status}"
    if status == 400 and reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}:
        return ChannelUnusable(f"Google refused the API key: {text}", vendor_code="API_KEY_INVALID")
    if status in (401, 403) or gstatus in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return ChannelUnusable(f"Google refused this account ({gstatus or status}): {text}", vendor_code=code)
    if status == 429:
        return VendorRateLimited(
            f"Google rate limit: {text}", vendor_code=code, retry_after=_retry_after(headers, details)
        )
    if status == 408 or status >= 500:
        # Google's own error answer means no operation was started, unless a proxy lost
        # its answer (502/504).
        return VendorUnavailable(
            f"Google answered HTTP {status}: {text}", vendor_code=code, maybe_received=status in (502, 504)
        )
    if status == 404 and (creating or "no longer available" in text.lower()):
        # At create the path names the model: a 404 is a retired model ("... is no longer
        # available"; on Vertex "Publisher Model ... was not found or your project does
        # not have access to it"), a wrong region or no access: this channel cannot serve
        # the model, another one may.
        return ModelRetired(f"Google does not serve this Veo model here: {text}", vendor_code=code, http_status=404)
    if creating:
        # 400 INVALID_ARGUMENT, 409, ...: the request is wrong.
        return VendorRejected(f"Veo rejected the request: {text}", vendor_code=code, param=_param_hint(text))
    if status == 404:
        return TaskNotFound(f"Veo no longer knows this operation: {text}", vendor_code=code, http_status=404)
    # Other 4xx while polling: not the client's fault and maybe not permanent; the task's
    # deadline bounds it.
    return VendorUnavailable(f"Google answered HTTP {status} while polling: {text}", vendor_code=code)


# --- the client --------------------------------------------------------------------


class VeoClient:
    """One channel's view of Veo, for one call (built from a :class:`CallContext`)."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        settings = Settings.of(ctx.channel)
        self.surface, self.base, self.version = settings.surface, settings.base, settings.version
        self.api_key, self.account, self.token = settings.api_key, settings.account, settings.access_token
        self.project, self.location = settings.project, settings.location

    # -- plumbing --

    async def _headers(self) -> dict[str, str]:
        # Settings.of guarantees the key on the Gemini surface and the account on Vertex.
        if self.surface == "gemini":
            assert self.api_key is not None
            return {"x-goog-api-key": self.api_key}
        if self.account is None:
            assert self.token is not None
            return {"Authorization": f"Bearer {self.token}"}
        return {"Authorization": f"Bearer {await access_token(self.account, self.ctx)}"}

    async def _call(self, method: str, url: str, body: Any | None, *, creating: bool) -> dict[str, Any]:
        headers = await self._headers()
        with transport_errors("Google", "unreachable"):
            async with self.ctx.http.request(method, url, json=body, headers=headers, timeout=self.ctx.timeout) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        try:
            data = await asyncio.to_thread(json.loads, raw) if len(raw) > _BIG_BODY else json.loads(raw)
        except ValueError:
            data = None
        del raw
        if status == 200:
            if not isinstance(data, dict):
                raise VendorUnavailable("Google answered 200 with a body that is not a JSON object")
            return data
        if status == 401 and self.account is not None:
            forget_token(self.account, self.ctx)  # so the next call mints a fresh one
        raise classify(status, data, resp_headers, creating=creating)

    def _model_path(self, model: str) -> str:
        if self.surface == "gemini":
            return f"{self.base}/{self.version}/models/{model}"
        return (
            f"{self.base}/{self.version}/projects/{self.project}/locations/{self.location}"
            f"/publishers/google/models/{model}"
        )

    # -- calls --

    async def create(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """``predictLongRunning``; returns the operation (``{"name": ...}``)."""
        return await self._call("POST", f"{self._model_path(model)}:predictLongRunning", body, creating=True)

    async def operation(self, name: str, model: str) -> dict[str, Any]:
        """The current state of the long-running operation ``name``."""
        if self.surface == "gemini":
            return await self._call("GET", f"{self.base}/{self.version}/{name}", None, creating=False)
        # Like the SDK: the resource is the operation name up to "/operations/"; fall back
        # to this channel's project/location when the name has another shape.
        resource, sep, _ = name.partition("/operations/")
        url = (
            f"{self.base}/{self.version}/{resource}"
            if sep and resource.startswith("projects/")
            else self._model_path(model)
        )
        return await self._call("POST", f"{url}:fetchPredictOperation", {"operationName": name}, creating=False)

    def download_headers(self, uri: str) -> dict[str, str]:
        """Headers for fetching a Gemini file URI: the key, as the SDK sends it, but only
        to the host the channel talks to (a URI naming another host never gets it)."""
        if self.surface != "gemini" or urlsplit(uri)[:2] != urlsplit(self.base)[:2]:
            return {}
        assert self.api_key is not None
        return {"x-goog-api-key": self.api_key}
