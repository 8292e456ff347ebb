"""The task store: tasks, tokens, the ledger and attempts, on SQLite or PostgreSQL.

Money moves only inside transactions here, and the ledger's unique ``(task_id, kind)``
index makes a second charge or a second refund of one task impossible, whatever the
callers do.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .db import Database, UniqueViolation, connect
from .records import (
    BOOL_COLUMNS,
    JSON_COLUMNS,
    TASK_COLUMNS,
    TERMINAL,
    Attempt,
    LedgerEntry,
    TaskRecord,
    TokenRecord,
)
from .schema import MIGRATIONS


class InsufficientQuota(Exception):
    """The token's remaining quota cannot cover the charge."""


class DuplicateIdempotencyKey(Exception):
    """Another task of this token already holds this idempotency key."""


def _encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None:
        return json.dumps(value, separators=(",", ":"))
    if column in BOOL_COLUMNS:
        return bool(value)
    return value


def _task_from_row(row: dict[str, Any]) -> TaskRecord:
    values = {}
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
    )


class Store:
    """All persistent state of the gateway, behind one async interface."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, url: str) -> Store:
        store = cls(await connect(url))
        await store.migrate()
        return store

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
        )
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
        await self.db.execute(
            "INSERT INTO tokens (id, name, key_hash, key_hint, grp, quota, used, models, expires_at, revoked_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, ?)",
            token.id,
            name,
            key_hash,
            key_hint,
            group,
            quota,
            json.dumps(models) if models is not None else None,
            expires_at,
            token.created_at,
        )
        return token

    async def token_by_hash(self, key_hash: str) -> TokenRecord | None:
        row = await self.db.fetchone("SELECT * FROM tokens WHERE key_hash = ?", key_hash)
        return _token_from_row(row) if row else None

    async def token(self, id_or_name: str) -> TokenRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM tokens WHERE id = ? OR name = ? ORDER BY created_at LIMIT 1", id_or_name, id_or_name
        )
        return _token_from_row(row) if row else None

    async def list_tokens(self) -> list[TokenRecord]:
        return [_token_from_row(r) for r in await self.db.fetchall("SELECT * FROM tokens ORDER BY created_at")]

    async def revoke_token(self, token_id: str) -> bool:
        n = await self.db.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", time.time(), token_id
        )
        return n > 0

    async def set_quota(self, token_id: str, quota: int | None) -> bool:
        return await self.db.execute("UPDATE tokens SET quota = ? WHERE id = ?", quota, token_id) > 0

    async def count_tokens(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM tokens")
        return int(row["n"]) if row else 0

    # -- tasks ---------------------------------------------------------------------

    async def create_task(self, task: TaskRecord) -> None:
        """Insert ``task`` and take its charge from the token, atomically.

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
            if task.charge > 0:
                await self._ledger(tx, task.token_id, task.id, "charge", task.charge, task.model, "task submitted")

    async def _ledger(
        self, tx: Database, token_id: str, task_id: str | None, kind: str, amount: int, model: str | None, reason: str
    ) -> None:
        await tx.execute(
            "INSERT INTO ledger (id, token_id, task_id, kind, amount, model, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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

    async def task_by_idempotency_key(self, token_id: str, key: str) -> TaskRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM tasks WHERE token_id = ? AND idempotency_key = ?", token_id, key
        )
        return _task_from_row(row) if row else None

    async def task_by_vendor_id(self, channel: str, vendor_task_id: str) -> TaskRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM tasks WHERE channel = ? AND vendor_task_id = ?", channel, vendor_task_id
        )
        return _task_from_row(row) if row else None

    async def update_task(self, task_id: str, *, only_if_active: bool = True, **fields: Any) -> bool:
        """Set ``fields`` on a task; by default only while it is not finished."""
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE tasks SET {assignments} WHERE id = ?"
        if only_if_active:
            sql += " AND status NOT IN ('completed', 'failed')"
        n = await self.db.execute(sql, *(_encode(k, v) for k, v in fields.items()), task_id)
        return n > 0

    async def finish_task(
        self,
        task_id: str,
        *,
        status: str,
        refund: bool = False,
        reason: str = "",
        **fields: Any,
    ) -> bool:
        """Move a task to a terminal status exactly once; refund its charge if asked.

        Returns False when the task was already finished (a second worker, a retry):
        then nothing changes and nothing is refunded again.
        """
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
                f"UPDATE tasks SET {assignments} WHERE id = ? AND status NOT IN ('completed', 'failed')",
                *(_encode(k, v) for k, v in fields.items()),
                task_id,
            )
            if n == 0:
                return False
            if refund:
                await self._refund(tx, task_id, reason or "task failed")
        return True

    async def _refund(self, tx: Database, task_id: str, reason: str) -> None:
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

    async def release(self, task_id: str, owner: str, **fields: Any) -> bool:
        """Drop our lease on an unfinished task, saving ``fields`` (e.g. next_poll_at)."""
        fields.update(lease_owner=None, lease_until=None, updated_at=time.time())
        assignments = ", ".join(f"{k} = ?" for k in fields)
        n = await self.db.execute(
            f"UPDATE tasks SET {assignments} WHERE id = ? AND lease_owner = ?"
            " AND status NOT IN ('completed', 'failed')",
            *(_encode(k, v) for k, v in fields.items()),
            task_id,
            owner,
        )
        return n > 0

    async def renew_lease(self, task_id: str, owner: str, until: float) -> bool:
        n = await self.db.execute(
            "UPDATE tasks SET lease_until = ? WHERE id = ? AND lease_owner = ?", until, task_id, owner
        )
        return n > 0

    async def list_tasks(
        self, token_id: str, *, after: TaskRecord | None, limit: int, order: str
    ) -> list[TaskRecord]:
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
        """Per token and model: tasks, charged, refunded, net."""
        return await self.db.fetchall(
            "SELECT t.name AS token, l.model AS model,"
            " SUM(CASE WHEN l.kind = 'charge' THEN 1 ELSE 0 END) AS tasks,"
            " SUM(CASE WHEN l.kind = 'charge' THEN l.amount ELSE 0 END) AS charged,"
            " SUM(CASE WHEN l.kind = 'refund' THEN -l.amount ELSE 0 END) AS refunded,"
            " SUM(l.amount) AS net"
            " FROM ledger l JOIN tokens t ON t.id = l.token_id"
            " GROUP BY t.name, l.model ORDER BY t.name, l.model"
        )

    async def task_counts(self) -> list[dict[str, Any]]:
        """Visible tasks per model, channel and status (for metrics)."""
        return await self.db.fetchall(
            "SELECT model, channel, status, COUNT(*) AS n FROM tasks WHERE hidden = ?"
            " GROUP BY model, channel, status",
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
