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
    # Token names are unique from now on. Databases that already hold two tokens of one
    # name keep them (the CLI refuses such an ambiguous name and asks for the id): only
    # the oldest of each name claims it, so no new token can take a name in use.
    [
        "ALTER TABLE tokens ADD COLUMN unique_name TEXT",
        """UPDATE tokens SET unique_name = name WHERE NOT EXISTS (
            SELECT 1 FROM tokens older WHERE older.name = tokens.name
            AND (older.created_at < tokens.created_at
                 OR (older.created_at = tokens.created_at AND older.id < tokens.id))
        )""",
        "CREATE UNIQUE INDEX tokens_unique_name ON tokens (unique_name)",
    ],
    # The unified request (inline images, metadata) and the vendor job move out of the task
    # row: every GET and list reads that row, and only submit, recovery and remix need them.
    [
        "CREATE TABLE task_blobs (task_id TEXT PRIMARY KEY, request TEXT NOT NULL, job TEXT)",
        "INSERT INTO task_blobs (task_id, request, job) SELECT id, request, job FROM tasks",
        "ALTER TABLE tasks DROP COLUMN request",
        "ALTER TABLE tasks DROP COLUMN job",
    ],
    # Webhooks: a per-task and per-token endpoint, per-token signing secrets, and the
    # outbox of events (written in the transaction that changes the task's status).
    [
        "ALTER TABLE tasks ADD COLUMN webhook_url TEXT",
        # The last status an outbox event was written for, so each status is announced once.
        "ALTER TABLE tasks ADD COLUMN notified_status TEXT",
        "ALTER TABLE tokens ADD COLUMN webhook_url TEXT",
        "ALTER TABLE tokens ADD COLUMN webhook_secrets TEXT",
        """CREATE TABLE webhook_events (
            id TEXT PRIMARY KEY,
            task_id TEXT NOT NULL,
            token_id TEXT NOT NULL,
            url TEXT NOT NULL,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION,
            last_status INTEGER,
            last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            delivered_at DOUBLE PRECISION
        )""",
        "CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE state = 'pending'",
        "CREATE INDEX webhook_events_task ON webhook_events (task_id, created_at)",
        """CREATE TABLE webhook_gone (
            url TEXT PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL
        )""",
    ],
    # Plugin contract v2: usage-fact billing and cancel.
    [
        "ALTER TABLE tasks ADD COLUMN usage TEXT",
        "ALTER TABLE tasks ADD COLUMN cost BIGINT",
        "ALTER TABLE tasks ADD COLUMN cancel_requested_at DOUBLE PRECISION",
    ],
    # The answer given when no vendor took a task, replayed for its Idempotency-Key.
    ["ALTER TABLE tasks ADD COLUMN submit_error TEXT"],
    # Plugin contract v2: poll failure policy (grace for "no such task" after a submit).
    [
        "ALTER TABLE tasks ADD COLUMN submitted_at DOUBLE PRECISION",
    ],
    # Derived tasks: extend and edit besides remix.
    [
        "ALTER TABLE tasks ADD COLUMN derived_from TEXT",
        "ALTER TABLE tasks ADD COLUMN operation TEXT",
    ],
    # Operator tokens (`vidgate tokens create --operator`) may read the operator console.
    [
        "ALTER TABLE tokens ADD COLUMN operator BOOLEAN NOT NULL DEFAULT FALSE",
    ],
]
