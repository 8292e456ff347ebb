"""Schema migrations, applied in order at start-up; each runs once per database."""

from __future__ import annotations

# Each migration is a list of statements valid on both SQLite and PostgreSQL.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            key_hint TEXT NOT NULL,
            grp TEXT NOT NULL,
            quota BIGINT,
            used BIGINT NOT NULL DEFAULT 0,
            models TEXT,
            expires_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            token_id TEXT NOT NULL,
            model TEXT NOT NULL,
            vendor TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL,
            phase TEXT NOT NULL,
            hidden BOOLEAN NOT NULL DEFAULT FALSE,
            progress INTEGER NOT NULL DEFAULT 0,
            prompt TEXT,
            seconds INTEGER,
            size TEXT,
            resolution TEXT,
            request TEXT NOT NULL,
            job TEXT,
            handle TEXT,
            vendor_task_id TEXT,
            vendor_status TEXT,
            result TEXT,
            error_code TEXT,
            error_message TEXT,
            charge BIGINT NOT NULL DEFAULT 0,
            refunded BOOLEAN NOT NULL DEFAULT FALSE,
            remixed_from TEXT,
            idempotency_key TEXT,
            request_hash TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            completed_at DOUBLE PRECISION,
            expires_at DOUBLE PRECISION,
            deadline_at DOUBLE PRECISION,
            next_poll_at DOUBLE PRECISION,
            poll_failures INTEGER NOT NULL DEFAULT 0,
            fetch_failures INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION,
            media TEXT
        )""",
        "CREATE INDEX tasks_due ON tasks (next_poll_at) WHERE status IN ('queued', 'in_progress')",
        "CREATE INDEX tasks_owner ON tasks (token_id, created_at, id)",
        "CREATE INDEX tasks_vendor_task ON tasks (channel, vendor_task_id)",
        "CREATE INDEX tasks_channel_active ON tasks (channel) WHERE status IN ('queued', 'in_progress')",
        "CREATE UNIQUE INDEX tasks_idempotency ON tasks (token_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
        """CREATE TABLE attempts (
            task_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX attempts_task ON attempts (task_id)",
        """CREATE TABLE ledger (
            id BIGINT PRIMARY KEY,
            token_id TEXT NOT NULL,
            task_id TEXT,
            kind TEXT NOT NULL,
            amount BIGINT NOT NULL,
            model TEXT,
            reason TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL
        )""",
        # At most one charge and one refund per task: the database, not the code path,
        # guarantees that a failed task is refunded exactly once.
        "CREATE UNIQUE INDEX ledger_once ON ledger (task_id, kind) WHERE task_id IS NOT NULL",
        "CREATE INDEX ledger_token ON ledger (token_id, at)",
    ],
    # The answer given when no vendor took a task, replayed for its Idempotency-Key.
    ["ALTER TABLE tasks ADD COLUMN submit_error TEXT"],
]
