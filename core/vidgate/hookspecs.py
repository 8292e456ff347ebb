"""The vidgate plugin contract.

pluggy calls hook implementations synchronously. vidgate keeps that and handles vendor
I/O like this, once and for all:

* Hooks that only compute (``vidgate_register_vendors``, ``vidgate_validate_request``,
  ``vidgate_map_request``, ``vidgate_parse_callback``) return their answer directly.
* Hooks that talk to a vendor (``vidgate_submit``, ``vidgate_poll``, ``vidgate_poll_many``,
  ``vidgate_fetch_result``, ``vidgate_recover``, ``vidgate_derive``, ``vidgate_remix``,
  ``vidgate_cancel``)
  are *plain* functions
  that return an **awaitable** (typically the coroutine of an ``async def`` helper,
  called but not awaited), and the core awaits it. They return ``None`` when the
  ``vendor`` argument is not theirs.
* An ``async def`` decorated with ``@hookimpl`` is refused at load time: pluggy would
  treat the coroutine object as a non-None answer, which breaks ``firstresult`` for every
  other plugin.

Every vendor-scoped hook receives ``vendor`` (the vendor id of the channel the core chose)
and must answer only for its own vendors. A :class:`vidgate.VendorPlugin` does not go
through these hooks for its verbs: it registers itself with ``vidgate_register_vendors``
and the core awaits its methods (of the same names and arguments, without ``vendor``)
through :meth:`vidgate.plugins.Plugins.call`. Subclass it unless you serve several
vendors from one object or add policy for every vendor.

Errors: async vendor calls raise subclasses of :class:`vidgate.errors.VendorError`; the
class and the phase decide between reject (400), retry, fail over, and fail the task (the
table in :mod:`vidgate.outcomes`). Raw aiohttp, timeout and JSON errors that escape are
classified by :func:`vidgate.outcomes.classify`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:
    from .errors import Problem
    from .request import VideoRequest
    from .vendor import (
        CallbackResult,
        CallContext,
        CancelResult,
        Channel,
        MediaSource,
        Model,
        PollResult,
        SourceTask,
        Submission,
        Vendor,
        VendorJob,
        VendorPlugin,
    )


@hookspec
def vidgate_register_vendors(register: Callable[[Vendor | VendorPlugin], None]) -> None:
    """Register the vendors this plugin provides.

    :param register: call ``register(Vendor(name=..., models=(Model(...), ...)))`` once
        per vendor whose verbs this plugin answers through the hooks below, or
        ``register(vendor_plugin)`` with a :class:`vidgate.VendorPlugin` whose methods
        the core then awaits (what ``VendorPlugin`` does for itself). A vendor name
        claimed by two plugins stops the gateway at start-up with an error naming both.

    Called once when the gateway starts (and by ``vidgate plugins``). Do no I/O here.
    """


@hookspec
def vidgate_validate_channel(vendor: str, channel: Channel) -> list[str] | None:
    """Check a configured channel of ``vendor`` (credentials, options) before any call.

    :return: messages naming the key relative to the channel (for example
        ``"credentials.api_key: required"``), an empty list when the channel is usable,
        or ``None`` for other vendors. Called by ``vidgate check-config`` and at start-up,
        where a channel with problems stops the gateway with the config file and key named.
    """


@hookspec
def vidgate_channel_models(vendor: str, channel: Channel) -> list[Model] | None:
    """The models a configured channel of ``vendor`` adds from its own settings.

    For vendors that resell an open catalogue (a queue serving hundreds of models), an
    operator describes a model the plugin does not know in the channel's config (its
    ``options`` or ``model_map``); the plugin turns that into :class:`vidgate.Model`
    entries here. Each becomes a public model served by this channel only (on this
    channel it wins over a registered model of the same name). Called at start-up and
    by ``vidgate check-config``, after ``vidgate_validate_channel`` found no problem.
    Do no I/O.

    :return: the channel's extra models (empty when none), or ``None`` for other vendors.
    """


@hookspec
def vidgate_default_models(vendor: str, channel: Channel) -> list[str] | None:
    """The registered models a configured channel of ``vendor`` serves when its config
    lists no ``models``; without an answer, every model the vendor registered.

    For a vendor whose channels each reach one of several APIs (chosen per channel in
    ``options``) that serve different models: answering the models of the channel's own
    API keeps requests for the others off it, so they go to a channel that can take them
    instead of failing there. An operator's ``models`` list always wins. Called at
    start-up, after ``vidgate_validate_channel`` found no problem. Do no I/O.

    :return: public model names (a model's aliases come with it), or ``None`` for other vendors.
    """


@hookspec
def vidgate_validate_request(
    vendor: str, request: VideoRequest, model: Model, channel: Channel
) -> list[Problem] | None:
    """Check a unified request against what ``vendor`` can do.

    :param vendor: the vendor id of the channel that would serve the request.
    :param request: the request, already valid by the unified rules of
        :mod:`vidgate.request`.
    :param model: the public model resolved for the request.
    :param channel: the channel that would serve it.
    :return: a list of :class:`vidgate.errors.Problem` (empty if fine), or ``None`` when
        the vendor is not yours. Answers of all plugins are concatenated, so a
        non-vendor plugin may add policy checks by answering for every vendor.

    Each problem becomes part of a 400 whose ``param`` names the field (use
    ``"metadata.<key>"`` for metadata keys). Called before anything is stored or billed.
    """


@hookspec(firstresult=True)
def vidgate_map_request(vendor: str, request: VideoRequest, model: Model, channel: Channel) -> VendorJob | None:
    """Map the unified request and its ``metadata`` into the vendor's request.

    :return: a :class:`vidgate.VendorJob` whose ``payload`` is the JSON the vendor call
        needs and whose ``seconds``/``size``/``resolution`` say exactly what the vendor
        will make (this is what the client is billed for), or ``None`` for other vendors.

    Resolve vendor defaults here so billing matches reality. Metadata keys that would
    change the billed model must be refused by raising
    :class:`vidgate.errors.RequestInvalid`. Called once per channel tried, because two
    channels may map a public model to different vendor names. Stops at the first
    non-None result.
    """


@hookspec(firstresult=True)
def vidgate_submit(vendor: str, job: VendorJob, ctx: CallContext) -> Awaitable[Submission] | None:
    """Send ``job`` to the vendor and return an awaitable of :class:`vidgate.Submission`.

    The task row, with ``job``, is stored before this is called, and the client is
    answered only after the returned handle is stored. Use ``ctx.task_id`` as the vendor's
    idempotency/external id when it has one. Raise a :class:`vidgate.errors.VendorError`
    subclass on failure. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def vidgate_poll(vendor: str, handle: dict[str, Any], ctx: CallContext) -> Awaitable[PollResult] | None:
    """Ask the vendor how the task behind ``handle`` is doing.

    :return: an awaitable of :class:`vidgate.PollResult`. Unknown vendor status words
        must come back as ``PollResult.unknown(word)``. Transient problems raise
        ``VendorUnavailable``/``VendorRateLimited``: the worker backs off and polls
        again. ``worker.max_poll_failures`` consecutive failed polls (errors other than
        rate limits, and unknown words) fail the task ``poll_failures_exceeded``. Raise
        ``TaskNotFound`` when the vendor does not know the task (fails it
        ``vendor_task_lost`` once ``worker.not_found_grace_seconds`` have passed since
        the submit) and ``ModelRetired`` when the vendor retired the model (fails it at
        once).
    """


@hookspec(firstresult=True)
def vidgate_poll_many(
    vendor: str, handles: Mapping[str, dict[str, Any]], ctx: CallContext
) -> Awaitable[Mapping[str, PollResult]] | None:
    """Poll several of one channel's tasks in one vendor call (a list endpoint filtered by ids).

    Optional. Used only when the vendor declares ``Vendor.poll_batch_size`` >= 2
    (``VendorPlugin`` does so for subclasses that implement ``poll_many``).

    :param handles: ``{vendor_task_id: handle}``, at most ``poll_batch_size`` entries, all
        on ``ctx.channel``. ``ctx.task_id`` is ``""`` (the call is about many tasks).
    :return: an awaitable of ``{vendor_task_id: PollResult}``. A task left out of the
        answer is polled on its own with ``vidgate_poll`` (say nothing rather than guess,
        e.g. for an id the list does not show); raising any error makes the core poll
        each task on its own, so every per-task rule (failure counts, grace for
        ``TaskNotFound``) stays that of ``vidgate_poll``. ``None`` for other vendors.
    """


@hookspec(firstresult=True)
def vidgate_fetch_result(
    vendor: str, handle: dict[str, Any], result: dict[str, Any], variant: str, ctx: CallContext
) -> Awaitable[MediaSource | None] | None:
    """Return an awaitable of the result bytes as a :class:`vidgate.MediaSource`.

    :param result: the ``result`` dict of the completing :class:`vidgate.PollResult`.
    :param variant: one of ``vidgate.ARTIFACTS``: ``"video"``, ``"thumbnail"``,
        ``"spritesheet"``, ``"last_frame"`` (an image of the last frame), ``"audio"``.
        Resolve to ``None`` when the vendor has no such variant (answer at once, without
        I/O, for variants your vendor never makes); for ``"thumbnail"`` the gateway then
        makes its own.

    ``video`` and ``thumbnail`` are always asked for; the others only when listed in
    ``result["artifacts"]`` by the completing poll. Called by the worker once a poll
    reports ``completed``, once per variant; the
    gateway copies every artifact into its media storage so downloads outlive the
    vendor's URL. Only ``video`` is required: an error on another variant is logged and
    that variant is left out.
    """


@hookspec(firstresult=True)
def vidgate_recover(vendor: str, job: VendorJob, ctx: CallContext) -> Awaitable[Submission | None] | None:
    """Find a submission whose answer was lost (the gateway died mid-submit).

    :return: ``None`` when you cannot look tasks up by ``ctx.task_id`` (the gateway then
        fails and refunds the task rather than risk a duplicate at the vendor), else an
        awaitable resolving to the :class:`vidgate.Submission` found, or to ``None`` if
        the vendor certainly never received the task (it is then submitted again).
    """


@hookspec(firstresult=True)
def vidgate_derive(
    vendor: str, operation: str, source: SourceTask, job: VendorJob, ctx: CallContext
) -> Awaitable[Submission] | None:
    """Start a task derived from an earlier completed task of the same token.

    :param operation: ``"remix"``, ``"extend"`` or ``"edit"`` (``vidgate.DERIVE_OPERATIONS``);
        the core only asks for operations the model declares in ``Model.operations``.
    :param source: the :class:`vidgate.SourceTask`: its vendor ``handle``, stored
        ``result``, original ``job`` and the gateway's stored ``media`` files.
    :param job: what ``vidgate_map_request`` made of the new request (whose
        ``operation`` and ``derived_from`` are set; ``seconds_given`` False when the
        client left an extension's ``seconds`` out and the core filled in the
        source's); the task is billed on it.
    :return: an awaitable of :class:`vidgate.Submission`, or ``None`` for other vendors.

    The task runs on the source's channel (no failover). For ``remix`` a plugin
    implementing only ``vidgate_remix`` is used when this answers ``None``.
    """


@hookspec(firstresult=True)
def vidgate_remix(
    vendor: str, handle: dict[str, Any], job: VendorJob, ctx: CallContext
) -> Awaitable[Submission] | None:
    """Start a remix of the completed task behind ``handle`` (the vendor's handle, never
    the public id), described by ``job``. Return ``None`` if the vendor cannot remix.

    The older remix-only verb, asked when ``vidgate_derive`` answers ``None`` for a
    remix; new plugins implement ``vidgate_derive``."""


@hookspec(firstresult=True)
def vidgate_cancel(vendor: str, handle: dict[str, Any], ctx: CallContext) -> Awaitable[CancelResult] | None:
    """Ask the vendor to stop the task behind ``handle`` (a client cancelled it).

    :return: an awaitable of :class:`vidgate.CancelResult`, or ``None`` when the vendor
        has no cancel (the gateway then stops tracking the task, marks it ``cancelled``
        and refunds per the operator's ``refund_on_unconfirmed_cancel``).

    ``CancelOutcome.CANCELLED`` (nothing billed) refunds the client in full;
    ``CANCELLED_AFTER_START`` charges the price of ``CancelResult.usage`` when given;
    ``REFUSED`` ends tracking like ``None``; ``FINISHED`` makes the core poll once, and
    the task ends ``completed`` or ``failed``. Raise ``TaskFailed`` when the vendor no
    longer knows the task; any other error counts as an unconfirmed cancel. Make it
    idempotent: a race (the client's call and the submit path) may call it twice. A task
    still being submitted is cancelled as soon as its handle is stored.
    """


@hookspec(firstresult=True)
def vidgate_parse_callback(
    vendor: str, body: bytes, headers: Mapping[str, str], channel: Channel
) -> CallbackResult | str | None:
    """Read a vendor's status callback to ``channel`` (``POST /v1/callbacks/{channel}``).

    :return: the vendor task id it concerns (a ``str``), a
        :class:`vidgate.CallbackResult`, or ``None`` when unparseable (answered 400).
        ``CallbackResult.reply`` is the JSON object the vendor expects back with the 200
        (e.g. an echoed ``challenge``); ``verified=False`` (a signature that does not
        hold; check it with :func:`vidgate.verify_standard_webhook` and a secret from
        ``channel.credentials``) makes the gateway ignore the callback and answer 401.

    Callbacks are hints, signed or not: the gateway only polls that task at once; it
    never takes a callback body as the result. An implementation may leave out
    ``channel`` (pluggy passes only the arguments it names).
    """


@hookspec
def vidgate_shutdown() -> Awaitable[None] | None:
    """The gateway is stopping: release what the plugin holds (worker processes, caches).

    Return ``None`` or an awaitable; every plugin's answer is awaited, each bounded by a
    few seconds. Work a plugin abandons here must be resumable from its stored state: the
    next start polls every unfinished task again.
    """
