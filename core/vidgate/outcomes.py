"""What a vendor error means, by phase: the one table the core consults.

A plugin raises a :class:`vidgate.errors.VendorError` subclass; what the core then does
depends on the class *and* on what it was doing (submitting, polling, fetching the
result, cancelling). :data:`TABLE` says it once for every pair, :func:`rule` looks a pair
up (a subclass inherits its parent's row), and :func:`classify` turns the raw exceptions
a plugin may let escape (aiohttp errors, timeouts, ``OSError``, a ``ValueError`` from a
malformed JSON body) into the class the core treats them as, the same way in every
phase. ``docs/plugins.md`` prints the table; ``tests/test_polling.py`` checks it is
complete.
"""

from __future__ import annotations

import asyncio
import enum
import json

import aiohttp
import attrs

from .errors import (
    ChannelUnusable,
    ModelRetired,
    TaskFailed,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)


class Phase(str, enum.Enum):
    SUBMIT = "submit"  # submit, remix, and the recover lookup of an unclear submit
    POLL = "poll"  # poll and poll_many
    FETCH = "fetch"  # fetch_result and the streaming of its bytes
    CANCEL = "cancel"


class Action(str, enum.Enum):
    """What happens to the task (or, at submit, to the client's request)."""

    #: Submit: answer the client 400 with the vendor's message; refunded; no other channel.
    REJECT_CLIENT = "reject_client"
    #: Submit: retry on the same channel with backoff (``network.submit_retries``), then
    #: the next channel.
    RETRY_SAME_CHANNEL = "retry_same_channel"
    #: Submit: try the next channel (after looking the task up by our id when the error
    #: says the vendor may have received it).
    NEXT_CHANNEL = "next_channel"
    #: Poll/fetch: try again later with exponential backoff; the task stays alive.
    RETRY_BACKOFF = "retry_backoff"
    #: Fail the task (refunded) with the error's code and message.
    FAIL_TASK = "fail_task"
    #: Poll: within ``worker.not_found_grace_seconds`` of the submit, ``retry_backoff``
    #: (vendors are eventually consistent right after a create); after it, ``fail_task``.
    FAIL_AFTER_GRACE = "fail_after_grace"
    #: Cancel: the vendor no longer has the task; poll once to learn how it ended.
    LEARN_ENDING = "learn_ending"
    #: Cancel: unconfirmed; stop tracking, ``refund_on_unconfirmed_cancel`` decides.
    END_UNCONFIRMED = "end_unconfirmed"


class BreakerEffect(str, enum.Enum):
    """What the error does to the channel's circuit breaker (which gates new submits)."""

    NONE = "none"
    #: Counts toward opening (three consecutive failures open it).
    COUNT = "count"
    #: Opens it at once for the channel's ``cooldown_seconds`` (an account problem).
    OPEN = "open"
    #: The channel answered properly (the request was bad, not the channel).
    SUCCESS = "success"


@attrs.frozen
class Rule:
    """One cell of the table.

    ``strike``: the failure counts toward the task's limit in that phase
    (``worker.max_poll_failures`` consecutive failed polls, ``worker.fetch_attempts``
    failed downloads). ``code``: the task's ``error.code`` when the action fails it
    (``None``: the error's own ``code`` for ``TaskFailed``, else ``vendor_failed``).
    """

    action: Action
    breaker: BreakerEffect = BreakerEffect.NONE
    strike: bool = False
    code: str | None = None


A, B = Action, BreakerEffect

#: (phase, error class) -> rule. Every VendorError subclass a plugin may raise has a row
#: in every phase.
TABLE: dict[tuple[Phase, type[VendorError]], Rule] = {
    # -- submit -----------------------------------------------------------------------
    (Phase.SUBMIT, VendorRejected): Rule(A.REJECT_CLIENT, B.SUCCESS, code="vendor_rejected"),
    # The vendor answered: the channel works (a half-open probe closes the breaker).
    (Phase.SUBMIT, TaskFailed): Rule(A.REJECT_CLIENT, B.SUCCESS),
    (Phase.SUBMIT, VendorRateLimited): Rule(A.RETRY_SAME_CHANNEL),
    (Phase.SUBMIT, VendorUnavailable): Rule(A.NEXT_CHANNEL, B.COUNT),
    (Phase.SUBMIT, ChannelUnusable): Rule(A.NEXT_CHANNEL, B.OPEN),
    # The model is gone on this channel only; the account still serves its other models.
    (Phase.SUBMIT, ModelRetired): Rule(A.NEXT_CHANNEL, code="model_retired"),
    # At submit a lost task can only be the source of a derived task (remix, extend).
    (Phase.SUBMIT, TaskNotFound): Rule(A.REJECT_CLIENT, code="vendor_task_lost"),
    # -- poll ---------------------------------------------------------------------------
    (Phase.POLL, VendorRejected): Rule(A.RETRY_BACKOFF, strike=True),
    (Phase.POLL, TaskFailed): Rule(A.FAIL_TASK),
    # The vendor answered and knows the task; it is our pace that is wrong.
    (Phase.POLL, VendorRateLimited): Rule(A.RETRY_BACKOFF),
    (Phase.POLL, VendorUnavailable): Rule(A.RETRY_BACKOFF, strike=True),
    # Transient for the task (the account may be topped up), but new submits must not
    # go to an account that cannot serve.
    (Phase.POLL, ChannelUnusable): Rule(A.RETRY_BACKOFF, B.OPEN, strike=True),
    (Phase.POLL, TaskNotFound): Rule(A.FAIL_AFTER_GRACE, strike=True, code="vendor_task_lost"),
    (Phase.POLL, ModelRetired): Rule(A.FAIL_TASK, code="model_retired"),
    # -- fetch --------------------------------------------------------------------------
    (Phase.FETCH, VendorRejected): Rule(A.RETRY_BACKOFF, strike=True),
    (Phase.FETCH, TaskFailed): Rule(A.FAIL_TASK),
    (Phase.FETCH, VendorRateLimited): Rule(A.RETRY_BACKOFF),
    (Phase.FETCH, VendorUnavailable): Rule(A.RETRY_BACKOFF, strike=True),
    (Phase.FETCH, ChannelUnusable): Rule(A.RETRY_BACKOFF, B.OPEN, strike=True),
    (Phase.FETCH, TaskNotFound): Rule(A.FAIL_TASK, code="result_unavailable"),
    (Phase.FETCH, ModelRetired): Rule(A.FAIL_TASK, code="model_retired"),
    # -- cancel -------------------------------------------------------------------------
    (Phase.CANCEL, VendorRejected): Rule(A.END_UNCONFIRMED),
    (Phase.CANCEL, TaskFailed): Rule(A.LEARN_ENDING),
    (Phase.CANCEL, VendorRateLimited): Rule(A.END_UNCONFIRMED),
    (Phase.CANCEL, VendorUnavailable): Rule(A.END_UNCONFIRMED),
    (Phase.CANCEL, ChannelUnusable): Rule(A.END_UNCONFIRMED, B.OPEN),
    (Phase.CANCEL, TaskNotFound): Rule(A.LEARN_ENDING),
    (Phase.CANCEL, ModelRetired): Rule(A.END_UNCONFIRMED),
}

#: A poll answered ``PollResult.unknown(word)``: a failed poll (a strike), but the vendor
#: answered, so the next poll comes at the normal interval rather than after a backoff.
UNKNOWN_STATUS = Rule(A.RETRY_BACKOFF, strike=True)


def rule(phase: Phase, error: VendorError) -> Rule:
    """The rule for ``error`` in ``phase``; a subclass a plugin defines inherits its
    parent's row, and a bare ``VendorError`` is treated as ``VendorUnavailable``."""
    for cls in type(error).__mro__:
        found = TABLE.get((phase, cls))
        if found is not None:
            return found
    return TABLE[(phase, VendorUnavailable)]


def failure_code(found: Rule, error: VendorError) -> str:
    """The ``error.code`` a task failed by ``error`` under ``found`` gets."""
    if isinstance(error, TaskFailed) and found.code is None:
        return error.code
    return found.code or "vendor_failed"


def classify(exc: BaseException) -> VendorError | None:
    """The :class:`VendorError` a raw exception escaping a plugin stands for, or ``None``
    when it is none of the transport or parsing failures below (a bug in the plugin).

    ========================================  =================================================
    ``VendorError``                            itself
    ``aiohttp.ContentTypeError``,              ``VendorUnavailable`` "malformed answer"
    ``json.JSONDecodeError``, ``UnicodeDecodeError``
    ``aiohttp.ClientResponseError`` (from      by status: 429 ``VendorRateLimited``, 401/403
    ``raise_for_status``)                      ``ChannelUnusable``, 404/410 ``TaskNotFound``,
                                               other 4xx ``VendorRejected``, 5xx
                                               ``VendorUnavailable``
    connect timeout, connection refused,       ``VendorUnavailable`` (not received)
    DNS/connector errors
    other timeouts (``asyncio.TimeoutError``,  ``VendorUnavailable`` (maybe received)
    read timeouts), dropped connections,
    payload errors, other ``aiohttp.ClientError``
    and ``OSError``
    ========================================  =================================================

    Messages name the exception type, never a URL (URLs may carry credentials).
    """
    if isinstance(exc, VendorError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ContentTypeError):
        return VendorUnavailable(f"malformed answer from the vendor ({name})", maybe_received=True)
    if isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
        text = f"HTTP {status} from the vendor"
        if status == 429:
            return VendorRateLimited(text, http_status=status)
        if status in (401, 403):
            return ChannelUnusable(text, http_status=status)
        if status in (404, 410):
            return TaskNotFound(text, http_status=status)
        if 400 <= status < 500:
            return VendorRejected(text, http_status=status)
        return VendorUnavailable(text, http_status=status, maybe_received=status != 503)
    if isinstance(exc, getattr(aiohttp, "ConnectionTimeoutError", ())):
        return VendorUnavailable(f"timeout connecting to the vendor ({name})", maybe_received=False)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return VendorUnavailable(f"timeout waiting for the vendor ({name})", maybe_received=True)
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return VendorUnavailable(f"could not connect to the vendor ({name})", maybe_received=False)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return VendorUnavailable(f"connection to the vendor failed ({name})", maybe_received=True)
    # Only parse errors of a vendor's answer: a plain ValueError (or UnicodeError) may just
    # as well come from the client's input, and must never count against the channel.
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return VendorUnavailable(f"malformed answer from the vendor ({name})", maybe_received=True)
    return None


def as_vendor_error(exc: BaseException) -> VendorError:
    """:func:`classify`, with a plugin bug counted as a transient failure (never a 500,
    never a lost task; the caller logs the traceback)."""
    found = classify(exc)
    if found is not None:
        return found
    return VendorUnavailable(f"plugin error: {type(exc).__name__}", maybe_received=True)


def attempt_detail(exc: VendorError) -> str:
    """How an attempt records ``exc`` for operators: the message, the vendor's code and
    request id when the plugin gave them."""
    parts = [exc.message]
    if exc.vendor_code is not None:
        parts.append(f"vendor_code={exc.vendor_code}")
    if exc.request_id:
        parts.append(f"request_id={exc.request_id}")
    return " ".join(parts)
