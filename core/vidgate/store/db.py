"""A thin async SQL adapter so one set of queries runs on SQLite and PostgreSQL.

Queries use ``?`` placeholders; the PostgreSQL adapter rewrites them to ``$n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import sqlite3

import aiosqlite


class UniqueViolation(Exception):
    """A statement broke a unique index; the same class on SQLite and PostgreSQL."""


class Database(Protocol):
    #: SQL appended to the due-task subquery so concurrent workers skip each other's rows.
    skip_locked: str

    async def execute(self, sql: str, *args: Any) -> int: ...
    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...
    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Database]: ...
    async def close(self) -> None: ...


class _SQLiteConnection:
    """Runs statements on a connection with no locking (used inside a transaction)."""

    skip_locked = ""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            cur = await self._conn.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from exc
            raise
        return cur.rowcount

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        cur = await self._conn.execute(sql, args)
        return [dict(r) for r in await cur.fetchall()]

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None


class SQLiteDatabase:
    """One aiosqlite connection (its own thread), WAL mode, statements serialised.

    SQLite allows one writer at a time anyway; serialising in-process keeps our own
    coroutines out of each other's transactions, and ``busy_timeout`` covers other
    processes (``vidgate worker`` beside ``vidgate serve``) on the same file.
    """

    skip_locked = ""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._raw = _SQLiteConnection(conn)
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SQLiteDatabase:
        if path != ":memory:":
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await self._raw.execute(sql, *args)

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._lock:
            return await self._raw.fetchall(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SQLiteConnection]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._raw
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


_PLACEHOLDER = re.compile(r"\?")


def _to_pg(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class PostgresDatabase:
    """An asyncpg pool. Leases use ``FOR UPDATE SKIP LOCKED`` so replicas share work."""

    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: Any, conn: Any = None) -> None:
        self._pool = pool
        self._conn = conn

    @classmethod
    async def open(cls, dsn: str) -> PostgresDatabase:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, command_timeout=30)
        return cls(pool)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if self._conn is not None:
            yield self._conn
        else:
            async with self._pool.acquire() as conn:
                yield conn

    async def execute(self, sql: str, *args: Any) -> int:
        import asyncpg

        async with self._connection() as conn:
            try:
                status = await conn.execute(_to_pg(sql), *args)
            except asyncpg.UniqueViolationError as exc:
                raise UniqueViolation(exc.constraint_name or str(exc)) from exc
        # asyncpg returns e.g. "UPDATE 3"
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            rows = await conn.fetch(_to_pg(sql), *args)
        return [dict(r) for r in rows]

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresDatabase]:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                yield PostgresDatabase(self._pool, conn)

    async def close(self) -> None:
        await self._pool.close()


async def connect(url: str) -> Database:
    """Open ``sqlite:///path`` (``sqlite:///:memory:`` too) or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return await SQLiteDatabase.open(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.open(url)
    raise ValueError(f"unsupported store url {url!r}: use sqlite:///PATH or postgresql://...")
