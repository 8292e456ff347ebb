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

from ..auth import TokenCache
from .db import Database, connect
from .records import (
    Attempt,
    LedgerEntry,
    TaskRecord,
    TokenRecord,
    WebhookEvent,
    task_from_row,
)
from .schema import MIGRATIONS
from .tasks import TaskTransitions


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


class Store(TaskTransitions):
    """All persistent state of the gateway, behind one async interface (the task
    transitions are :class:`~vidgate.store.tasks.TaskTransitions`')."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Renders a task as the public object for webhook bodies (set by the gateway,
        #: which knows the public URL); without it the object has no content URL.
        self.render_task: Callable[[TaskRecord], dict[str, Any]] | None = None
        #: Called with a task id after every committed change to that task (the
        #: gateway wires its notifier here so event streams wake at once).
        self.on_task_change: Callable[[str], None] | None = None
        #: What :meth:`Gateway.authenticate` keeps of recent key lookups; every token
        #: change made through this store clears it (see :class:`TokenCache`).
        self.token_cache = TokenCache()

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

    async def _change_token(self, sql: str, *args: Any) -> bool:
        """Run one UPDATE of a token row and forget the cached lookups (in this process at
        once; other processes within their cache's ttl)."""
        try:
            return await self.db.execute(sql, *args) > 0
        finally:
            self.token_cache.clear()

    async def revoke_token(self, token_id: str) -> bool:
        return await self._change_token(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", time.time(), token_id
        )

    async def set_token_operator(self, token_id: str, operator: bool) -> bool:
        """Let a token read the operator console and API (or stop it)."""
        return await self._change_token("UPDATE tokens SET operator = ? WHERE id = ?", operator, token_id)

    async def set_quota(self, token_id: str, quota: int | None) -> bool:
        return await self._change_token("UPDATE tokens SET quota = ? WHERE id = ?", quota, token_id)

    async def count_tokens(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM tokens")
        return int(row["n"]) if row else 0

    # -- tasks ---------------------------------------------------------------------

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
        return task_from_row(row) if row else None

    async def task_by_vendor_id(self, channel: str, vendor_task_id: str) -> TaskRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM tasks WHERE channel = ? AND vendor_task_id = ?", channel, vendor_task_id
        )
        return task_from_row(row) if row else None

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
        return [task_from_row(r) for r in await self.db.fetchall(sql, *args)]

    async def count_active(self, channel: str) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM tasks WHERE channel = ? AND status IN ('queued', 'in_progress')", channel
        )
        return int(row["n"]) if row else 0

    # -- attempts and ledger ----------------------------------------------------------

    async def add_attempt(self, task_id: str, channel: str, outcome: str, detail: str = "") -> None:
        insert = self._attempt_statement(task_id, channel, outcome, detail)
        await self.db.execute(insert.sql, *insert.args)

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
        return await self._change_token("UPDATE tokens SET webhook_url = ? WHERE id = ?", url, token_id)

    async def set_webhook_secrets(self, token_id: str, secrets_: list[dict[str, Any]]) -> bool:
        """Replace a token's signing secrets (newest first)."""
        return await self._change_token(
            "UPDATE tokens SET webhook_secrets = ? WHERE id = ?", json.dumps(secrets_), token_id
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
