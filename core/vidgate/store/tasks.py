"""The task transitions of the store: each named change of a task, with its SQL.

:mod:`vidgate.lifecycle` lists them with the states they move a task between. Callers
never write task columns themselves: each transition below names what it sets, applies
only to the states it may move a task from (so applying it twice, or racing another
transition, changes nothing the second time), and commits the task's webhook event and
ledger entries with the change itself.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs

from ..lifecycle import TaskPhase, TaskStatus
from .db import Database, Statement
from .records import TASK_COLUMNS, TERMINAL, TERMINAL_SQL, TaskRecord, encode_column, task_from_row

# Statuses a webhook announces: every status a task moves to after ``queued``, so a
# terminal status added later (``cancelled``) is announced as ``video.<status>`` too.
_SILENT_STATUSES = ("queued",)

_UNSET: Any = object()


class InsufficientQuota(Exception):
    """The token's remaining quota cannot cover the charge."""


class DuplicateIdempotencyKey(Exception):
    """Another task of this token already holds this idempotency key."""


class _NotApplied(Exception):
    """A transition's task is not in a state it applies to (its script is rolled back)."""


class TaskTransitions:
    """The named transitions of a task (mixed into :class:`vidgate.store.Store`)."""

    db: Database
    render_task: Callable[[TaskRecord], dict[str, Any]] | None
    on_task_change: Callable[[str], None] | None

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self.db.fetchone("SELECT * FROM tasks WHERE id = ?", task_id)
        return task_from_row(row) if row else None

    # -- the one UPDATE every non-finishing transition goes through -------------------

    async def _update(
        self,
        task_id: str,
        columns: dict[str, Any],
        *,
        unfinished: bool = True,
        finished: bool = False,
        phase: TaskPhase | None = None,
        owner: str | None = None,
        job: Any = _UNSET,
    ) -> bool:
        """Set ``columns`` (named by the transition, never by a caller) on the task when it
        is in the transition's states: ``unfinished`` (not terminal), ``finished``
        (terminal), in ``phase``, leased by ``owner``. ``job`` is saved with it."""
        columns = {k: v for k, v in columns.items() if v is not _UNSET}
        update = self._update_statement(
            task_id, columns, unfinished=unfinished, finished=finished, phase=phase, owner=owner
        )
        follow = []
        if job is not _UNSET:
            follow.append(
                Statement("UPDATE task_blobs SET job = ? WHERE task_id = ?", (encode_column("job", job), task_id))
            )
        if "status" in columns:
            follow += self._announce(task_id)
        if not follow:
            if not await self.db.execute(update.sql, *update.args):
                return False
        else:
            # One script, so the change and its event commit together without holding
            # the write lock across awaits (another process writes to the same file).
            try:
                await self.db.script([attrs.evolve(update, unless_row=_NotApplied), *follow])
            except _NotApplied:
                return False
        self._changed(task_id)
        return True

    @staticmethod
    def _update_statement(
        task_id: str,
        columns: dict[str, Any],
        *,
        unfinished: bool = True,
        finished: bool = False,
        phase: TaskPhase | None = None,
        owner: str | None = None,
        returning: bool = False,
    ) -> Statement:
        """The UPDATE of :meth:`_update` (``returning``: it returns the changed row)."""
        columns = {k: v for k, v in columns.items() if v is not _UNSET}
        columns["updated_at"] = time.time()
        where = ["id = ?"]
        args: list[Any] = [encode_column(k, v) for k, v in columns.items()]
        args.append(task_id)
        if unfinished:
            where.append(f"status NOT IN ({TERMINAL_SQL})")
        if finished:
            where.append(f"status IN ({TERMINAL_SQL})")
        if phase is not None:
            where.append("phase = ?")
            args.append(phase.value)
        if owner is not None:
            where.append("lease_owner = ?")
            args.append(owner)
        sql = f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in columns)} WHERE {' AND '.join(where)}"
        return Statement(sql + " RETURNING *" if returning else sql, tuple(args), fetch=returning)

    # -- submitting ---------------------------------------------------------------------

    async def create_task(
        self, task: TaskRecord, *, request: dict[str, Any] | None = None, job: dict[str, Any] | None = None
    ) -> None:
        """``create_task``: insert ``task`` with its unified ``request`` and vendor ``job`` (kept apart from
        the task row, see :meth:`task_request`) and take its charge from the token, atomically.

        Raises :class:`InsufficientQuota` (nothing written) when the token cannot pay,
        and :class:`DuplicateIdempotencyKey` when the key is taken.
        """
        # One script (a single round trip to SQLite's writer, group-committed with the
        # other creates queued behind it): the charge, the key check, the rows, the ledger.
        statements: list[Statement] = []
        if task.charge > 0:
            statements.append(
                Statement(
                    "UPDATE tokens SET used = used + ? WHERE id = ? AND (quota IS NULL OR used + ? <= quota)",
                    (task.charge, task.token_id, task.charge),
                    unless_row=InsufficientQuota,
                )
            )
        if task.idempotency_key is not None:
            statements.append(
                Statement(
                    "SELECT id FROM tasks WHERE token_id = ? AND idempotency_key = ?",
                    (task.token_id, task.idempotency_key),
                    fetch=True,
                    if_row=DuplicateIdempotencyKey,
                )
            )
        statements.append(
            Statement(
                f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) VALUES ({', '.join('?' for _ in TASK_COLUMNS)})",
                tuple(encode_column(c, getattr(task, c)) for c in TASK_COLUMNS),
                # Two submits with one key at once: nothing (no charge either) locks them
                # apart on an unpriced model, so the index decides; the loser replays.
                on_unique=DuplicateIdempotencyKey if task.idempotency_key is not None else None,
            )
        )
        statements.append(
            Statement(
                "INSERT INTO task_blobs (task_id, request, job) VALUES (?, ?, ?)",
                (task.id, encode_column("request", request or {}), encode_column("job", job)),
            )
        )
        if task.charge > 0:
            statements.append(
                self._ledger_statement(task.token_id, task.id, "charge", task.charge, task.model, "task submitted")
            )
        await self.db.script(statements)

    async def try_channel(
        self,
        task_id: str,
        *,
        channel: str,
        vendor: str,
        job: dict[str, Any],
        usage: dict[str, Any],
        owner: str | None = None,
    ) -> bool:
        """``try_channel``: the submit engine offers the task to ``channel`` with ``job``
        (mapped for that channel) and its estimated ``usage``. ``owner``: only while that
        lease holds (False: another process took the task over)."""
        return await self._update(
            task_id,
            {"channel": channel, "vendor": vendor, "usage": usage},
            phase=TaskPhase.SUBMITTING,
            owner=owner,
            job=job,
        )

    async def submitted(
        self,
        task_id: str,
        *,
        handle: dict[str, Any],
        vendor_task_id: str,
        next_poll_at: float,
        deadline_at: float | None = None,
        owner: str | None = None,
        attempt: tuple[str, str] | None = None,
    ) -> TaskRecord | None:
        """``submitted``: a vendor took the task (``handle``); it is polled from
        ``next_poll_at``. ``owner``: only while that lease holds (a recovery).
        ``attempt``: the ``(channel, outcome)`` of the attempt that got it, recorded in
        the same transaction. The task as changed, or None when it was not submitting."""
        now = time.time()
        update = self._update_statement(
            task_id,
            {
                "phase": TaskPhase.POLLING,
                "handle": handle,
                "vendor_task_id": vendor_task_id,
                "next_poll_at": next_poll_at,
                "deadline_at": _UNSET if deadline_at is None else deadline_at,
                "submitted_at": now,
                "poll_failures": 0,
                "lease_owner": None,
                "lease_until": None,
            },
            phase=TaskPhase.SUBMITTING,
            owner=owner,
            returning=True,
        )
        statements = [attrs.evolve(update, unless_row=_NotApplied)]
        if attempt is not None:
            statements.append(self._attempt_statement(task_id, attempt[0], attempt[1], vendor_task_id))
        try:
            rows = (await self.db.script(statements))[0]
        except _NotApplied:
            return None  # and no attempt is recorded either
        self._changed(task_id)
        return task_from_row(rows[0])

    async def abandon(
        self, task_id: str, *, code: str, message: str, answer: dict[str, Any], release_key: bool
    ) -> bool:
        """``abandon``: no channel took the task. It fails hidden (the client got ``answer``,
        an error's fields, kept for Idempotency-Key replays) and is refunded;
        ``release_key`` frees the key for a new attempt (a retryable answer)."""
        return await self._finish(
            task_id,
            status=TaskStatus.FAILED,
            refund=True,
            reason=f"not submitted: {code}",
            hidden=True,
            error_code=code,
            error_message=message,
            submit_error=answer,
            idempotency_key=None if release_key else _UNSET,
        )

    # -- polling and fetching ------------------------------------------------------------

    async def progressed(
        self,
        task_id: str,
        owner: str,
        *,
        status: str | None,
        progress: int,
        vendor_status: str | None,
        next_poll_at: float,
    ) -> bool:
        """``progressed``: a poll read the vendor's status; the lease is given back.
        ``status`` None: the task's status is unchanged (then there is nothing to announce,
        and the change is one statement, group-committed with the worker's others)."""
        return await self._update(
            task_id,
            {
                "status": _UNSET if status is None else status,
                "progress": progress,
                "vendor_status": vendor_status,
                "next_poll_at": next_poll_at,
                "poll_failures": 0,
                "lease_owner": None,
                "lease_until": None,
            },
            owner=owner,
        )

    async def retry_later(
        self,
        task_id: str,
        owner: str,
        *,
        next_poll_at: float,
        poll_failures: int,
        fetch_failures: int | None = None,
        vendor_status: Any = _UNSET,
    ) -> bool:
        """``retry_later``: a poll or a download failed; try again at ``next_poll_at`` with
        the failure counts given; the lease is given back."""
        return await self._update(
            task_id,
            {
                "next_poll_at": next_poll_at,
                "poll_failures": poll_failures,
                "fetch_failures": _UNSET if fetch_failures is None else fetch_failures,
                "vendor_status": vendor_status,
                "lease_owner": None,
                "lease_until": None,
            },
            owner=owner,
        )

    async def postpone(self, task_id: str, owner: str, *, next_poll_at: float) -> bool:
        """``postpone``: give the lease back; the task is due at ``next_poll_at``."""
        return await self._update(
            task_id, {"next_poll_at": next_poll_at, "lease_owner": None, "lease_until": None}, owner=owner
        )

    async def make_due(self, task_id: str) -> bool:
        """``make_due``: the task is due now (a vendor callback hinted it changed)."""
        return await self._update(task_id, {"next_poll_at": time.time()})

    async def result_ready(
        self,
        task_id: str,
        *,
        result: dict[str, Any],
        usage: dict[str, Any],
        vendor_status: str | None = None,
        due_now: bool = False,
        clear_cancel: bool = False,
    ) -> bool:
        """``result_ready``: the vendor finished; the result is to be fetched (``due_now``
        when another process will fetch it). ``clear_cancel``: a cancel came too late."""
        return await self._update(
            task_id,
            {
                "phase": TaskPhase.FETCHING,
                "status": TaskStatus.IN_PROGRESS,
                "progress": 99,
                "result": result,
                "usage": usage,
                "vendor_status": vendor_status if vendor_status is not None else _UNSET,
                "next_poll_at": time.time() if due_now else _UNSET,
                "cancel_requested_at": None if clear_cancel else _UNSET,
            },
        )

    # -- finishing -------------------------------------------------------------------------

    async def complete(self, task_id: str, *, media: dict[str, Any], expires_at: float, settle_to: int | None) -> bool:
        """``complete``: the result is stored; settle the charge to ``settle_to``."""
        return await self._finish(
            task_id, status=TaskStatus.COMPLETED, media=media, expires_at=expires_at, settle_to=settle_to
        )

    async def fail(
        self, task_id: str, *, code: str, message: str, reason: str | None = None, vendor_status: Any = _UNSET
    ) -> bool:
        """``fail``: the task failed with ``code``/``message`` and is refunded."""
        return await self._finish(
            task_id,
            status=TaskStatus.FAILED,
            refund=True,
            reason=reason or code,
            error_code=code,
            error_message=message,
            vendor_status=vendor_status,
        )

    async def cancel(
        self,
        task_id: str,
        *,
        reason: str = "",
        refund: bool = False,
        settle_to: int | None = None,
        usage: dict[str, Any] | None = None,
    ) -> bool:
        """``cancel``: the task ends cancelled with no media, refunded in full, settled to
        ``settle_to`` (the vendor bills the work done) or charged as it is."""
        return await self._finish(
            task_id,
            status=TaskStatus.CANCELLED,
            refund=refund,
            settle_to=settle_to,
            reason=reason,
            media=None,
            usage=_UNSET if usage is None else usage,
        )

    async def request_cancel(self, task_id: str) -> TaskRecord | None:
        """``request_cancel``: record that the client asked to cancel an unfinished task (first time wins);
        the task as it is now."""
        await self.db.execute(
            "UPDATE tasks SET cancel_requested_at = COALESCE(cancel_requested_at, ?)"
            f" WHERE id = ? AND status NOT IN ({TERMINAL_SQL})",
            time.time(),
            task_id,
        )
        return await self.get_task(task_id)

    # -- after the end -----------------------------------------------------------------

    async def hide(self, task_id: str) -> bool:
        """``hide``: a client deleted its finished task. The row stays (the ledger keeps
        its task; pagination keeps its place) without media or Idempotency-Key."""
        return await self._update(
            task_id, {"hidden": True, "media": None, "idempotency_key": None}, unfinished=False, finished=True
        )

    async def media_deleted(self, task_id: str) -> bool:
        """``media_deleted``: the stored media passed its retention and is gone."""
        return await self._update(task_id, {"media": None}, unfinished=False)

    # -- leases -----------------------------------------------------------------------------

    async def lease_due(
        self, owner: str, *, now: float, limit: int, lease_seconds: float, submit_grace: float = 0.0
    ) -> list[TaskRecord]:
        """Take a lease on up to ``limit`` unfinished tasks that are due for work. A task
        still ``submitting`` under another lease is taken only ``submit_grace`` seconds
        after that lease lapsed: its holder may merely be stalled mid-submit."""
        rows = await self.db.fetchall(
            "UPDATE tasks SET lease_owner = ?, lease_until = ? WHERE id IN ("
            " SELECT id FROM tasks WHERE status IN ('queued', 'in_progress')"
            " AND next_poll_at <= ? AND (lease_until IS NULL OR lease_until < ?"
            " OR (lease_until < ? AND phase <> 'submitting'))"
            f" ORDER BY next_poll_at LIMIT ?{self.db.skip_locked}) RETURNING *",
            owner,
            now + lease_seconds,
            now,
            now - submit_grace,
            now,
            limit,
        )
        return [task_from_row(r) for r in rows]

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
        return [task_from_row(r) for r in rows]

    async def renew_lease(self, task_id: str, owner: str, until: float) -> bool:
        """Extend ``owner``'s lease on the task to ``until``; False when it is not
        ``owner``'s any more (another process took it over, or it finished)."""
        n = await self.db.execute(
            "UPDATE tasks SET lease_until = ? WHERE id = ? AND lease_owner = ?", until, task_id, owner
        )
        return n > 0

    # -- inside the transactions ------------------------------------------------------

    def _changed(self, task_id: str) -> None:
        if self.on_task_change is not None:
            self.on_task_change(task_id)

    def _announce(self, task_id: str) -> list[Statement]:
        """The statements that queue the task's webhook event, for the script that
        changed its status (the event commits, or not, with the change itself).

        ``notified_status`` remembers the last status announced, so a repeated write of
        the same status queues nothing.
        """
        silent = ", ".join(f"'{s}'" for s in _SILENT_STATUSES)
        return [
            Statement(
                "UPDATE tasks SET notified_status = status WHERE id = ? AND webhook_url IS NOT NULL"
                f" AND hidden = FALSE AND status NOT IN ({silent})"
                " AND (notified_status IS NULL OR notified_status <> status) RETURNING *",
                (task_id,),
                fetch=True,
                then=self._event,
            )
        ]

    def _event(self, rows: list[dict[str, Any]]) -> list[Statement]:
        """The webhook event of the task in ``rows`` (none when nothing is to be announced)."""
        if not rows:
            return []
        task = task_from_row(rows[0])
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
        gone = "EXISTS (SELECT 1 FROM webhook_gone WHERE url = ?)"
        return [
            Statement(
                "INSERT INTO webhook_events (id, task_id, token_id, url, type, body, state, attempts,"
                f" next_attempt_at, last_error, created_at) VALUES (?, ?, ?, ?, ?, ?,"
                f" CASE WHEN {gone} THEN 'gone' ELSE 'pending' END, 0, ?,"
                f" CASE WHEN {gone} THEN 'the endpoint answered 410 Gone earlier' ELSE NULL END, ?)",
                (
                    *(event_id, task.id, task.token_id, task.webhook_url, kind, body),
                    task.webhook_url,  # state: gone or pending
                    now,  # next_attempt_at
                    task.webhook_url,  # last_error when gone
                    now,  # created_at
                ),
            )
        ]

    async def _finish(
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
        fields = {k: v for k, v in fields.items() if v is not _UNSET}
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
        change = Statement(
            f"UPDATE tasks SET {assignments} WHERE id = ? AND status NOT IN ({TERMINAL_SQL})",
            (*(encode_column(k, v) for k, v in fields.items()), task_id),
            unless_row=_NotApplied,
        )
        if refund:
            bill = self._refund(task_id, reason or "task failed")
        elif settle_to is not None:
            bill = self._settle(task_id, settle_to, reason or "settled to the vendor's usage")
        else:
            bill = [Statement("UPDATE tasks SET cost = charge WHERE id = ?", (task_id,))]
        try:
            await self.db.script([change, *bill, *self._announce(task_id)])
        except _NotApplied:
            return False
        self._changed(task_id)
        return True

    def _settle(self, task_id: str, amount: int, reason: str) -> list[Statement]:
        """Settle the task's charge to ``amount``: a ``settle`` entry of the difference
        (at most one: the unique (task_id, kind) index makes a second impossible)."""

        def difference(rows: list[dict[str, Any]]) -> list[Statement]:
            row = rows[0]
            delta = amount - row["charge"]
            if not delta or row["settled"]:
                return []
            return [
                self._ledger_statement(row["token_id"], task_id, "settle", delta, row["model"], reason),
                # The vendor billed it: taken even past the quota, which only bounds what
                # can be started.
                Statement("UPDATE tokens SET used = used + ? WHERE id = ?", (delta, row["token_id"])),
            ]

        return [
            Statement(
                "SELECT token_id, charge, model,"
                " EXISTS (SELECT 1 FROM ledger WHERE task_id = ? AND kind = 'settle') AS settled"
                " FROM tasks WHERE id = ?",
                (task_id, task_id),
                fetch=True,
                then=difference,
            ),
            Statement("UPDATE tasks SET cost = ? WHERE id = ?", (amount, task_id)),
        ]

    def _refund(self, task_id: str, reason: str) -> list[Statement]:
        """Give the task's whole charge back (once: a second refund finds the first)."""

        def give_back(rows: list[dict[str, Any]]) -> list[Statement]:
            if not rows:
                return []
            row = rows[0]
            return [
                self._ledger_statement(row["token_id"], task_id, "refund", -row["charge"], row["model"], reason),
                Statement("UPDATE tokens SET used = used - ? WHERE id = ?", (row["charge"], row["token_id"])),
                Statement("UPDATE tasks SET refunded = ? WHERE id = ?", (True, task_id)),
            ]

        return [
            Statement(
                "SELECT token_id, charge, model FROM tasks WHERE id = ? AND charge > 0"
                " AND NOT EXISTS (SELECT 1 FROM ledger WHERE task_id = ? AND kind = 'refund')",
                (task_id, task_id),
                fetch=True,
                then=give_back,
            ),
            Statement("UPDATE tasks SET cost = 0 WHERE id = ?", (task_id,)),
        ]

    @staticmethod
    def _attempt_statement(task_id: str, channel: str, outcome: str, detail: str = "") -> Statement:
        return Statement(
            "INSERT INTO attempts (task_id, channel, outcome, detail, at) VALUES (?, ?, ?, ?, ?)",
            (task_id, channel, outcome, detail[:1000], time.time()),
        )

    @staticmethod
    def _ledger_statement(
        token_id: str, task_id: str | None, kind: str, amount: int, model: str | None, reason: str
    ) -> Statement:
        return Statement(
            "INSERT INTO ledger (id, token_id, task_id, kind, amount, model, reason, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (secrets.randbits(62), token_id, task_id, kind, amount, model, reason, time.time()),
        )
