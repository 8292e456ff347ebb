"""The task store: tasks, tokens, the ledger and attempts, on SQLite or PostgreSQL.

Money moves only inside transactions here, and the ledger's unique ``(task_id, kind)``
index makes a second charge or a second refund of one task impossible, whatever the
callers do.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from .db import Connection, Database, UniqueViolation, connect
from .records import (
    BOOL_COLUMNS,
    JSON_COLUMNS,
    TASK_COLUMNS,
    TERMINAL,
    TERMINAL_SQL,
    Attempt,
    LedgerEntry,
    TaskRecord,
    TokenRecord,
    WebhookEvent,
)
from .schema import MIGRATIONS


class InsufficientQuota(Exception):
    """The token's remaining quota cannot cover the charge."""


class DuplicateIdempotencyKey(Exception):
    """Another task of this token already holds this idempotency key."""


class DuplicateTokenName(Exception):
    """Another token already has this name (names identify tokens for operators)."""


# Blobs up to this size are decoded on the event loop; larger ones in a thread.
_INLINE_DECODE = 64 * 1024


async def _decode_blob(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if len(text) < _INLINE_DECODE:
        decoded: dict[str, Any] = json.loads(text)
    else:
        decoded = await asyncio.to_thread(json.loads, text)
    return decoded


_UNSET: Any = object()


def _encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None:
        return json.dumps(value, separators=(",", ":"))
    if column in BOOL_COLUMNS:
        return bool(value)
    if isinstance(value, str) and "\x00" in value:
        # Client text is refused with NUL before it gets here; vendor text (an error
        # message) must not make PostgreSQL, whose text cannot hold U+0000, fail the task.
        return value.replace("\x00", "\ufffd")
    return value


def _task_from_row(row: dict[str, Any]) -> TaskRecord:
    values: dict[str, Any] = {}
    for column in TASK_COLUMNS:
        value = row.get(column)
        if column in JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif column in BOOL_COLUMNS:
            value = bool(value)
        values[column] = value
    return TaskRecord(**values)


def _token_from_row(row: dict[str, Any]) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        key_hint=row["key_hint"],
        group=row["grp"],
        quota=row["quota"],
        used=row["used"],
        models=json.loads(row["models"]) if row["models"] else None,
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        created_at=row["created_at"],
        webhook_url=row.get("webhook_url"),
        webhook_secrets=json.loads(row["webhook_secrets"]) if row.get("webhook_secrets") else None,
        operator=bool(row.get("operator")),
    )


# Statuses a webhook announces: every status a task moves to after ``queued``, so a
# terminal status added later (``cancelled``) is announced as ``video.<status>`` too.
_SILENT_STATUSES = ("queued",)


class Store:
    """All persistent state of the gateway, behind one async interface."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Renders a task as the public object for webhook bodies (set by the gateway,
        #: which knows the public URL); without it the object has no content URL.
        self.render_task: Callable[[TaskRecord], dict[str, Any]] | None = None
        #: Called with a task id after every committed change to that task (the
        #: gateway wires its notifier here so event streams wake at once).
        self.on_task_change: Callable[[str], None] | None = None

    @classmethod
    async def open(cls, url: str) -> Store:
        store = cls(await connect(url))
        await store.migrate()
        return store

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> None:
        try:
            await self.db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
            )
        except Exception:
            # PostgreSQL: two replicas creating it at once, one loses on the catalog's
            # unique index; the table is there all the same.
            await self.db.fetchone("SELECT version FROM schema_migrations LIMIT 1")
        for version, statements in enumerate(MIGRATIONS, start=1):
            try:
                async with self.db.transaction() as tx:
                    if await tx.fetchone("SELECT version FROM schema_migrations WHERE version = ?", version):
                        continue
                    for sql in statements:
                        await tx.execute(sql)
                    await tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", version, time.time()
                    )
            except Exception:
                # Two replicas starting at once: the loser sees the winner's migration.
                if not await self.db.fetchone("SELECT version FROM schema_migrations WHERE version = ?", version):
                    raise

    # -- tokens --------------------------------------------------------------------

    async def create_token(
        self,
        *,
        name: str,
        key_hash: str,
        key_hint: str,
        group: str,
        quota: int | None,
        models: list[str] | None = None,
        expires_at: float | None = None,
    ) -> TokenRecord:
        token = TokenRecord(
            id="tok_" + secrets.token_hex(8),
            name=name,
            key_hash=key_hash,
            key_hint=key_hint,
            group=group,
            quota=quota,
            used=0,
            models=models,
            expires_at=expires_at,
            revoked_at=None,
            created_at=time.time(),
        )
        if await self.tokens_named(name):
            raise DuplicateTokenName(name)
        try:
            await self.db.execute(
                "INSERT INTO tokens (id, name, unique_name, key_hash, key_hint, grp, quota, used, models, expires_at,"
                " revoked_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, ?)",
                token.id,
                name,
                name,
                key_hash,
                key_hint,
                group,
                quota,
                json.dumps(models) if models is not None else None,
                expires_at,
                token.created_at,
            )
        except Exception:
            # Two creators racing for one name: the unique index decides.
            if await self.tokens_named(name):
                raise DuplicateTokenName(name) from None
            raise
        return token

    async def token_by_hash(self, key_hash: str) -> TokenRecord | None:
        row = await self.db.fetchone("SELECT * FROM tokens WHERE key_hash = ?", key_hash)
        return _token_from_row(row) if row else None

    async def token(self, id_or_name: str) -> TokenRecord | None:
        """The token with this id, else the one token with this name (None when no token,
        or several from before names were unique, have it: see :meth:`tokens_named`)."""
        row = await self.db.fetchone("SELECT * FROM tokens WHERE id = ?", id_or_name)
        if row:
            return _token_from_row(row)
        named = await self.tokens_named(id_or_name)
        return named[0] if len(named) == 1 else None

    async def tokens_named(self, name: str) -> list[TokenRecord]:
        """Every token with this name, oldest first: one, except in databases made before
        names were unique."""
        rows = await self.db.fetchall("SELECT * FROM tokens WHERE name = ? ORDER BY created_at, id", name)
        return [_token_from_row(r) for r in rows]

    async def list_tokens(self) -> list[TokenRecord]:
        return [_token_from_row(r) for r in await self.db.fetchall("SELECT * FROM tokens ORDER BY created_at")]

    async def revoke_token(self, token_id: str) -> bool:
        n = await self.db.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", time.time(), token_id
        )
        return n > 0

    async def set_token_operator(self, token_id: str, operator: bool) -> bool:
        """Let a token read the operator console and API (or stop it)."""
        n = await self.db.execute("UPDATE tokens SET operator = ? WHERE id = ?", operator, token_id)
        return n > 0

    async def set_quota(self, token_id: str, quota: int | None) -> bool:
        return await self.db.execute("UPDATE tokens SET quota = ? WHERE id = ?", quota, token_id) > 0

    async def count_tokens(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM tokens")
        return int(row["n"]) if row else 0

    # -- tasks ---------------------------------------------------------------------

    async def create_task(
        self, task: TaskRecord, *, request: dict[str, Any] | None = None, job: dict[str, Any] | None = None
    ) -> None:
        """Insert ``task`` with its unified ``request`` and vendor ``job`` (kept apart from
        the task row, see :meth:`task_request`) and take its charge from the token, atomically.

        Raises :class:`InsufficientQuota` (nothing written) when the token cannot pay,
        and :class:`DuplicateIdempotencyKey` when the key is taken.
        """
        columns = TASK_COLUMNS
        async with self.db.transaction() as tx:
            if task.charge > 0:
                paid = await tx.execute(
                    "UPDATE tokens SET used = used + ? WHERE id = ? AND (quota IS NULL OR used + ? <= quota)",
                    task.charge,
                    task.token_id,
                    task.charge,
                )
                if paid == 0:
                    raise InsufficientQuota()
            if task.idempotency_key is not None and await tx.fetchone(
                "SELECT id FROM tasks WHERE token_id = ? AND idempotency_key = ?", task.token_id, task.idempotency_key
            ):
                raise DuplicateIdempotencyKey()
            try:
                await tx.execute(
                    f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                    *(_encode(c, getattr(task, c)) for c in columns),
                )
            except UniqueViolation:
                # Two submits with one key at once: nothing (no charge either) locks them
                # apart on an unpriced model, so the index decides; the loser replays.
                if task.idempotency_key is None:
                    raise
                raise DuplicateIdempotencyKey() from None
            await tx.execute(
                "INSERT INTO task_blobs (task_id, request, job) VALUES (?, ?, ?)",
                task.id,
                _encode("request", request or {}),
                _encode("job", job),
            )
            if task.charge > 0:
                await self._ledger(tx, task.token_id, task.id, "charge", task.charge, task.model, "task submitted")

    async def _ledger(
        self, tx: Connection, token_id: str, task_id: str | None, kind: str, amount: int, model: str | None, reason: str
    ) -> None:
        await tx.execute(
            "INSERT INTO ledger (id, token_id, task_id, kind, amount, model, reason, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            secrets.randbits(62),
            token_id,
            task_id,
            kind,
            amount,
            model,
            reason,
            time.time(),
        )

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self.db.fetchone("SELECT * FROM tasks WHERE id = ?", task_id)
        return _task_from_row(row) if row else None

    async def task_request(self, task_id: str) -> dict[str, Any] | None:
        """The unified request a task was submitted with (as ``wire.request_to_json``)."""
        row = await self.db.fetchone("SELECT request FROM task_blobs WHERE task_id = ?", task_id)
        return await _decode_blob(row["request"]) if row else None

    async def task_job(self, task_id: str) -> dict[str, Any] | None:
        """The vendor job of a task on its current channel (as ``wire.job_to_json``)."""
        row = await self.db.fetchone("SELECT job FROM task_blobs WHERE task_id = ?", task_id)
        return await _decode_blob(row["job"]) if row else None

    async def task_by_idempotency_key(self, token_id: str, key: str) -> TaskRecord | None:
        row = await self.db.fetchone("SELECT * FROM tasks WHERE token_id = ? AND idempotency_key = ?", token_id, key)
        return _task_from_row(row) if row else None

    async def task_by_vendor_id(self, channel: str, vendor_task_id: str) -> TaskRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM tasks WHERE channel = ? AND vendor_task_id = ?", channel, vendor_task_id
        )
        return _task_from_row(row) if row else None

    async def update_task(self, task_id: str, *, only_if_active: bool = True, **fields: Any) -> bool:
        """Set ``fields`` on a task; by default only while it is not finished.
        ``job`` (the vendor job) is accepted too and saved with the row, atomically."""
        job = fields.pop("job", _UNSET)
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE tasks SET {assignments} WHERE id = ?"
        if only_if_active:
            sql += f" AND status NOT IN ({TERMINAL_SQL})"
        args = (*(_encode(k, v) for k, v in fields.items()), task_id)
        if job is _UNSET and "status" not in fields:
            n = await self.db.execute(sql, *args)
        else:
            async with self.db.transaction() as tx:
                n = await tx.execute(sql, *args)
                if n and job is not _UNSET:
                    await tx.execute("UPDATE task_blobs SET job = ? WHERE task_id = ?", _encode("job", job), task_id)
                if n and "status" in fields:
                    await self._announce(tx, task_id)
        if n:
            self._changed(task_id)
        return n > 0

    def _changed(self, task_id: str) -> None:
        if self.on_task_change is not None:
            self.on_task_change(task_id)

    async def _announce(self, tx: Connection, task_id: str) -> None:
        """Inside the transaction that changed a task's status: queue its webhook event.

        ``notified_status`` remembers the last status announced, so a repeated write of
        the same status queues nothing; the event commits (or not) with the change itself.
        """
        silent = ", ".join(f"'{s}'" for s in _SILENT_STATUSES)
        rows = await tx.fetchall(
            "UPDATE tasks SET notified_status = status WHERE id = ? AND webhook_url IS NOT NULL AND hidden = FALSE"
            f" AND status NOT IN ({silent}) AND (notified_status IS NULL OR notified_status <> status)"
            " RETURNING *",
            task_id,
        )
        if not rows:
            return
        task = _task_from_row(rows[0])
        assert task.webhook_url is not None
        if self.render_task is not None:
            data = self.render_task(task)
        else:
            from ..wire import video_object  # the wire module imports the store's records

            data = video_object(task, None)
        now = time.time()
        event_id = "evt_" + secrets.token_hex(16)
        kind = f"video.{task.status}"
        body = json.dumps(
            {"id": event_id, "object": "event", "type": kind, "created_at": int(now), "data": data},
            separators=(",", ":"),
        )
        gone = await tx.fetchone("SELECT url FROM webhook_gone WHERE url = ?", task.webhook_url)
        await tx.execute(
            "INSERT INTO webhook_events (id, task_id, token_id, url, type, body, state, attempts, next_attempt_at,"
            " last_error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            event_id,
            task.id,
            task.token_id,
            task.webhook_url,
            kind,
            body,
            "gone" if gone else "pending",
            now,
            "the endpoint answered 410 Gone earlier" if gone else None,
            now,
        )

    async def finish_task(
        self,
        task_id: str,
        *,
        status: str,
        refund: bool = False,
        settle_to: int | None = None,
        reason: str = "",
        **fields: Any,
    ) -> bool:
        """Move a task to a terminal status exactly once, and bill it: refund its whole
        charge (``refund``), or settle the charge to ``settle_to`` micro-units (a
        ``settle`` ledger entry of the difference), or keep the charge as it is.
        ``cost`` is set to what the token finally pays.

        Returns False when the task was already finished (a second worker, a retry, a
        cancel racing a completion): then nothing changes and nothing is billed again.
        """
        assert not (refund and settle_to is not None)
        assert status in TERMINAL
        now = time.time()
        fields.update(status=status, phase="done", updated_at=now, lease_owner=None, lease_until=None)
        if status == "completed":
            fields.setdefault("progress", 100)
            fields.setdefault("completed_at", now)
        else:
            fields.setdefault("completed_at", now)
        assignments = ", ".join(f"{k} = ?" for k in fields)
        async with self.db.transaction() as tx:
            n = await tx.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ? AND status NOT IN ({TERMINAL_SQL})",
                *(_encode(k, v) for k, v in fields.items()),
                task_id,
            )
            if n == 0:
                return False
            if refund:
                await self._refund(tx, task_id, reason or "task failed")
                await tx.execute("UPDATE tasks SET cost = 0 WHERE id = ?", task_id)
            elif settle_to is not None:
                await self._settle(tx, task_id, settle_to, reason or "settled to the vendor's usage")
            else:
                await tx.execute("UPDATE tasks SET cost = charge WHERE id = ?", task_id)
            await self._announce(tx, task_id)
        self._changed(task_id)
        return True

    async def _settle(self, tx: Connection, task_id: str, amount: int, reason: str) -> None:
        row = await tx.fetchone("SELECT token_id, charge, model FROM tasks WHERE id = ?", task_id)
        assert row is not None
        delta = amount - row["charge"]
        # The unique (task_id, kind) index makes a second settlement impossible.
        if delta and not await tx.fetchone("SELECT id FROM ledger WHERE task_id = ? AND kind = 'settle'", task_id):
            await self._ledger(tx, row["token_id"], task_id, "settle", delta, row["model"], reason)
            # The vendor billed it: taken even past the quota, which only bounds what
            # can be started.
            await tx.execute("UPDATE tokens SET used = used + ? WHERE id = ?", delta, row["token_id"])
        await tx.execute("UPDATE tasks SET cost = ? WHERE id = ?", amount, task_id)

    async def request_cancel(self, task_id: str) -> TaskRecord | None:
        """Record that the client asked to cancel an unfinished task (first time wins);
        the task as it is now."""
        await self.db.execute(
            "UPDATE tasks SET cancel_requested_at = COALESCE(cancel_requested_at, ?)"
            f" WHERE id = ? AND status NOT IN ({TERMINAL_SQL})",
            time.time(),
            task_id,
        )
        return await self.get_task(task_id)

    async def _refund(self, tx: Connection, task_id: str, reason: str) -> None:
        row = await tx.fetchone("SELECT token_id, charge, model FROM tasks WHERE id = ?", task_id)
        if not row or not row["charge"]:
            return
        if await tx.fetchone("SELECT id FROM ledger WHERE task_id = ? AND kind = 'refund'", task_id):
            return
        await self._ledger(tx, row["token_id"], task_id, "refund", -row["charge"], row["model"], reason)
        await tx.execute("UPDATE tokens SET used = used - ? WHERE id = ?", row["charge"], row["token_id"])
        await tx.execute("UPDATE tasks SET refunded = ? WHERE id = ?", True, task_id)

    async def lease_due(self, owner: str, *, now: float, limit: int, lease_seconds: float) -> list[TaskRecord]:
        """Take a lease on up to ``limit`` unfinished tasks that are due for work."""
        rows = await self.db.fetchall(
            "UPDATE tasks SET lease_owner = ?, lease_until = ? WHERE id IN ("
            " SELECT id FROM tasks WHERE status IN ('queued', 'in_progress')"
            " AND next_poll_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
            f" ORDER BY next_poll_at LIMIT ?{self.db.skip_locked}) RETURNING *",
            owner,
            now + lease_seconds,
            now,
            now,
            limit,
        )
        return [_task_from_row(r) for r in rows]

    async def lease_batch(
        self, owner: str, channel: str, *, now: float, due_by: float, limit: int, lease_seconds: float
    ) -> list[TaskRecord]:
        """Lease up to ``limit`` more polling tasks of ``channel`` to poll in one batch with
        tasks already leased: those due, and those due by ``due_by`` whose last poll did
        not fail (polling a healthy task a little early is what lets a batch call carry
        the whole channel; a task backing off after a failure keeps its backoff)."""
        rows = await self.db.fetchall(
            "UPDATE tasks SET lease_owner = ?, lease_until = ? WHERE id IN ("
            " SELECT id FROM tasks WHERE status IN ('queued', 'in_progress')"
            " AND channel = ? AND phase = 'polling' AND cancel_requested_at IS NULL"
            " AND (next_poll_at <= ? OR (next_poll_at <= ? AND poll_failures = 0))"
            " AND (lease_until IS NULL OR lease_until < ?)"
            f" ORDER BY next_poll_at LIMIT ?{self.db.skip_locked}) RETURNING *",
            owner,
            now + lease_seconds,
            channel,
            now,
            due_by,
            now,
            limit,
        )
        return [_task_from_row(r) for r in rows]

    async def release(self, task_id: str, owner: str, **fields: Any) -> bool:
        """Drop our lease on an unfinished task, saving ``fields`` (e.g. next_poll_at)."""
        fields.update(lease_owner=None, lease_until=None, updated_at=time.time())
        assignments = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE tasks SET {assignments} WHERE id = ? AND lease_owner = ? AND status NOT IN ({TERMINAL_SQL})"
        args = (*(_encode(k, v) for k, v in fields.items()), task_id, owner)
        if "status" in fields:
            async with self.db.transaction() as tx:
                n = await tx.execute(sql, *args)
                if n:
                    await self._announce(tx, task_id)
        else:
            n = await self.db.execute(sql, *args)
        if n:
            self._changed(task_id)
        return n > 0

    async def renew_lease(self, task_id: str, owner: str, until: float) -> bool:
        n = await self.db.execute(
            "UPDATE tasks SET lease_until = ? WHERE id = ? AND lease_owner = ?", until, task_id, owner
        )
        return n > 0

    async def list_tasks(self, token_id: str, *, after: TaskRecord | None, limit: int, order: str) -> list[TaskRecord]:
        """A token's visible tasks, ordered by (created_at, id), after a cursor task."""
        desc = order == "desc"
        sql = "SELECT * FROM tasks WHERE token_id = ? AND hidden = ?"
        args: list[Any] = [token_id, False]
        if after is not None:
            cmp = "<" if desc else ">"
            sql += f" AND (created_at {cmp} ? OR (created_at = ? AND id {cmp} ?))"
            args += [after.created_at, after.created_at, after.id]
        direction = "DESC" if desc else "ASC"
        sql += f" ORDER BY created_at {direction}, id {direction} LIMIT ?"
        args.append(limit)
        return [_task_from_row(r) for r in await self.db.fetchall(sql, *args)]

    async def count_active(self, channel: str) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM tasks WHERE channel = ? AND status IN ('queued', 'in_progress')", channel
        )
        return int(row["n"]) if row else 0

    # -- attempts and ledger ----------------------------------------------------------

    async def add_attempt(self, task_id: str, channel: str, outcome: str, detail: str = "") -> None:
        await self.db.execute(
            "INSERT INTO attempts (task_id, channel, outcome, detail, at) VALUES (?, ?, ?, ?, ?)",
            task_id,
            channel,
            outcome,
            detail[:1000],
            time.time(),
        )

    async def attempts(self, task_id: str) -> list[Attempt]:
        rows = await self.db.fetchall("SELECT * FROM attempts WHERE task_id = ? ORDER BY at", task_id)
        return [Attempt(**r) for r in rows]

    async def ledger(self, token_id: str | None = None) -> list[LedgerEntry]:
        if token_id:
            rows = await self.db.fetchall("SELECT * FROM ledger WHERE token_id = ? ORDER BY at", token_id)
        else:
            rows = await self.db.fetchall("SELECT * FROM ledger ORDER BY at")
        return [LedgerEntry(**r) for r in rows]

    async def usage(self) -> list[dict[str, Any]]:
        """Per token and model: tasks, charged (the estimates pre-deducted), settled (the
        adjustments to the vendors' actual usage), refunded, net (what was finally paid)."""
        return await self.db.fetchall(
            "SELECT t.name AS token, l.model AS model,"
            " SUM(CASE WHEN l.kind = 'charge' THEN 1 ELSE 0 END) AS tasks,"
            " SUM(CASE WHEN l.kind = 'charge' THEN l.amount ELSE 0 END) AS charged,"
            " SUM(CASE WHEN l.kind = 'settle' THEN l.amount ELSE 0 END) AS settled,"
            " SUM(CASE WHEN l.kind = 'refund' THEN -l.amount ELSE 0 END) AS refunded,"
            " SUM(l.amount) AS net"
            " FROM ledger l JOIN tokens t ON t.id = l.token_id"
            " GROUP BY t.name, l.model ORDER BY t.name, l.model"
        )

    async def task_counts(self) -> list[dict[str, Any]]:
        """Visible tasks per model, channel and status (for metrics)."""
        return await self.db.fetchall(
            "SELECT model, channel, status, COUNT(*) AS n FROM tasks WHERE hidden = ? GROUP BY model, channel, status",
            False,
        )

    async def attempt_counts(self) -> list[dict[str, Any]]:
        """Vendor call outcomes per channel since the store was created (for metrics)."""
        return await self.db.fetchall("SELECT channel, outcome, COUNT(*) AS n FROM attempts GROUP BY channel, outcome")

    async def expired_media(self, now: float, limit: int = 100) -> list[str]:
        """Ids of completed tasks whose media passed ``expires_at`` and is still stored."""
        rows = await self.db.fetchall(
            "SELECT id FROM tasks WHERE status = 'completed' AND expires_at < ? AND media IS NOT NULL LIMIT ?",
            now,
            limit,
        )
        return [r["id"] for r in rows]

    # -- webhooks -----------------------------------------------------------------------

    async def set_token_webhook(self, token_id: str, url: str | None) -> bool:
        """Set (or clear, with None) a token's default webhook endpoint."""
        return await self.db.execute("UPDATE tokens SET webhook_url = ? WHERE id = ?", url, token_id) > 0

    async def set_webhook_secrets(self, token_id: str, secrets_: list[dict[str, Any]]) -> bool:
        """Replace a token's signing secrets (newest first)."""
        return (
            await self.db.execute("UPDATE tokens SET webhook_secrets = ? WHERE id = ?", json.dumps(secrets_), token_id)
            > 0
        )

    async def lease_webhook_events(
        self, owner: str, *, now: float, limit: int, lease_seconds: float
    ) -> list[WebhookEvent]:
        """Take a lease on up to ``limit`` pending events that are due for delivery, at
        most the oldest pending one of each task (so a task's events arrive in order)."""
        rows = await self.db.fetchall(
            "UPDATE webhook_events SET lease_owner = ?, lease_until = ? WHERE id IN ("
            " SELECT e.id FROM webhook_events e WHERE e.state = 'pending' AND e.next_attempt_at <= ?"
            " AND (e.lease_until IS NULL OR e.lease_until < ?)"
            # A task's events go out in order: none while an earlier one is still pending.
            " AND NOT EXISTS (SELECT 1 FROM webhook_events p WHERE p.task_id = e.task_id"
            " AND p.state = 'pending'"
            " AND (p.created_at < e.created_at OR (p.created_at = e.created_at AND p.id < e.id)))"
            f" ORDER BY e.next_attempt_at LIMIT ?{self.db.skip_locked}) RETURNING *",
            owner,
            now + lease_seconds,
            now,
            now,
            limit,
        )
        return sorted((WebhookEvent(**r) for r in rows), key=lambda e: (e.created_at, e.id))

    async def record_webhook_attempt(
        self,
        event_id: str,
        owner: str,
        *,
        state: str,
        http_status: int | None,
        error: str | None,
        next_attempt_at: float | None = None,
    ) -> bool:
        """Save one delivery attempt's outcome and drop our lease (``state``: pending to
        retry at ``next_attempt_at``, delivered, failed, gone)."""
        now = time.time()
        n = await self.db.execute(
            "UPDATE webhook_events SET state = ?, attempts = attempts + 1, last_status = ?, last_error = ?,"
            " next_attempt_at = ?, delivered_at = ?, lease_owner = NULL, lease_until = NULL"
            " WHERE id = ? AND lease_owner = ?",
            state,
            http_status,
            (error or "")[:1000] or None,
            next_attempt_at,
            now if state == "delivered" else None,
            event_id,
            owner,
        )
        return n > 0

    async def mark_webhook_url_gone(self, url: str) -> int:
        """Record that ``url`` answered 410 Gone: stop every pending event to it (and
        future ones, until an operator redelivers). Returns the events stopped."""
        now = time.time()
        async with self.db.transaction() as tx:
            if not await tx.fetchone("SELECT url FROM webhook_gone WHERE url = ?", url):
                await tx.execute("INSERT INTO webhook_gone (url, at) VALUES (?, ?)", url, now)
            return await tx.execute(
                "UPDATE webhook_events SET state = 'gone', last_error = ? WHERE url = ? AND state = 'pending'",
                "the endpoint answered 410 Gone",
                url,
            )

    async def webhook_url_gone(self, url: str) -> bool:
        """Whether ``url`` answered 410 Gone (and no operator redelivered since)."""
        return await self.db.fetchone("SELECT url FROM webhook_gone WHERE url = ?", url) is not None

    async def list_webhook_events(
        self, *, states: tuple[str, ...] | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[WebhookEvent]:
        """Newest events first, optionally only those in ``states`` or of one task."""
        sql = "SELECT * FROM webhook_events WHERE 1 = 1"
        args: list[Any] = []
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += list(states)
        if task_id:
            sql += " AND task_id = ?"
            args.append(task_id)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [WebhookEvent(**r) for r in await self.db.fetchall(sql, *args)]

    async def redeliver_webhook_events(self, event_id: str | None = None) -> int:
        """Make one event (any state), or every failed and gone one, pending again now.

        Redelivering clears the 410 record of the event's URL: the operator says it is back.
        """
        now = time.time()
        async with self.db.transaction() as tx:
            if event_id is not None:
                where, args = "id = ?", [event_id]
            else:
                where, args = "state IN ('failed', 'gone')", []
            rows = await tx.fetchall(f"SELECT DISTINCT url FROM webhook_events WHERE {where}", *args)
            for r in rows:
                await tx.execute("DELETE FROM webhook_gone WHERE url = ?", r["url"])
            return await tx.execute(
                "UPDATE webhook_events SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                f" lease_owner = NULL, lease_until = NULL WHERE {where}",
                now,
                *args,
            )
