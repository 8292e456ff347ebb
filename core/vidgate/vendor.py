"""Everything a vendor plugin touches: the data it receives and returns.

A vendor plugin is a pluggy plugin implementing the hooks in :mod:`vidgate.hookspecs`.
The easiest way to write one is to subclass :class:`VendorPlugin`, fill in its methods,
and point an entry point in the group ``vidgate`` at an instance::

    class Acme(VendorPlugin):
        name = "acme"
        models = [Model("acme-1", vendor_model="acme-video-1")]

        def map_request(self, request, model, channel):
            return VendorJob(payload={...}, seconds=5, size="1280x720")

        async def submit(self, job, ctx):
            ...
            return Submission(handle={"id": vendor_id}, vendor_task_id=vendor_id)

        async def poll(self, handle, ctx):
            ...
            return PollResult(status="in_progress", progress=40)

        async def fetch_result(self, handle, result, variant, ctx):
            return await ctx.download(result["url"])

    plugin = Acme()

All I/O is ``async`` and receives a :class:`CallContext` with the shared HTTP session, the
channel (base URL, credentials) and a logger that already carries the task id.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from .errors import Problem, VendorRejected
from .markers import hookimpl

if TYPE_CHECKING:
    import aiohttp
    import structlog

    from .request import VideoRequest

Status = Literal["queued", "in_progress", "completed", "failed", "cancelled"]
PUBLIC_STATUSES: tuple[str, ...] = ("queued", "in_progress", "completed", "failed", "cancelled")

#: Usage facts: what a task is billed on, as ``{name: value}``. Numbers, except
#: ``resolution`` and ``size`` which are strings. The names are a fixed vocabulary (see
#: :data:`vidgate.billing.FACTS`) so an operator's price expression reads the same for
#: every vendor; report the ones your vendor knows and leave the others out.
Usage = Mapping[str, Any]

#: The kinds of derived task (a new task made from an earlier completed task of the same
#: token): ``remix`` (a new take of the source with a new prompt), ``extend`` (a
#: continuation of the source) and ``edit`` (the source changed as the prompt says).
DERIVE_OPERATIONS: tuple[str, ...] = ("remix", "extend", "edit")

#: The result variants a completion may carry, as ``GET /v1/videos/{id}/content?variant=``
#: names them. ``video`` is required; the others are asked for with ``fetch_result`` and
#: are absent when it answers None.
ARTIFACTS: tuple[str, ...] = ("video", "thumbnail", "spritesheet", "last_frame", "audio")


def _operations(values: Iterable[str]) -> frozenset[str]:
    # A named converter (not the bare ``frozenset``) so type checkers see ``operations``
    # takes any iterable of names.
    return frozenset(values)


@attrs.frozen
class Model:
    """A model a vendor can run.

    ``name`` is the public name clients use (``kling-v1``, ``veo-3``); ``vendor_model`` is
    the vendor's own name (defaults to ``name``). ``aliases`` are extra public names for
    the same model. ``seconds`` lists the durations the model can make (empty = any);
    ``default_seconds`` is what it makes when the client does not say.
    ``operations`` names the derived tasks (:data:`DERIVE_OPERATIONS`: ``remix``,
    ``extend``, ``edit``) the model can make from one of its finished videos;
    ``supports_remix=True`` is the older spelling of ``"remix" in operations``.
    The core enforces what is declared here before the plugin's ``validate`` runs, with a
    400 naming the field: ``seconds`` (``param`` ``seconds``), ``text_to_video`` = False
    (a request without an image: ``image``), ``image_to_video`` = False (a request with
    one: the image's ``param``), ``sizes`` (allowed ``size`` values, ``WxH`` or ``W:H``;
    empty = any: ``size``), and ``reference_videos``/``reference_audio`` (video or audio
    entries of ``input_reference``; False = refused naming the entry).
    """

    name: str
    vendor_model: str | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    seconds: tuple[int, ...] = ()
    default_seconds: int | None = None
    image_to_video: bool = True
    text_to_video: bool = True
    supports_remix: bool = False
    sizes: tuple[str, ...] = ()
    reference_videos: bool = False
    reference_audio: bool = False
    operations: frozenset[str] = attrs.field(default=frozenset(), converter=_operations)

    def can(self, operation: str) -> bool:
        """Whether the model can make the derived task ``operation`` (``remix``, ``extend``, ``edit``)."""
        return operation in self.operations or (operation == "remix" and self.supports_remix)

    @property
    def upstream(self) -> str:
        return self.vendor_model or self.name


@attrs.frozen
class Vendor:
    """What a plugin registers through ``vidgate_register_vendors``.

    ``name`` is the vendor id used in channel configs (``vendor = "kling"``).
    ``poll_interval`` is how often (seconds) a task of this vendor is polled by default;
    ``deadline`` is how long (seconds) a task may run before the gateway gives up on it.
    Both can be overridden per channel with ``options``.
    ``needs_base_url`` tells config validation that a channel must set ``base_url``;
    ``default_base_url`` is used when the channel does not.
    ``poll_batch_size`` is the most tasks one ``vidgate_poll_many`` call may carry; 0 (or
    1) means the vendor has no batch poll and each task is polled on its own.
    """

    name: str
    models: tuple[Model, ...]
    poll_interval: float = 5.0
    deadline: float = 30 * 60.0
    default_base_url: str | None = None
    credentials: tuple[str, ...] = ()
    description: str = ""
    poll_batch_size: int = 0


@attrs.frozen
class Channel:
    """One configured account at a vendor, as the plugin sees it.

    ``credentials`` holds the vendor's own keys from ``[channels.credentials]`` (for
    example ``access_key``/``secret_key`` for Kling); never log or return them.
    ``options`` holds any other keys of ``[channels.options]``. ``model_map`` maps public
    model names to the vendor's names for this channel.
    """

    name: str
    vendor: str
    base_url: str = ""
    models: tuple[str, ...] = ()
    groups: tuple[str, ...] = ("default",)
    priority: int = 0
    weight: int = 1
    credentials: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    options: Mapping[str, Any] = attrs.field(factory=dict)
    model_map: Mapping[str, str] = attrs.field(factory=dict)
    max_concurrent: int | None = None
    rate_per_minute: float | None = None

    def vendor_model(self, model: Model) -> str:
        """The vendor's name for ``model`` on this channel (``model_map`` wins)."""
        return self.model_map.get(model.name) or model.upstream


@attrs.frozen
class VendorJob:
    """The vendor request a plugin built from a unified request (``vidgate_map_request``).

    ``payload`` is JSON-serialisable and is stored with the task; ``submit`` receives it
    back, possibly in another process after a restart, so it must hold everything the
    vendor call needs. ``seconds``, ``size`` and ``resolution`` describe what the vendor
    will actually make: the gateway bills exactly that and shows it to the client.

    ``usage`` holds the usage facts this job asks for, beyond those the core derives from
    ``seconds``/``size``/``resolution`` (``seconds``, ``size``, ``width``, ``height``,
    ``resolution``, ``count`` = 1): e.g. ``{"frames": 96, "fps": 24}`` or the ``tokens``
    the vendor will charge. The estimated price is computed from them and pre-deducted at
    submit; :attr:`PollResult.usage` later settles it to what the vendor reports.
    """

    payload: dict[str, Any]
    seconds: int
    size: str
    resolution: str | None = None
    usage: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SourceTask:
    """The finished task a derived task (remix, extend, edit) is made from, as ``derive``
    receives it. Always a completed task of the same token, on the same channel.

    * ``id``: the gateway's public id (for logs; never send it to the vendor).
    * ``handle``: the vendor handle ``submit`` returned for it (the vendor's id is here).
    * ``result``: the ``result`` of its completing :class:`PollResult`.
    * ``job``: the :class:`VendorJob` it was made from (its ``payload`` as mapped then).
    * ``prompt``, ``seconds``, ``size``: what it made.
    * ``media``: the variants the gateway stored for it (``video``, ``thumbnail``,
      ``last_frame``, ...) as local files, for vendors that need the bytes (upload them,
      decode them). Read them off the event loop (``asyncio.to_thread``,
      :meth:`MediaSource.from_file`). They exist for the duration of the ``derive`` call
      only (with object storage they are temporary copies): copy what a later step needs.
    """

    id: str
    handle: dict[str, Any]
    result: dict[str, Any]
    job: VendorJob | None
    prompt: str | None
    seconds: int | None
    size: str | None
    media: Mapping[str, Path] = attrs.field(factory=dict)


@attrs.frozen
class Submission:
    """A vendor accepted a task.

    ``handle`` is JSON-serialisable and is all that ``poll`` and ``fetch_result`` will get
    back (for example the vendor task id and the endpoint family). ``vendor_task_id`` is
    the vendor's id, for operators' logs and for matching callbacks; it never reaches a
    client. ``poll_after`` (seconds) overrides the first poll delay.
    """

    handle: dict[str, Any]
    vendor_task_id: str
    poll_after: float | None = None


@attrs.frozen
class TaskError:
    """Why a task failed, as shown to the client (``error.code``, ``error.message``)."""

    code: str
    message: str


@attrs.frozen
class PollResult:
    """What one poll learned.

    ``status`` is one of ``queued``, ``in_progress``, ``completed``, ``failed``,
    ``cancelled`` (the vendor says the task was cancelled, e.g. from its console); use
    :meth:`unknown` for a vendor status word the plugin does not know: the task stays
    alive and the word is logged. ``progress`` is 0-100 when the vendor reports it.
    ``result`` (JSON-serialisable) is stored when completed and handed to
    ``fetch_result``; its key ``artifacts`` lists the variants beyond ``video`` and
    ``thumbnail`` the completion carries (``["last_frame", "spritesheet", "audio"]``),
    which are then asked for with ``fetch_result``. ``error`` explains a failure. ``poll_after`` suggests when to poll
    next (seconds). ``usage`` (with ``completed``) holds the usage facts the vendor
    reports for the finished task (``seconds``, ``width``/``height``, ``resolution``,
    ``tokens``, ``video_tokens``, ``audio_tokens``, ``credits``, ``count``, ...): the
    charge is settled to them. Facts it leaves out keep their estimated value.
    ``channel_unusable`` says, besides the task's own status, that the channel's account
    can take no new work (it ran out of credit mid-task, say): the message. The core
    takes the channel out of rotation as it does for a :class:`ChannelUnusable` error,
    and applies ``status`` as usual (typically ``failed``, refunded).
    """

    status: str
    progress: int | None = None
    result: dict[str, Any] | None = None
    error: TaskError | None = None
    vendor_status: str | None = None
    poll_after: float | None = None
    usage: Usage | None = None
    channel_unusable: str | None = None

    @classmethod
    def unknown(cls, vendor_status: str) -> PollResult:
        return cls(status="unknown", vendor_status=vendor_status)


class CancelOutcome(str, enum.Enum):
    """What a vendor said to a cancel (see :class:`CancelResult`)."""

    #: Stopped, and the vendor bills nothing (it had not started, or it never bills
    #: cancelled work): the client is refunded in full.
    CANCELLED = "cancelled"
    #: Stopped, but the vendor bills (some of) the work done. Give the billed facts in
    #: ``CancelResult.usage`` when the vendor says them; otherwise the operator's
    #: ``refund_on_unconfirmed_cancel`` decides.
    CANCELLED_AFTER_START = "cancelled_after_start"
    #: The vendor will not stop it (e.g. a running job). The gateway stops tracking the
    #: task (it ends ``cancelled``) and ``refund_on_unconfirmed_cancel`` decides.
    REFUSED = "refused"
    #: Too late: the vendor had already finished. The core polls once and the task ends
    #: ``completed`` or ``failed`` as the vendor says.
    FINISHED = "finished"


@attrs.frozen
class CancelResult:
    """The answer of ``cancel``. ``message`` is for operators (the task's attempts).

    ``usage`` (with ``CANCELLED_AFTER_START``) is what the vendor bills for the partial
    work, as usage facts; the client is then charged the model's price of exactly that.
    """

    outcome: CancelOutcome
    message: str = ""
    usage: Usage | None = None


@attrs.frozen
class MediaSource:
    """Bytes of a result, as an async stream of chunks, with its content type."""

    chunks: AsyncIterator[bytes]
    content_type: str = "video/mp4"

    @classmethod
    def from_bytes(cls, data: bytes, content_type: str = "video/mp4", chunk_size: int = 1 << 20) -> MediaSource:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(0, len(data), chunk_size):
                yield data[i : i + chunk_size]

        return cls(gen(), content_type)

    @classmethod
    def from_file(cls, path: Path, content_type: str = "video/mp4", chunk_size: int = 1 << 20) -> MediaSource:
        """Stream a local file without blocking the event loop."""

        async def gen() -> AsyncIterator[bytes]:
            f = await asyncio.to_thread(open, path, "rb")
            try:
                while chunk := await asyncio.to_thread(f.read, chunk_size):
                    yield chunk
            finally:
                await asyncio.to_thread(f.close)

        return cls(gen(), content_type)


@attrs.define
class CallContext:
    """Passed to every async vendor call.

    * ``channel``: the account this call must use.
    * ``http``: the process-wide :class:`aiohttp.ClientSession`. Pass ``timeout=ctx.timeout``
      (or a tighter one) on every request.
    * ``task_id``: the gateway's public task id. Use it as the vendor's idempotency or
      external id where the vendor has one, so a lost answer can be found again.
    * ``log``: a structlog logger bound with the task id, vendor and channel; every
      credential value of the channel is scrubbed from what it logs (as from anything
      logged during a hook call).
    * ``workdir``: a directory this vendor may use for its own files.
    * ``callback_url``: a gateway URL the vendor may POST status changes to, or None when
      the operator has not configured a public URL.
    * ``state``: a dict shared by all calls on this channel in this process (token caches).
    * ``request``: in ``submit``, ``recover`` and ``remix``, the task's unified request
      (re-read from the store after a restart), so a job can refer to its images by index
      (``ctx.request.images[i]``) instead of carrying their bytes a second time; encode or
      upload them here, off the event loop (``await asyncio.to_thread(image.base64)``).
      None in other calls.
    """

    channel: Channel
    http: aiohttp.ClientSession
    task_id: str
    log: structlog.stdlib.BoundLogger
    workdir: Path
    timeout: aiohttp.ClientTimeout
    callback_url: str | None = None
    state: dict[str, Any] = attrs.field(factory=dict)
    request: VideoRequest | None = None
    _fetch_image: Callable[..., Awaitable[tuple[bytes, str]]] | None = None
    _download: Callable[..., Awaitable[MediaSource]] | None = None

    async def fetch_image(self, url: str, param: str = "image") -> tuple[bytes, str]:
        """Fetch a client-supplied image URL safely: size cap, timeout, and no private,
        loopback or link-local addresses (redirects included) unless the operator allowed
        them. Returns ``(bytes, mime_type)``; raises ``VendorRejected`` naming ``param``
        (the client's field, e.g. ``"images[1]"``)."""
        assert self._fetch_image is not None
        return await self._fetch_image(url, param)

    async def download(self, url: str, headers: Mapping[str, str] | None = None) -> MediaSource:
        """Stream a vendor result URL through the address guard (private addresses only
        where the operator allowed them for this channel), following redirects; ``headers``
        (credentials) are sent only while the origin stays that of ``url``. Bounded by
        ``media.max_result_bytes`` and the ``[network] download_*`` time and rate limits;
        asks for identity encoding and decodes gzip/deflate itself. 5xx, connection
        failures and too-slow transfers raise ``VendorUnavailable``; 404/410, refused
        addresses and oversize results raise ``TaskFailed`` (``result_unavailable``)."""
        assert self._download is not None
        return await self._download(url, headers=headers)


#: How long :meth:`VendorPlugin.read_callback` may take before the callback is answered 400
#: (a vendor retries an unanswered callback; polling stays the fallback).
CALLBACK_SECONDS = 15.0


@attrs.frozen
class CallbackResult:
    """What ``parse_callback`` learned from a vendor callback (a plain ``str`` still means
    ``CallbackResult(vendor_task_id=that)``).

    * ``vendor_task_id``: the vendor task the callback is about (its task is polled at
      once), or None (nothing to poll, e.g. a URL-verification challenge).
    * ``reply``: the JSON object the vendor expects in the 200 answer (e.g. an echoed
      ``{"challenge": ...}``); None answers ``{"ok": true}``.
    * ``verified``: True when the plugin checked a signature and it holds; False when it
      fails (the callback is ignored and answered 401, and no task is made due); None
      when the vendor does not sign callbacks.
    """

    vendor_task_id: str | None = None
    reply: dict[str, Any] | None = None
    verified: bool | None = None


def verify_standard_webhook(body: bytes, headers: Mapping[str, str], secret: str | None) -> bool:
    """True when ``body`` carries a valid Standard Webhooks signature (``webhook-id``,
    ``webhook-timestamp`` within five minutes, ``webhook-signature``) for ``secret``
    (``whsec_...`` base64, e.g. a channel's ``credentials.webhook_secret``). Any failure,
    including a missing or malformed secret, is False: never raises."""
    if not secret:
        return False
    from standardwebhooks.webhooks import Webhook

    try:
        Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    except Exception:  # noqa: BLE001 - bad signature, stale timestamp, bad secret: all "not verified"
        return False
    return True


class VendorPlugin:
    """Base class of a vendor plugin: one vendor, its models, and its verbs as methods.

    Subclass it, set :attr:`name` and :attr:`models`, implement the methods, and expose
    an instance through the ``vidgate`` entry point. The instance registers itself through
    ``vidgate_register_vendors``; the core then awaits its methods directly (through
    :class:`vidgate.plugins.Plugins`, which scrubs credentials from what they raise and
    log), so a method answers only for this vendor and never sees another's calls.

    ``submit``, ``poll``, ``fetch_result`` and ``map_request`` are required. The verbs
    that raise ``NotImplementedError`` here (``poll_many``, ``recover``, ``derive``,
    ``remix``, ``cancel``) are optional: leave them out and the core knows the vendor
    does not offer them (:meth:`offers`). A plugin that needs raw pluggy hooks (one
    object serving several vendors, policy checks for every vendor) implements the
    hooks of :mod:`vidgate.hookspecs` instead; both kinds coexist.
    """

    name: ClassVar[str] = ""
    models: ClassVar[Iterable[Model]] = ()
    poll_interval: ClassVar[float] = 5.0
    deadline: ClassVar[float] = 30 * 60.0
    default_base_url: ClassVar[str | None] = None
    credentials: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    #: Most tasks per :meth:`poll_many` call (the vendor's page size for a list filtered
    #: by ids); only used when :meth:`poll_many` is implemented.
    poll_batch_size: ClassVar[int] = 50

    # -- override these ---------------------------------------------------------------

    def validate_channel(self, channel: Channel) -> list[str]:
        """Problems with a channel's settings; by default, missing :attr:`credentials` keys."""
        return [
            f"credentials.{key}: required by vendor {self.name!r}"
            for key in self.credentials
            if not channel.credentials.get(key)
        ]

    def channel_models(self, channel: Channel) -> list[Model]:
        """Models ``channel`` adds from its own config (default: none); see
        ``vidgate_channel_models``. Only called for channels :meth:`validate_channel` accepts."""
        return []

    def default_models(self, channel: Channel) -> Sequence[str] | None:
        """The registered models ``channel`` serves when its config lists no ``models``
        (default None: all of :attr:`models`); see ``vidgate_default_models``. Only
        called for channels :meth:`validate_channel` accepts."""
        return None

    def validate(self, request: VideoRequest, model: Model, channel: Channel) -> list[Problem]:
        """Return the problems this vendor has with ``request`` (empty if none)."""
        return []

    def map_request(self, request: VideoRequest, model: Model, channel: Channel) -> VendorJob:
        """Build the vendor request; raise ``RequestInvalid`` for what cannot be mapped."""
        raise NotImplementedError

    async def submit(self, job: VendorJob, ctx: CallContext) -> Submission:
        raise NotImplementedError

    async def poll(self, handle: dict[str, Any], ctx: CallContext) -> PollResult:
        raise NotImplementedError

    async def poll_many(self, handles: Mapping[str, dict[str, Any]], ctx: CallContext) -> Mapping[str, PollResult]:
        """Poll many tasks of ``ctx.channel`` in one vendor call (optional).

        ``handles`` maps vendor task ids to handles (at most :attr:`poll_batch_size`);
        answer ``{vendor_task_id: PollResult}``. Leave out a task you have no answer for
        and it is polled on its own with :meth:`poll`; an error makes the core poll every
        task on its own. ``ctx.task_id`` is ``""`` here.
        """
        raise NotImplementedError

    async def fetch_result(
        self, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
    ) -> MediaSource | None:
        """Return the bytes of ``variant`` (one of :data:`ARTIFACTS`: ``video``,
        ``thumbnail``, ``spritesheet``, ``last_frame``, ``audio``), or None when the
        vendor has no such variant (the gateway then makes its own thumbnail). Every
        variant is asked for once per completed task: answer None for the ones you never
        make without doing any I/O."""
        raise NotImplementedError

    async def recover(self, job: VendorJob, ctx: CallContext) -> Submission | None:
        """Find a task submitted with ``ctx.task_id`` whose answer was lost (crash between
        the vendor call and recording its id). Return its Submission, or None if the
        vendor certainly never received it (it is then submitted again). Leave this
        unimplemented when the vendor has no way to look a task up by our id: the gateway
        then fails and refunds such a task rather than risk a duplicate."""
        raise NotImplementedError

    async def derive(self, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext) -> Submission:
        """Start the derived task ``operation`` (``remix``, ``extend`` or ``edit``) of the
        finished ``source``, described by ``job`` (what ``map_request`` made of the new
        request: ``request.operation`` and ``request.derived_from`` are set there).

        Only called for models whose :attr:`Model.operations` hold ``operation``. The
        default hands ``remix`` to :meth:`remix` (the older verb) and refuses the others
        with ``VendorRejected``.
        """
        if operation == "remix" and self._overrides("remix"):
            return await self.remix(source.handle, job, ctx)
        raise VendorRejected(f"vendor {self.name!r} cannot {operation} videos", param="video")

    async def remix(self, handle: dict[str, Any], job: VendorJob, ctx: CallContext) -> Submission:
        """Start a remix of the finished task ``handle`` with ``job`` (prompt in payload).
        Older verb: new plugins implement :meth:`derive`, which also gets the stored result."""
        raise NotImplementedError

    async def cancel(self, handle: dict[str, Any], ctx: CallContext) -> CancelResult:
        """Ask the vendor to stop the task behind ``handle``; say what it answered.

        Leave this unimplemented when the vendor has no cancel: the gateway then stops
        tracking the task and the operator's ``refund_on_unconfirmed_cancel`` decides the
        refund. Raise ``TaskFailed`` when the vendor says the task no longer exists (the
        core polls once to learn how it ended); other ``VendorError`` classes count as an
        unconfirmed cancel.
        """
        raise NotImplementedError

    def parse_callback(self, body: bytes, headers: Mapping[str, str], channel: Channel) -> CallbackResult | str | None:
        """Read a vendor callback to ``channel``: the vendor task id it is about, a
        :class:`CallbackResult` (a reply the vendor expects, a signature check), or None
        if unparseable. Overrides may leave out ``channel`` (the older signature)."""
        return None

    async def read_callback(
        self, body: bytes, headers: Mapping[str, str], ctx: CallContext
    ) -> CallbackResult | str | None:
        """The asynchronous reading of a callback, for a check that needs I/O (a vendor's
        public signing keys, fetched with ``ctx.download`` and cached): override this
        instead of :meth:`parse_callback`; it answers the same. ``ctx`` is the channel's
        context outside any task (``task_id`` empty, ``request`` None). The gateway
        bounds it to :data:`CALLBACK_SECONDS`; past that (or when it raises) the callback
        is answered 400. The default answers :meth:`parse_callback`."""
        return self.parse_callback(body, headers, ctx.channel)

    async def shutdown(self) -> None:
        """Release what this plugin holds when the gateway stops (default: nothing)."""

    # -- what the core reads (do not override) ---------------------------------------

    def offers(self, verb: str) -> bool:
        """Whether this plugin offers the vendor verb ``verb`` (a method name above):
        always for the required and the defaulted ones, for the optional ones when the
        subclass implements them (``derive`` also when it implements only ``remix``)."""
        if verb == "derive":
            return self._overrides("derive") or self._overrides("remix")
        if verb in _OPTIONAL_VERBS:
            return self._overrides(verb)
        return callable(getattr(self, verb, None))

    def _overrides(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(VendorPlugin, method)

    def vendor_info(self) -> Vendor:
        return Vendor(
            name=self.name,
            models=tuple(self.models),
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            default_base_url=self.default_base_url,
            credentials=self.credentials,
            description=self.description,
            poll_batch_size=self.poll_batch_size if self.offers("poll_many") else 0,
        )

    @hookimpl
    def vidgate_register_vendors(self, register: Callable[[Vendor | VendorPlugin], None]) -> None:
        register(self)


#: The verbs a :class:`VendorPlugin` may leave out.
_OPTIONAL_VERBS = frozenset({"poll_many", "recover", "derive", "remix", "cancel"})
