"""Errors that reach API clients, and errors that vendor plugins raise.

Two families:

* :class:`APIError` and its subclasses are answers to an HTTP client. Each carries the
  HTTP status and the fields of the one error shape
  ``{"error": {"message", "type", "param", "code"}}``.
* :class:`VendorError` and its subclasses are raised by vendor plugins from their async
  calls. The *class* tells the core what to do next (reject, retry, fail over), so a
  plugin author classifies the vendor's answer once, in the plugin, and the core never
  has to know a vendor's status words or error codes.
"""

from __future__ import annotations

from typing import Any

import attrs


class VidgateError(Exception):
    """Base class of every error vidgate raises on purpose."""


@attrs.define(eq=False)
class APIError(VidgateError):
    """An error answered to an API client in the one error shape."""

    message: str
    status: int = 400
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    # Errors a retry cannot fix are marked so the OpenAI SDK does not retry them.
    retryable: bool | None = None
    headers: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def body(self) -> dict[str, Any]:
        """The JSON body (what :class:`vidgate.wire.ErrorBody` publishes), for callers
        outside the HTTP layer (webhook and replay records)."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# Named constructors, one per kind of answer: call sites say what happened, never the
# six fields of the error shape.


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    """A 400 that names the offending field."""
    return APIError(message, 400, "invalid_request_error", param, code, retryable=False)


def unauthorized(message: str) -> APIError:
    """A 401: no API key, or one the gateway does not know."""
    return APIError(message, 401, "authentication_error", None, "invalid_api_key", retryable=False)


def forbidden(message: str, param: str | None = None, code: str = "model_not_allowed") -> APIError:
    """A 403: the key may not do this."""
    return APIError(message, 403, "permission_error", param, code, retryable=False)


def not_found(message: str = "No such video.", param: str | None = None) -> APIError:
    """A 404."""
    return APIError(message, 404, "invalid_request_error", param, "not_found", retryable=False)


def conflict(
    message: str,
    code: str = "invalid_state",
    *,
    param: str | None = None,
    retryable: bool = False,
    retry_after: int | None = None,
) -> APIError:
    """A 409: the request collides with the task's state or another request."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return APIError(message, 409, "invalid_request_error", param, code, retryable=retryable, headers=headers)


def gone(message: str, code: str) -> APIError:
    """A 410: it existed and never will again (expired media)."""
    return APIError(message, 410, "invalid_request_error", None, code, retryable=False)


def range_not_satisfiable(size: int) -> APIError:
    """A 416 for a ``Range`` outside a file of ``size`` bytes."""
    return APIError(
        f"The Range is outside the file ({size} bytes).",
        416,
        "invalid_request_error",
        "Range",
        "range_not_satisfiable",
        retryable=False,
        headers={"Content-Range": f"bytes */{size}"},
    )


def insufficient_quota(message: str) -> APIError:
    """A 429 that waiting cannot fix: the key's balance is too low (OpenAI's shape)."""
    return APIError(message, 429, "insufficient_quota", None, "insufficient_quota", retryable=False)


def rate_limited(message: str, code: str = "rate_limit_exceeded", retry_after: int | None = None) -> APIError:
    """A 429 the client may retry (after ``retry_after`` seconds when given)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return APIError(message, 429, "rate_limit_error", None, code, retryable=True, headers=headers)


def server_error(message: str, code: str, *, retryable: bool = False) -> APIError:
    """A 500: the gateway's or the operator's fault (a broken price expression)."""
    return APIError(message, 500, "server_error", None, code, retryable=retryable)


def unavailable(message: str, code: str, *, retryable: bool = True) -> APIError:
    """A 503: the gateway could not get the work done now (no channel, a vendor that
    did not confirm); ``retryable`` False when retrying cannot help."""
    return APIError(message, 503, "server_error", None, code, retryable=retryable)


class RequestInvalid(APIError):
    """Several validation problems at once; the first one names ``param``."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        text = "; ".join(f"{p.param}: {p.message}" if p.param else p.message for p in problems)
        super().__init__(text, 400, "invalid_request_error", first.param, first.code, False)
        self.problems = problems


@attrs.frozen
class Problem:
    """One thing wrong with a request, as found by the core or a plugin's validator.

    ``param`` is the client-facing field path, e.g. ``"seconds"`` or
    ``"metadata.cfg_scale"``; it becomes ``error.param`` in the 400 answer.
    """

    param: str | None
    message: str
    code: str = "invalid_value"


# --- raised by vendor plugins -------------------------------------------------------


class VendorError(VidgateError):
    """Base class of errors a vendor plugin raises from ``submit``, ``poll`` or ``fetch``.

    Raise one of the subclasses; the class decides what the core does:

    ========================  ==================================================
    :class:`VendorRejected`    the request itself is wrong (bad parameter, content
                               policy): the client gets a 400, no other channel
                               is tried, the charge is refunded
    :class:`VendorRateLimited` slow down: retried with backoff (``retry_after``
                               honoured), then another channel
    :class:`VendorUnavailable` transient (5xx, timeout, malformed answer): retried
                               with backoff, then another channel; never fails a
                               task while polling
    :class:`ChannelUnusable`   this account cannot serve (auth, balance,
                               permission): the channel leaves rotation for its
                               cool-down and the task moves on
    :class:`TaskFailed`        the vendor says this task will never finish
                               (used from ``poll`` and ``fetch_result``)
    :class:`TaskNotFound`      the vendor does not know this task (404 for the
                               task id): fails it ``vendor_task_lost``, but only
                               after ``worker.not_found_grace_seconds``
    :class:`ModelRetired`      the vendor retired the model (404/410 naming the
                               model): fails the task with the vendor's message
    ========================  ==================================================

    What each class means in each phase (submit, poll, fetch, cancel) is the table in
    :mod:`vidgate.outcomes`; ``docs/plugins.md`` prints it.

    ``vendor_code`` is the vendor's own error code and ``http_status`` the HTTP status it
    came with, kept for operators' logs; they never reach a client. ``message`` must not contain credentials.

    Only what the vendor itself answered counts against a channel's circuit breaker
    (:class:`VendorUnavailable` and :class:`ChannelUnusable`); see :mod:`vidgate.dispatch`.
    Any other exception escaping a plugin is treated as a plugin bug: logged, answered to
    that one client, never counted.
    """

    def __init__(
        self,
        message: str,
        *,
        vendor_code: str | int | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vendor_code = vendor_code
        self.param = param
        self.retry_after = retry_after
        self.request_id = request_id
        self.http_status = http_status


class VendorRejected(VendorError):
    """The vendor refused the request as invalid; retrying cannot help."""


class VendorRateLimited(VendorError):
    """The vendor asked us to slow down (rate or concurrency limit)."""


class VendorUnavailable(VendorError):
    """A transient failure: 5xx, timeout, connection error, malformed body.

    ``maybe_received`` says whether the vendor may have accepted the request anyway. From
    ``submit`` or ``remix`` it decides whether the task may go to another channel:

    * ``False``: the vendor certainly did not create a job (connection refused, DNS
      failure, a connect timeout, an error answer from the vendor itself): the core fails
      over to the next channel.
    * ``True`` (the default, the safe value): it may have (a read timeout, a connection
      dropped after the request was sent, a 502/504 from a proxy in front of the vendor).
      The core asks the plugin's ``recover`` whether the job exists; when the plugin has no
      ``recover`` or the lookup fails, the task is sent nowhere else: it fails, refunded,
      and the client gets a 503, so one task never becomes two vendor jobs.

    For errors of ``aiohttp`` use :func:`request_maybe_received` to set it.
    """

    def __init__(self, message: str, *, maybe_received: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.maybe_received = maybe_received


def request_maybe_received(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` (an ``aiohttp``/``OSError``/timeout
    error) may still have reached the vendor: False only when the connection was never
    made, so no byte of the request was sent."""
    import aiohttp

    never_connected: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,)
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)  # aiohttp >= 3.10
    if connect_timeout is not None:
        never_connected += (connect_timeout,)
    return not isinstance(exc, never_connected)


class ChannelUnusable(VendorError):
    """This channel's account cannot serve now: bad key, no balance, no permission."""


class TaskFailed(VendorError):
    """The vendor reports that the task ended in failure.

    ``code`` is a short machine-readable reason shown to the client in ``error.code``.
    """

    def __init__(self, message: str, *, code: str = "vendor_failed", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code


class TaskNotFound(VendorError):
    """The vendor says the task behind the handle does not exist (e.g. 404 for its id).

    Vendors are eventually consistent right after a create, so while polling this is
    transient for ``worker.not_found_grace_seconds`` after the submit and fails the task
    (``vendor_task_lost``, refunded) after that. Raise :class:`ModelRetired` instead when
    the vendor says the *model* is gone.
    """


class ModelRetired(VendorError):
    """The vendor retired the model (a 404/410 that names the model, not the task).

    The task fails at once with the vendor's message (``model_retired``), no retries; at
    submit the core tries the next channel.
    """


class PluginLoadError(VidgateError):
    """A plugin could not be loaded or registered (for example a duplicate vendor)."""


class ConfigError(VidgateError):
    """The configuration file is invalid; the message names the file and the key."""
