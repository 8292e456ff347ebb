"""Plumbing every vendor plugin repeats, written once: transport errors, Retry-After,
JSON envelopes, base-URL joining, auth headers and error classification by table.

Most plugins need only :class:`VendorAPI`: one instance per vendor says how the vendor
authenticates and where its envelope keeps the error code and message, and maps codes
and HTTP statuses to :class:`~vidgate.errors.VendorError` classes::

    from vidgate.errors import ChannelUnusable, VendorRateLimited, VendorRejected
    from vidgate.vendorhttp import VendorAPI, require

    API = VendorAPI(
        "Acme",
        code_at="error.code",
        message_at=("error.message",),
        codes={"rate_limited": VendorRateLimited, "no_credit": ChannelUnusable,
               "bad_prompt": functools.partial(VendorRejected, param="prompt")},
    )

    async def submit(self, job, ctx):
        data = await API.call(ctx, "POST", "/v1/videos", json=job.payload)
        vid = require(data, "id", "Acme")
        ...

Below it, :func:`request_json` is one guarded request (timeout, transport errors, JSON,
Retry-After) for calls that do not fit, and :func:`transport_errors`, :func:`retry_after`,
:func:`read_json` the pieces. :func:`pick`, :func:`require` and :func:`error_message` read
nested fields of a vendor's JSON; :func:`image_url` turns a request image into the URL or
data URL most vendors take.

The helpers only translate; what an answer *means* (which code is a rate limit, which a
bad key) stays in the plugin, in its table, next to the vendor's documentation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import aiohttp
import attrs

from .errors import (
    ChannelUnusable,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
    request_maybe_received,
)
from .vendor import Channel

if TYPE_CHECKING:
    from .vendor import CallContext

__all__ = [
    "STATUS_ERRORS",
    "TRANSPORT_ERRORS",
    "ErrorFactory",
    "Reply",
    "VendorAPI",
    "error_message",
    "image_url",
    "image_urls",
    "join_url",
    "parse_json",
    "pick",
    "read_json",
    "request_json",
    "require",
    "retry_after",
    "scrub",
    "transport_errors",
]

#: What a failed HTTP exchange raises in aiohttp: connection refused/reset, DNS, TLS,
#: payload errors, and timeouts (``asyncio.TimeoutError`` is ``TimeoutError`` on 3.11+).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    # Only the class name: aiohttp messages can carry the URL, and URLs can carry keys.
    return type(exc).__name__


@contextlib.contextmanager
def transport_errors(vendor: str, what: str = "did not answer") -> Iterator[None]:
    """Turn transport failures inside the block into :class:`VendorUnavailable`.

    The message reads ``"<vendor> did not answer (timed out)"`` or names the aiohttp
    error class; never the exception text, which may contain a URL with a key in it.
    :class:`VendorError` raised inside the block passes through unchanged.
    """
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise VendorUnavailable(
            f"{vendor} {what} ({_reason(exc)})", maybe_received=request_maybe_received(exc)
        ) from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's headers are case-insensitive; a plain dict (in tests, say) may not be.
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP-date).

    Returns None when no header is present or none parses; never a negative number.
    ``retry-after-ms`` wins because it is the more precise (OpenAI-style APIs send both).
    """
    if headers is None:
        return None
    value = _header(headers, "retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_json(raw: bytes, vendor: str, status: int) -> Any:
    """Decode a vendor body; a non-JSON body (a proxy's HTML page, a truncated reply)
    raises :class:`VendorUnavailable` naming the HTTP status, with ``http_status`` set."""
    try:
        return json.loads(raw)
    except ValueError:
        raise VendorUnavailable(f"{vendor} sent a malformed reply (HTTP {status})", http_status=status) from None


async def read_json(resp: aiohttp.ClientResponse, vendor: str, *, empty: Any = ...) -> Any:
    """Read and decode ``resp``'s body (see :func:`parse_json`).

    An empty body is malformed too, unless ``empty`` is given (returned instead).
    Transport failures while reading raise :class:`VendorUnavailable`.
    """
    with transport_errors(vendor, "reply was cut"):
        raw = await resp.read()
    if not raw.strip() and empty is not ...:
        return empty
    return parse_json(raw, vendor, resp.status)


def join_url(base: str, *parts: str) -> str:
    """``base`` and path ``parts`` joined with exactly one ``/`` between each.

    ``join_url("https://x/api/", "/v1", "videos")`` is ``"https://x/api/v1/videos"``.
    Unlike :func:`urllib.parse.urljoin`, a base path is kept, never replaced. The core
    has already resolved the channel's ``base_url`` (or the vendor's default), so pass
    ``ctx.channel.base_url``.
    """
    url = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            url += "/" + part
    return url


def scrub(text: str, channel: Channel) -> str:
    """``text`` with every credential value of ``channel`` replaced by ``[redacted]``.

    The core scrubs the messages of errors a plugin raises; use this for what a plugin
    *logs* itself, since vendors' error messages can quote what they were sent.
    """
    from .plugins import scrub_text

    return scrub_text(text, channel)


# -- reading vendor JSON ------------------------------------------------------------


def pick(data: Any, path: str, default: Any = None) -> Any:
    """The value at the dotted ``path`` of ``data``, or ``default`` when a step is missing.

    ``pick(body, "base_resp.status_code")`` is ``body["base_resp"]["status_code"]``; a
    segment of digits indexes a list (``"data.0.url"``). Any step that is not there, or
    not a dict/list, gives ``default``: vendor JSON is read without ``isinstance`` ladders.
    """
    for key in path.split("."):
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            return default
    return data


def require(data: Any, path: str, vendor: str) -> str:
    """The non-empty string (or integer, as text) at ``path`` of ``data``: a task id, a URL.

    Anything else raises :class:`VendorUnavailable` ``"<vendor> answered without <path>"``
    (a vendor that accepted a task but gave no id is broken, not refusing).
    """
    value = pick(data, path)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise VendorUnavailable(f"{vendor} answered without {path}")
    return value


def error_message(data: Any, *paths: str) -> str | None:
    """The vendor's message from an error envelope: the first non-empty text at ``paths``.

    ``error_message(body, "error.message", "error", "detail")`` reads OpenAI-, plain- and
    FastAPI-style envelopes alike; a list (FastAPI's validation errors) is joined from its
    items' ``msg``/``message``. None when no path holds text.
    """
    for path in paths:
        value = pick(data, path)
        if isinstance(value, list):
            value = "; ".join(
                str(pick(item, "msg") or pick(item, "message") or "") if isinstance(item, Mapping) else str(item)
                for item in value
            ).strip("; ")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


class _Inline(Protocol):
    # Image and Reference (frozen attrs classes): read-only attributes.
    @property
    def url(self) -> str | None: ...
    @property
    def data(self) -> bytes | None: ...
    @property
    def mime_type(self) -> str | None: ...


def image_url(item: _Inline) -> str:
    """What most vendors take for an image (or a reference video/audio) of the request:
    the client's URL, else a ``data:`` URL of its bytes. Encoding a large image takes a
    while: call it off the event loop (:func:`image_urls` does)."""
    if item.url:
        return item.url
    encoded = base64.b64encode(item.data or b"").decode("ascii")
    return f"data:{item.mime_type or 'application/octet-stream'};base64,{encoded}"


async def image_urls(items: Iterable[_Inline]) -> list[str]:
    """:func:`image_url` of each item, encoded in a worker thread (``ctx.request.images``)."""
    items = list(items)
    return await asyncio.to_thread(lambda: [image_url(item) for item in items])


# -- one request ------------------------------------------------------------------


class Reply(NamedTuple):
    """A vendor's answer: HTTP ``status``, decoded JSON ``data`` (None for an empty body,
    and for a non-JSON error body) and the Retry-After it asked for, in seconds."""

    status: int
    data: Any
    retry_after: float | None


def _decode(raw: bytes, vendor: str, status: int) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        if 200 <= status < 300:
            raise VendorUnavailable(f"{vendor} sent a malformed reply (HTTP {status})", http_status=status) from None
        return None  # an error page (a proxy's HTML): the status says what happened


async def request_json(
    ctx: CallContext,
    method: str,
    url: str,
    *,
    vendor: str,
    json: Any = None,
    params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request with ``ctx.timeout``: transport failures become :class:`VendorUnavailable`
    (see :func:`transport_errors`), the body is decoded and ``Retry-After`` read.

    Returns the :class:`Reply` whatever the status (classifying it is the caller's, or
    :meth:`VendorAPI.classify`'s); only a 2xx body that is not JSON raises (malformed).
    """
    with transport_errors(vendor):
        async with ctx.http.request(
            method, url, json=json, params=params, headers=headers, timeout=ctx.timeout
        ) as resp:
            raw = await resp.read()
            status, wait = resp.status, retry_after(resp.headers)
    return Reply(status, _decode(raw, vendor, status), wait)


# -- a vendor's API: base URL, auth, classification -----------------------------------

#: Builds the error for one answer: a :class:`VendorError` subclass, or any callable taking
#: ``(message, *, vendor_code, http_status, retry_after)`` such as
#: ``functools.partial(VendorRejected, param="prompt")``.
ErrorFactory = Callable[..., VendorError]

#: HTTP statuses whose meaning is the same at (almost) every vendor. Other 4xx are
#: :class:`VendorRejected`, other statuses :class:`VendorUnavailable`.
STATUS_ERRORS: Mapping[int, ErrorFactory] = {
    401: ChannelUnusable,
    402: ChannelUnusable,
    403: ChannelUnusable,
    429: VendorRateLimited,
}


@attrs.frozen
class VendorAPI:
    """One vendor's HTTP API, declared: auth header, error envelope, and the tables that
    turn its answers into :class:`~vidgate.errors.VendorError` classes.

    * ``vendor``: the name in messages (``"MiniMax"``).
    * ``auth``: the auth header's value, a template over the channel's credentials
      (``"Bearer {api_key}"``, ``"Token {api_key}"``); ``""`` sends none. A missing or
      empty credential raises :class:`ChannelUnusable`. ``auth_header`` names the header.
    * ``code_at``: where the envelope keeps the vendor's error code (``"error.code"``,
      ``"base_resp.status_code"``), or None when only the HTTP status says; a code in
      ``ok_codes`` (or none at all) is success. Vendors that answer errors at HTTP 200
      (MiniMax V1, Kling) are classified by the code.
    * ``codes``: vendor code -> :data:`ErrorFactory`; ``statuses``: HTTP status -> factory
      (default :data:`STATUS_ERRORS`). A code not in ``codes`` falls back on the status,
      and a non-zero code at HTTP 2xx on ``unknown_code``.
    * ``message_at``: where the vendor's message is (see :func:`error_message`).
    * ``rate_limit_delay``: seconds to wait after a rate limit without ``Retry-After``.

    An error the vendor classified by its own code is its own answer: a
    :class:`VendorUnavailable` from ``codes`` is marked ``maybe_received=False`` (nothing
    was created, another channel may take the task). Subclass to override
    :meth:`base_url` (strip a suffix, pick a region), :meth:`headers` or :meth:`classify`.
    """

    vendor: str
    auth: str = "Bearer {api_key}"
    auth_header: str = "Authorization"
    code_at: str | None = None
    ok_codes: frozenset[Any] = frozenset({0, "0"})
    codes: Mapping[Any, ErrorFactory] = attrs.field(factory=dict)
    statuses: Mapping[int, ErrorFactory] = STATUS_ERRORS
    unknown_code: ErrorFactory = VendorUnavailable
    message_at: tuple[str, ...] = ("error.message", "error", "message", "detail")
    rate_limit_delay: float | None = None

    def base_url(self, ctx: CallContext) -> str:
        """The URL paths are joined to (default: the channel's resolved ``base_url``)."""
        return ctx.channel.base_url

    def headers(self, ctx: CallContext) -> dict[str, str]:
        """The auth header from :attr:`auth` and the channel's credentials."""
        if not self.auth:
            return {}
        creds = ctx.channel.credentials
        for _, field, _, _ in string.Formatter().parse(self.auth):
            if field and not creds.get(field):
                raise ChannelUnusable(f"{self.vendor} channel has no credentials.{field}")
        return {self.auth_header: self.auth.format_map(creds)}

    def classify(self, reply: Reply, *, not_found: ErrorFactory | None = None) -> VendorError | None:
        """The error ``reply`` means, or None for success. ``not_found`` is what a 404
        means on this call (:class:`~vidgate.errors.TaskNotFound` on a task's own URL)."""
        status, data, wait = reply
        code = pick(data, self.code_at) if self.code_at else None
        failed = code not in (None, "") and not isinstance(code, bool) and code not in self.ok_codes
        ok = 200 <= status < 300
        if ok and not failed:
            return None
        factory = self.codes.get(code) if failed else None
        by_code = factory is not None or ok
        if factory is None and ok:
            factory = self.unknown_code
        if factory is None and status == 404 and not_found is not None:
            factory = not_found
        if factory is None:
            factory = self.statuses.get(status)
        detail = error_message(data, *self.message_at)
        if factory is None:
            if data is None and 400 <= status < 500:
                # A 4xx without the vendor's envelope comes from something in front of it.
                return VendorUnavailable(f"{self.vendor} sent a malformed reply (HTTP {status})", http_status=status)
            factory = VendorRejected if 400 <= status < 500 else VendorUnavailable
        text = f"{self.vendor}: {detail}" if detail else f"{self.vendor} answered HTTP {status}"
        if failed:
            text += f" ({code})"
        if factory is VendorRateLimited and wait is None:
            wait = self.rate_limit_delay
        err = factory(text[:1000], vendor_code=code if failed else None, http_status=status, retry_after=wait)
        if by_code and isinstance(err, VendorUnavailable):
            err.maybe_received = False
        return err

    async def call(
        self,
        ctx: CallContext,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        not_found: ErrorFactory | None = None,
    ) -> dict[str, Any]:
        """Call ``path`` (joined to :meth:`base_url`) and return the decoded JSON object
        (``{}`` for an empty body), or raise the :class:`VendorError` it means (logged as
        ``vendor_error``, credentials scrubbed). A 2xx body that is not a JSON object is
        malformed (:class:`VendorUnavailable`); for such APIs use :func:`request_json`."""
        url = join_url(self.base_url(ctx), path)
        reply = await request_json(
            ctx,
            method,
            url,
            vendor=self.vendor,
            json=json,
            params=params,
            headers={**self.headers(ctx), **(headers or {})},
        )
        err = self.classify(reply, not_found=not_found)
        if err is not None:
            ctx.log.warning(
                "vendor_error",
                http_status=reply.status,
                vendor_code=err.vendor_code,
                error=type(err).__name__,
                message=scrub(err.message, ctx.channel)[:300],
            )
            raise err
        if reply.data is None:
            return {}
        if not isinstance(reply.data, dict):
            raise VendorUnavailable(f"{self.vendor} answered {type(reply.data).__name__}, not an object")
        return reply.data
