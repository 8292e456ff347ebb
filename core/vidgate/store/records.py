"""Rows of the store as attrs classes."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from ..lifecycle import TERMINAL as TERMINAL

# For SQL: "status NOT IN (...)" / "status IN (...)".
TERMINAL_SQL = ", ".join(f"'{s}'" for s in TERMINAL)


@attrs.define
class TokenRecord:
    """An API token. Only the SHA-256 of its key is stored."""

    id: str
    name: str
    key_hash: str = attrs.field(repr=False)
    key_hint: str
    group: str
    quota: int | None  # micro-units; None is unlimited
    used: int
    models: list[str] | None  # None allows every model of the group
    expires_at: float | None
    revoked_at: float | None
    created_at: float
    # The default endpoint for this token's tasks, and its signing secrets (newest
    # first; each ``{"secret", "expires_at"}``, an old one still signing during a rotation).
    webhook_url: str | None = None
    webhook_secrets: list[dict[str, Any]] | None = attrs.field(default=None, repr=False)
    # May read the operator console and API (every channel, task and token).
    operator: bool = False

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else self.quota - self.used


@attrs.define
class TaskRecord:
    """A task row. Vendor handle, job and result never leave the gateway.

    The unified request and the vendor job are not part of the row (they can be large):
    :meth:`Store.create_task` takes them, :meth:`Store.task_request` and
    :meth:`Store.task_job` read them.
    """

    id: str
    token_id: str
    model: str
    vendor: str
    channel: str
    status: str
    phase: str  # submitting | polling | fetching | done
    created_at: float
    updated_at: float
    progress: int = 0
    hidden: bool = False
    prompt: str | None = None
    seconds: int | None = None
    size: str | None = None
    resolution: str | None = None
    handle: dict[str, Any] | None = None
    vendor_task_id: str | None = None
    vendor_status: str | None = None
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    charge: int = 0
    refunded: bool = False
    remixed_from: str | None = None
    # A derived task (remix, extend, edit): the source's public id and the operation.
    derived_from: str | None = None
    operation: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    deadline_at: float | None = None
    next_poll_at: float | None = None
    poll_failures: int = 0
    fetch_failures: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    media: dict[str, Any] | None = None
    webhook_url: str | None = None
    notified_status: str | None = None
    # The usage facts billed (estimate until settled), and the settled charge (micro-units;
    # None until the task is finished and billed).
    usage: dict[str, Any] | None = None
    cost: int | None = None
    # When the client asked to cancel; the cancel is carried out once a handle is known.
    cancel_requested_at: float | None = None
    # The error answered when no vendor took the task (status, type, param, code,
    # message), replayed to an Idempotency-Key retry of it.
    submit_error: dict[str, Any] | None = None
    # When the vendor accepted the task (None for tasks stored before this column: their
    # created_at is used); a vendor's "no such task" is only believed some time after it.
    submitted_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


JSON_COLUMNS = frozenset({"request", "job", "handle", "result", "media", "usage", "submit_error"})
BOOL_COLUMNS = frozenset({"hidden", "refunded"})
TASK_COLUMNS = tuple(a.name for a in attrs.fields(TaskRecord))


@attrs.define
class Attempt:
    task_id: str
    channel: str
    outcome: str
    detail: str
    at: float


@attrs.define
class LedgerEntry:
    id: int
    token_id: str
    task_id: str | None
    kind: str  # charge | refund | settle | credit
    amount: int
    model: str | None
    reason: str
    at: float


@attrs.define
class WebhookEvent:
    """One event in the webhook outbox; ``body`` is the exact JSON that is signed and sent."""

    id: str
    task_id: str
    token_id: str
    url: str
    type: str
    body: str
    state: str  # pending | delivered | failed | gone
    attempts: int
    next_attempt_at: float | None
    lease_owner: str | None
    lease_until: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


def encode_column(column: str, value: Any) -> Any:
    """``value`` as the database stores column ``column``."""
    if isinstance(value, enum.Enum):
        value = value.value
    if column in JSON_COLUMNS and value is not None:
        return json.dumps(value, separators=(",", ":"))
    if column in BOOL_COLUMNS:
        return bool(value)
    if isinstance(value, str) and "\x00" in value:
        # Client text is refused with NUL before it gets here; vendor text (an error
        # message) must not make PostgreSQL, whose text cannot hold U+0000, fail the task.
        return value.replace("\x00", "\ufffd")
    return value


def task_from_row(row: dict[str, Any]) -> TaskRecord:
    values: dict[str, Any] = {}
    for column in TASK_COLUMNS:
        value = row.get(column)
        if column in JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif column in BOOL_COLUMNS:
            value = bool(value)
        values[column] = value
    return TaskRecord(**values)
