"""A base class for fake vendor servers: what every fake repeats, written once.

A fake subclasses :class:`FakeVendor`, declares its vendor-shaped routes in
:meth:`FakeVendor.routes` and renders its vendor's envelopes; the base gives it:

* request recording (:attr:`FakeVendor.requests`, each a :class:`Recorded`);
* jobs (:class:`FakeJob`) that walk ``queued -> running -> succeeded`` as they are polled;
* fault switches, by prompt keyword or programmatically (see :data:`KEYWORDS`), and the
  fake's own refusals by keyword (:attr:`FakeVendor.prompt_refusals`);
* answers that record themselves (:meth:`FakeVendor.respond`, :meth:`FakeVendor.reject`,
  :meth:`FakeVendor.check_auth`), so a test sees what each request was answered;
* callback delivery (:meth:`FakeVendor.send_callback`, recorded in
  :attr:`FakeVendor.deliveries`);
* result downloads with HTTP Range support, serving real MP4 bytes (:func:`tiny_mp4`);
* serving: ``async with fake.serve():`` then ``fake.url``.

Prompt keywords (each fires once per job, in the phase it belongs to)::

    [429]            the create answers "rate limited" once (the fake's error(kind="rate_limit"))
    [500]            a poll answers HTTP 500
    [malformed]      a poll answers a non-JSON page (HTTP 502)
    [slow]           a poll answers only after ``slow_seconds`` (longer than the test timeout)
    [unknown-status] a poll reports a status word the plugin cannot know
    [fail]           the job ends failed
    [hold]           the job stays running until :meth:`FakeVendor.release`
    [echo-key]       the create is refused with a message containing the credential

Programmatic switches: :meth:`FakeVendor.inject` queues faults for the next calls of a
phase whatever the prompt (``fake.inject("create", "429", times=2)``). The fault a request
was answered with is its record's :attr:`Recorded.fault`, so a test (the contract suite's)
knows a fault fired even at a vendor that answers errors at HTTP 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ClassVar, Protocol

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .testing import serve_app, tiny_mp4

__all__ = ["KEYWORDS", "Delivery", "FakeJob", "FakeVendor", "Recorded", "keywords"]

#: Fault keywords a prompt may carry, and the phase each acts in.
KEYWORDS: dict[str, str] = {
    "429": "create",
    "echo-key": "create",
    "500": "poll",
    "malformed": "poll",
    "slow": "poll",
    "unknown-status": "poll",
    "fail": "poll",
    "hold": "poll",
}

_KEYWORD = re.compile(r"\[([a-z0-9-]+)\]")


def keywords(prompt: str | None) -> list[str]:
    """The known fault keywords in ``prompt``, in order (``"a fox [500]"`` -> ``["500"]``)."""
    return [k for k in _KEYWORD.findall(prompt or "") if k in KEYWORDS]


@attrs.define
class Recorded:
    """One request the fake received: for wire-shape assertions.

    ``json`` is the decoded body (or the text when it is not JSON, None when empty);
    ``status`` is the HTTP status answered and ``code`` a vendor code, for fakes that set it
    (:meth:`FakeVendor.respond` and :meth:`FakeVendor.reject` do). ``answer`` is the JSON
    the fake answered (set by :meth:`FakeVendor.respond`); ``fault`` the fault keyword
    (``"429"``, ``"500"``, ``"echo-key"``, a :attr:`FakeVendor.prompt_refusals` key...) it
    was answered with instead, set by the fault helpers.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    body: bytes = b""
    query: dict[str, str] = attrs.field(factory=dict)
    time: float = attrs.field(factory=time.time)
    status: int | None = None
    code: Any = None
    answer: Any = None
    fault: str | None = None


@attrs.define
class Delivery:
    """One callback the fake sent (:meth:`FakeVendor.send_callback`): the HTTP ``status``
    the receiver answered (None when it could not be reached) and its decoded JSON
    ``reply`` (None when not JSON)."""

    url: str
    body: Any
    status: int | None = None
    reply: Any = None


class Answered(Protocol):
    """A recorded request the fault helpers mark with the status they answered
    (:class:`Recorded`, or a fake's own record type)."""

    status: int | None


@attrs.define(eq=False)
class FakeJob:
    """A vendor task inside the fake.

    ``seconds`` and ``size`` are what the fake understood it was asked to make, so a
    test can check that the gateway billed exactly that. ``state`` is one of ``queued``,
    ``running``, ``succeeded``, ``failed``; ``data`` is free for the subclass.
    """

    id: str
    prompt: str = ""
    seconds: int | None = None
    size: str | None = None
    callback_url: str | None = None
    state: str = "queued"
    polls: int = 0
    unknown_polls: int = 0
    held: bool = False
    error: str | None = None
    faults: list[str] = attrs.field(factory=list)
    data: dict[str, Any] = attrs.field(factory=dict)
    created_at: float = attrs.field(factory=time.time)

    def take(self, fault: str) -> bool:
        """True (once) if this job still carries ``fault``."""
        if fault in self.faults:
            self.faults.remove(fault)
            return True
        return False


class FakeVendor:
    """Base of a fake vendor server; subclass it and implement :meth:`routes`.

    :param secret: the credential the fake accepts; ``[echo-key]`` puts it in an error.
    :param polls_to_finish: polls after which a job is final (``queued`` before the first
        poll, ``running`` in between).
    :param slow_seconds: how long a ``[slow]`` poll takes.

    Handlers usually look like::

        async def create(self, request):
            rec = await self.record(request)
            if refusal := self.create_fault(rec.json.get("prompt"), rec):
                return refusal
            job = self.new_job(rec.json["prompt"], seconds=..., size=...)
            return JSONResponse({"id": job.id})

        async def get(self, request):
            rec = await self.record(request)
            job = self.jobs[request.path_params["id"]]
            if refusal := await self.poll_fault(job, rec):
                return refusal
            state = self.advance(job)   # queued/running/succeeded/failed/unknown
            ...
    """

    #: The vendor's name, used in default error messages.
    vendor: str = "fake"
    #: State -> the vendor's status word; ``unknown`` is a word no plugin knows.
    status_words: dict[str, str] = {
        "queued": "queued",
        "running": "running",
        "succeeded": "succeeded",
        "failed": "failed",
        "unknown": "reticulating_splines",
    }
    #: Error kind -> the vendor's own error code, for fakes whose envelope carries one;
    #: :meth:`reject` records it as :attr:`Recorded.code` (and :meth:`error` may render it).
    codes: ClassVar[dict[str, Any]] = {}
    #: The fake's own create refusals by prompt keyword: ``{"no-credit": ("balance",
    #: "insufficient balance", 402)}`` makes a prompt with ``[no-credit]`` refused on every
    #: create with ``reject(rec, "balance", "insufficient balance", 402)``.
    prompt_refusals: ClassVar[dict[str, tuple[str, str, int]]] = {}

    def __init__(
        self,
        *,
        secret: str = "fake-secret-key-0123",
        polls_to_finish: int = 2,
        slow_seconds: float = 3.0,
        result_bytes: bytes | None = None,
    ) -> None:
        self.secret = secret
        self.polls_to_finish = polls_to_finish
        self.slow_seconds = slow_seconds
        self._result_bytes = result_bytes
        self.requests: list[Recorded] = []
        self.jobs: dict[str, FakeJob] = {}
        self.callbacks_sent: list[tuple[str, Any, int | None]] = []
        self.deliveries: list[Delivery] = []
        self.base_url = ""  # set by serve(); else taken from each request
        self._queued_faults: dict[str, deque[str]] = {"create": deque(), "poll": deque()}
        self._ids = itertools.count(1)
        self._spent: set[tuple[str | None, str]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._app: Starlette | None = None

    # -- for subclasses -------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The vendor's endpoints (Starlette routes). The result route is added by the base."""
        raise NotImplementedError

    def error(self, kind: str, message: str, status: int) -> Response:
        """Render a vendor error answer; ``kind`` is ``rate_limit``, ``rejected``,
        ``server`` or ``auth``. Override to use the vendor's envelope."""
        return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)

    def new_job_id(self) -> str:
        """The id of the next job; override for the vendor's id shape."""
        return f"job_{next(self._ids):06d}"

    # -- answers that record themselves -----------------------------------------------

    def respond(self, rec: Recorded, body: Any, status: int = 200, *, code: Any = None) -> JSONResponse:
        """``body`` as JSON with ``status``; ``rec`` shows the status, ``code`` and body."""
        rec.status, rec.answer = status, body
        if code is not None:
            rec.code = code
        return JSONResponse(body, status_code=status)

    def code_for(self, kind: str) -> Any:
        """The vendor code :meth:`reject` records for ``kind``: its :attr:`codes` entry, or
        None (the record's code is then left as it was). Override when a fake's kinds may
        be its vendor's own error codes (``return self.codes.get(kind, kind)``)."""
        return self.codes.get(kind)

    def reject(self, rec: Answered | None, kind: str, message: str, status: int = 400, **fields: Any) -> Response:
        """The vendor's error answer (:meth:`error`) of ``kind``, recorded on ``rec``:
        its HTTP status, the vendor code :meth:`code_for` gives ``kind``, and the body.

        ``fields`` go on to :meth:`error` as keywords, for a fake whose ``error`` takes
        more than the base's (e.g. ``param=...``); pass none to a fake whose ``error``
        takes none. A fake's own record type (not :class:`Recorded`) gets the status only.
        """
        resp = self.error(kind, message, status, **fields)
        if rec is not None:
            rec.status = resp.status_code
        if isinstance(rec, Recorded):
            code = self.code_for(kind)
            if code is not None:
                rec.code = code
            with contextlib.suppress(ValueError):
                rec.answer = json.loads(bytes(resp.body))
        return resp

    def check_auth(
        self, rec: Recorded, expected: str, *, header: str = "authorization", message: str = "invalid API key"
    ) -> Response | None:
        """None when ``rec`` carries ``header: expected`` (e.g. ``f"Bearer {self.secret}"``),
        else the vendor's ``auth`` error (HTTP 401), recorded."""
        got = rec.headers.get(header.lower(), "")
        if secrets.compare_digest(got.encode(), expected.encode()):
            return None
        return self.reject(rec, "auth", message, 401)

    # -- recording ------------------------------------------------------------------

    async def record(self, request: Request) -> Recorded:
        """Record ``request`` (call first in every handler) and return the record."""
        raw = await request.body()
        payload: Any = None
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
        rec = Recorded(
            request.method, request.url.path, dict(request.headers), payload, raw, dict(request.query_params)
        )
        self.requests.append(rec)
        if not self.base_url:
            self.base_url = str(request.base_url).rstrip("/")
        return rec

    def recorded(self, method: str | None = None, path: str | re.Pattern[str] | None = None) -> list[Recorded]:
        """Recorded requests, filtered by method and by path (exact string or regex)."""
        out = []
        for r in self.requests:
            if method is not None and r.method != method:
                continue
            if isinstance(path, str) and r.path != path:
                continue
            if isinstance(path, re.Pattern) and not path.search(r.path):
                continue
            out.append(r)
        return out

    # -- jobs and faults ------------------------------------------------------------

    def inject(self, phase: str, *faults: str, times: int = 1) -> None:
        """Queue ``faults`` (keywords without brackets) for the next ``times`` calls of
        ``phase`` (``create`` or ``poll``), whatever the prompt."""
        for _ in range(times):
            self._queued_faults[phase].extend(faults)

    def new_job(
        self,
        prompt: str | None = "",
        *,
        seconds: int | None = None,
        size: str | None = None,
        callback_url: str | None = None,
        job_id: str | None = None,
        **data: Any,
    ) -> FakeJob:
        """Create and store a job (id ``job_id`` or :meth:`new_job_id`); its poll-phase
        faults come from ``prompt``."""
        faults = [k for k in keywords(prompt) if KEYWORDS[k] == "poll"]
        job = FakeJob(job_id or self.new_job_id(), prompt or "", seconds, size, callback_url, faults=faults, data=data)
        job.held = job.take("hold")
        self.jobs[job.id] = job
        return job

    def create_fault(self, prompt: str | None, rec: Answered | None = None) -> Response | None:
        """The answer a create must give instead of succeeding, or None.

        ``[echo-key]`` and :attr:`prompt_refusals` always refuse (``[echo-key]`` with the
        credential in the message); ``[429]`` fires once per prompt, so the gateway's
        retry then succeeds. Injected ``500`` answers HTTP 500.
        """
        fault = self._queued_faults["create"].popleft() if self._queued_faults["create"] else None
        if fault is None:
            for k in _KEYWORD.findall(prompt or ""):
                if k == "echo-key" or k in self.prompt_refusals:
                    fault = k
                    break
                if KEYWORDS.get(k) == "create" and (prompt, k) not in self._spent:
                    self._spent.add((prompt, k))
                    fault = k
                    break
        if fault is None:
            return None
        if fault in self.prompt_refusals:
            kind, message, status = self.prompt_refusals[fault]
            resp = self.reject(rec, kind, message, status)
        elif fault == "echo-key":
            resp = self.reject(rec, "rejected", f"invalid request for key {self.secret}", 400)
        elif fault == "429":
            resp = self.reject(rec, "rate_limit", "Too many requests, slow down", 429)
            resp.headers["Retry-After"] = "0"
        else:
            resp = self.reject(rec, "server", "Internal server error", 500)
        _mark(rec, resp.status_code, fault)
        return resp

    async def poll_fault(self, job: FakeJob | None, rec: Answered | None = None) -> Response | None:
        """The answer a poll must give instead of the job's status, or None.

        ``[500]`` -> HTTP 500, ``[malformed]`` -> an HTML 502 page, ``[slow]`` -> waits
        :attr:`slow_seconds` first (then answers normally; None is returned).
        """
        fault = self._queued_faults["poll"].popleft() if self._queued_faults["poll"] else None
        if fault is None and job is not None:
            fault = next((f for f in ("500", "malformed", "slow") if job.take(f)), None)
        resp: Response | None = None
        if fault == "500":
            resp = self.reject(rec, "server", "Internal server error", 500)
        elif fault == "malformed":
            resp = Response("<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html")
        elif fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if resp is not None and fault is not None:
            _mark(rec, resp.status_code, fault)
        return resp

    def advance(self, job: FakeJob) -> str:
        """Count a poll of ``job`` and return its state now, or ``unknown`` once for an
        ``[unknown-status]`` job. Sends the callback when the state changes."""
        job.polls += 1
        if job.take("unknown-status"):
            job.unknown_polls += 1  # does not bring the job nearer its end
            return "unknown"
        if job.state in ("queued", "running"):
            if not job.held and job.polls - job.unknown_polls >= self.polls_to_finish:
                if job.take("fail") or job.error:
                    self.set_state(job, "failed", job.error or "The vendor could not render this video.")
                else:
                    self.set_state(job, "succeeded")
            else:
                self.set_state(job, "running")
        return job.state

    def set_state(self, job: FakeJob, state: str, error: str | None = None) -> None:
        """Move ``job`` to ``state`` now (a callback is sent if it has a callback URL)."""
        if job.state == state:
            return
        job.state = state
        if error is not None:
            job.error = error
        if job.callback_url:
            self.send_callback(job.callback_url, self.callback_body(job))

    def callback_body(self, job: FakeJob) -> Any:
        """What a callback about ``job`` carries; override for the vendor's shape."""
        return {"id": job.id, "status": self.status_words[job.state]}

    def release(self, job: FakeJob | None = None) -> None:
        """Let a ``[hold]`` job (or every held job) finish on its next polls."""
        for j in [job] if job is not None else list(self.jobs.values()):
            j.held = False

    def word(self, state: str) -> str:
        """The vendor's status word for a base state (see :attr:`status_words`)."""
        return self.status_words[state]

    # -- callbacks ------------------------------------------------------------------

    def send_callback(
        self,
        url: str,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        then: Callable[[Delivery], None] | None = None,
        timeout: float = 5.0,
    ) -> None:
        """POST ``body`` (JSON) to ``url`` in the background, best effort like a vendor.

        The :class:`Delivery` (the receiver's status and JSON reply) is appended to
        :attr:`deliveries`, and ``(url, body, status or None)`` to :attr:`callbacks_sent`;
        ``then(delivery)`` runs after it: a URL-verification handshake checks the reply
        there (``then=lambda d: ...`` sets the job's ``callback_url`` when it echoes).
        """

        async def post() -> None:
            import aiohttp

            delivery = Delivery(url, body)
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.post(
                        url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
                    ) as resp:
                        delivery.status = resp.status
                        with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
                            delivery.reply = await resp.json(content_type=None)
            except Exception:  # noqa: BLE001 - a vendor's callback is best effort
                pass
            self.deliveries.append(delivery)
            self.callbacks_sent.append((url, body, delivery.status))
            if then is not None:
                then(delivery)

        self.background(post())

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; it is cancelled when :meth:`serve` ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- results --------------------------------------------------------------------

    def result_bytes(self, job: FakeJob) -> bytes:
        """The video a finished job serves (default: a real MP4, :func:`tiny_mp4`)."""
        return self._result_bytes if self._result_bytes is not None else tiny_mp4()

    def result_url(self, job: FakeJob) -> str:
        """Where the base serves ``job``'s result (Range requests honoured)."""
        return f"{self.base_url}/_fake/results/{job.id}.mp4"

    async def _result(self, request: Request) -> Response:
        rec = await self.record(request)
        job = self.jobs.get(request.path_params["job"].removesuffix(".mp4"))
        if job is None or job.state != "succeeded":
            rec.status = 404
            return Response(b"not found", status_code=404)
        data = self.result_bytes(job)
        resp = range_response(data, request.headers.get("range"), "video/mp4")
        rec.status = resp.status_code
        return resp

    # -- serving --------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        """The ASGI app (built once)."""
        if self._app is None:
            self._app = Starlette(
                routes=[
                    *self.routes(),
                    Route("/_fake/results/{job}", self._result, methods=["GET", "HEAD"]),
                ]
            )
            self._app.state.fake = self
        return self._app

    @property
    def url(self) -> str:
        """The served base URL (no trailing slash); set by :meth:`serve`."""
        return self.base_url

    @url.setter
    def url(self, value: str) -> None:
        self.base_url = value

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeVendor]:
        """Serve the fake on 127.0.0.1 for the block; :attr:`url` is set inside it."""
        async with serve_app(self.app) as served:
            self.base_url = served.url
            try:
                yield self
            finally:
                for task in list(self._background):
                    task.cancel()


def _mark(rec: Answered | None, status: int, fault: str) -> None:
    # A fake's own record type (not Recorded) gets the status only.
    if rec is None:
        return
    rec.status = status
    if isinstance(rec, Recorded):
        rec.fault = fault


def range_response(data: bytes, range_header: str | None, media_type: str) -> Response:
    """``data`` as a 200, or a 206/416 for a single ``bytes=a-b`` Range, as CDNs answer."""
    headers = {"Accept-Ranges": "bytes"}
    if not range_header:
        return Response(data, media_type=media_type, headers=headers)
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
    size = len(data)
    if m is None or m.group(1) == m.group(2) == "":
        return Response(data, media_type=media_type, headers=headers)
    if m.group(1) == "":
        start, end = max(0, size - int(m.group(2))), size - 1
    else:
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or start > end:
        return Response(b"", status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)
