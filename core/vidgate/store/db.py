"""A thin async SQL adapter so one set of queries runs on SQLite and PostgreSQL.

Queries use ``?`` placeholders; the PostgreSQL adapter rewrites them to ``$n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

T = TypeVar("T")


class UniqueViolation(Exception):
    """A statement broke a unique index; the same class on SQLite and PostgreSQL."""


class Connection(Protocol):
    """What runs statements: a database, or the connection inside one of its transactions."""

    #: SQL appended to the due-task subquery so concurrent workers skip each other's rows.
    skip_locked: str

    async def execute(self, sql: str, *args: Any) -> int: ...
    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...
    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None: ...


class Database(Connection, Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]: ...
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
        # One trip to the connection's thread (execute, then fetchall, would be two).
        return [dict(r) for r in await self._conn.execute_fetchall(sql, args)]

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None


_READ_ONLY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
# How long a write waits for another process (`vidgate worker` beside the API) to release
# the database's write lock before it fails.
_BUSY_SECONDS = 10.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or (
        "database is locked" in str(exc)
    )


async def _when_unlocked(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt``, retrying while another process holds the write lock.

    SQLite's own busy handler would sleep in its thread in steps of up to 100 ms, long
    after the lock is free; retrying here with short sleeps keeps writes flowing when
    the worker and the API write from separate processes, and never blocks the loop.
    """
    deadline = time.monotonic() + _BUSY_SECONDS
    delay = 0.0005
    while True:
        try:
            return await attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)


async def _sqlite_connect(path: str, *, reader: bool) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    if not reader:
        await _when_unlocked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
    # Writers retry in _when_unlocked; readers (WAL) are rarely blocked, only briefly.
    await conn.execute(f"PRAGMA busy_timeout={10000 if reader else 0}")
    await conn.execute("PRAGMA synchronous=NORMAL")
    if reader:
        # A reader never writes: a stray write would contend with the one writer.
        await conn.execute("PRAGMA query_only=1")
    return conn


class SQLiteDatabase:
    """One writer connection and a few reader connections (each aiosqlite runs its own
    thread), WAL mode.

    SQLite allows one writer at a time anyway; serialising writes in-process keeps our
    own coroutines out of each other's transactions, and ``busy_timeout`` covers other
    processes (``vidgate worker`` beside ``vidgate serve``) on the same file. Plain
    reads (``SELECT``/``WITH`` outside a transaction) go to the readers, which WAL lets
    run while a write is in progress, so status reads never queue behind the writer.
    Each read is its own implicit transaction and sees every write committed before it.
    """

    skip_locked = ""

    def __init__(self, conn: aiosqlite.Connection, readers: list[aiosqlite.Connection] | None = None) -> None:
        self._raw = _SQLiteConnection(conn)
        self._conn = conn
        self._lock = asyncio.Lock()
        self._readers = list(readers or ())
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for reader in self._readers:
            self._idle.put_nowait(reader)

    @classmethod
    async def open(cls, path: str, readers: int = 2) -> SQLiteDatabase:
        if path == ":memory:":
            # Every connection to :memory: is a database of its own: no readers.
            return cls(await _sqlite_connect(path, reader=False))
        await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
        writer = await _sqlite_connect(path, reader=False)
        return cls(writer, [await _sqlite_connect(path, reader=True) for _ in range(readers)])

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._lock:
            return await _when_unlocked(lambda: self._raw.execute(sql, *args))

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self._readers and _READ_ONLY.match(sql):
            reader = await self._idle.get()
            try:
                # One trip to the reader's thread: each costs a wake-up of two threads.
                return [dict(r) for r in await reader.execute_fetchall(sql, args)]
            finally:
                self._idle.put_nowait(reader)
        async with self._lock:
            return await _when_unlocked(lambda: self._raw.fetchall(sql, *args))

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SQLiteConnection]:
        async with self._lock:
            # Takes the write lock up front, so nothing inside the transaction waits for it.
            await _when_unlocked(lambda: self._conn.execute("BEGIN IMMEDIATE"))
            try:
                yield self._raw
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def close(self) -> None:
        for reader in self._readers:
            await reader.close()
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
        return await SQLiteDatabase.open(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.open(url)
    raise ValueError(f"unsupported store url {url!r}: use sqlite:///PATH or postgresql://...")
