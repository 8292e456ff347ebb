"""A thin async SQL adapter so one set of queries runs on SQLite and PostgreSQL.

Queries use ``?`` placeholders; the PostgreSQL adapter rewrites them to ``$n``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiosqlite
import attrs

T = TypeVar("T")


class UniqueViolation(Exception):
    """A statement broke a unique index; the same class on SQLite and PostgreSQL."""


@attrs.frozen
class Statement:
    """One statement of a :meth:`Database.script`, and what ends the script when the
    statement does not go as the transition needs (the whole script is rolled back and
    the named exception raised)."""

    sql: str
    args: tuple[Any, ...] = ()
    #: Return the rows (a ``SELECT`` or ``... RETURNING``) instead of the row count.
    fetch: bool = False
    #: Raised when the statement changed (or returned) no row.
    unless_row: type[Exception] | None = None
    #: Raised when the statement returned a row (a ``SELECT`` that must find nothing).
    if_row: type[Exception] | None = None
    #: Raised when the statement broke a unique index (else :class:`UniqueViolation`).
    on_unique: type[Exception] | None = None
    #: The statements that follow from this one's result (its rows with ``fetch``, else
    #: its row count), run next in the same transaction: how a step that depends on an
    #: earlier one (a refund on the charge read, an event on the row changed) joins one
    #: script rather than a transaction held open across awaits. Called wherever the
    #: script runs (SQLite: the writer's thread), so it must only compute.
    then: Callable[[Any], Sequence[Statement]] | None = None

    def check(self, found: int) -> None:
        if self.unless_row is not None and found <= 0:
            raise self.unless_row()
        if self.if_row is not None and found > 0:
            raise self.if_row()


class Connection(Protocol):
    """What runs statements: a database, or the connection inside one of its transactions."""

    #: SQL appended to the due-task subquery so concurrent workers skip each other's rows.
    skip_locked: str

    async def execute(self, sql: str, *args: Any) -> int: ...
    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...
    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None: ...


class Database(Connection, Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]: ...

    async def script(self, statements: Sequence[Statement]) -> list[Any]:
        """Run ``statements`` in one transaction: per statement, its row count (or its
        rows with ``fetch``). Returns once committed; a statement's check failing rolls
        all of them back and raises its exception."""
        ...

    async def close(self) -> None: ...


def _run_statements(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[Any]:
    """Run ``statements`` on ``conn`` in the writer's thread (see :class:`Statement`):
    their results in order, each followed by those of the statements its ``then`` made."""
    results: list[Any] = []
    for statement in statements:
        try:
            cur = conn.execute(statement.sql, statement.args)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            if statement.on_unique is not None:
                raise statement.on_unique() from None
            raise UniqueViolation(str(exc)) from exc
        result: Any
        if statement.fetch:
            result = [dict(r) for r in cur.fetchall()]
            statement.check(len(result))
        else:
            result = cur.rowcount
            statement.check(result)
        results.append(result)
        if statement.then is not None:
            results += _run_statements(conn, statement.then(result))
    return results


class _SQLiteConnection:
    """Runs statements on the writer inside one of its transactions (no locking: the
    transaction holds the writer)."""

    skip_locked = ""

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    async def execute(self, sql: str, *args: Any) -> int:
        result: int = (await self._writer.call(_run_statements, [Statement(sql, args)]))[0]
        return result

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (await self._writer.call(_run_statements, [Statement(sql, args, fetch=True)]))[0]
        return rows

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None


_READ_ONLY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
# How long a write waits for another process (`vidgate worker` beside the API) to release
# the database's write lock before it fails.
_BUSY_SECONDS = 10.0
#: At most this many units of work (scripts, single statements) commit together.
_GROUP_COMMIT_MAX = 256


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or (
        "database is locked" in str(exc)
    )


def _when_unlocked_sync(attempt: Callable[[], T]) -> T:
    """Run ``attempt`` (in the writer's thread), retrying while another process holds the
    write lock.

    SQLite's own busy handler sleeps in steps of up to 100 ms, long after the lock is free;
    retrying with short sleeps keeps writes flowing when the worker and the API write from
    separate processes. Only the writer's thread sleeps, never the event loop.
    """
    deadline = time.monotonic() + _BUSY_SECONDS
    delay = 0.0005
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _begin(conn: sqlite3.Connection) -> None:
    # IMMEDIATE takes the write lock up front, so nothing inside the transaction waits for it.
    _when_unlocked_sync(lambda: conn.execute("BEGIN IMMEDIATE"))


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # SQLite may have rolled back itself (a full disk, an I/O error)
        conn.execute("ROLLBACK")


def _commit(conn: sqlite3.Connection) -> None:
    try:
        _when_unlocked_sync(lambda: conn.execute("COMMIT"))
    except BaseException:
        _rollback(conn)
        raise


def _run_group(conn: sqlite3.Connection, units: list[Sequence[Statement]]) -> list[tuple[bool, Any]]:
    """Group commit, in the writer's thread: every unit in one transaction, each in a
    savepoint of its own, so a unit that fails (its check, a constraint) is rolled back
    alone. ``(True, results)`` or ``(False, exception)`` per unit, once committed."""
    try:
        _begin(conn)
    except Exception as exc:
        return [(False, exc)] * len(units)
    outcomes: list[tuple[bool, Any]] = []
    for statements in units:
        if not conn.in_transaction:
            # SQLite ended the transaction on an error: what came before it is lost too.
            lost = next(exc for ok, exc in outcomes if not ok)
            outcomes = [(False, lost)] * len(outcomes)
            try:
                _begin(conn)
            except Exception as exc:
                return [*outcomes, *[(False, exc)] * (len(units) - len(outcomes))]
        conn.execute("SAVEPOINT unit")
        try:
            outcomes.append((True, _run_statements(conn, statements)))
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
            outcomes.append((False, exc))
            continue
        conn.execute("RELEASE unit")
    if not conn.in_transaction:
        lost = next(exc for ok, exc in outcomes if not ok)
        return [(False, lost)] * len(outcomes)
    try:
        _commit(conn)
    except Exception as exc:
        return [(False, exc)] * len(units)
    return outcomes


class _Writer:
    """The write connection (plain ``sqlite3``) and the one thread that runs everything on it."""

    def __init__(self, path: str) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="vidgate-sqlite-writer")
        self._path = path
        self.conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        if self._path != ":memory:":
            _when_unlocked_sync(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        # Busy waits are retried in _when_unlocked_sync, with shorter sleeps than SQLite's.
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA synchronous=NORMAL")
        self.conn = conn

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._open)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in the writer's thread."""
        assert self.conn is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self.conn, *args)

    async def close(self) -> None:
        if self.conn is not None:
            await self.call(lambda conn: conn.close())
        self._thread.shutdown(wait=True)


async def _sqlite_reader(path: str) -> aiosqlite.Connection:
    """A read-only connection (WAL: it reads while the writer writes)."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    # Readers are rarely blocked under WAL, and then only briefly.
    await conn.execute("PRAGMA busy_timeout=10000")
    await conn.execute("PRAGMA synchronous=NORMAL")
    # A reader never writes: a stray write would contend with the one writer.
    await conn.execute("PRAGMA query_only=1")
    return conn


class FairPool(Generic[T]):
    """Items lent first come, first served.

    ``asyncio.Queue`` is not: an item put back wakes the longest waiter, but a caller
    arriving before that waiter runs takes the item, and the waiter queues again at the
    back. Under load (status reads at concurrency 32 on two readers) that starved a
    steady tenth of the reads for 40-100 ms while the rest waited for nothing. Here an
    item given back goes straight to the longest waiter."""

    def __init__(self, items: Sequence[T]) -> None:
        self._idle = collections.deque(items)
        self._waiters: collections.deque[asyncio.Future[T]] = collections.deque()

    async def acquire(self) -> T:
        if self._idle:  # never while someone waits: release hands items to waiters first
            return self._idle.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            # Cancelled (or closed) while waiting, or after the item was handed over.
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            else:
                waiter.cancel()
            raise

    def release(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._idle.append(item)


class SQLiteDatabase:
    """One writer connection with a thread of its own, and a few reader connections
    (each aiosqlite runs its own thread), WAL mode.

    SQLite allows one writer at a time anyway. Writes outside :meth:`transaction` (single
    statements and :meth:`script`) are group-committed: whatever is queued while the
    writer is busy runs in its next transaction, each unit in a savepoint, and every
    caller is answered once that transaction has committed. So many concurrent creates
    (or the worker's many poll updates) take the write lock once, not once each, which
    also leaves it free more often for the other process on the same file (``vidgate
    worker`` beside the API). :meth:`transaction` holds the writer for its body. Plain
    reads (``SELECT``/``WITH`` outside a transaction) go to the readers, which WAL lets
    run while a write is in progress, so status reads never queue behind the writer.
    Each read is its own implicit transaction and sees every write committed before it.
    """

    skip_locked = ""

    def __init__(self, writer: _Writer, readers: list[aiosqlite.Connection] | None = None) -> None:
        self._writer = writer
        self._raw = _SQLiteConnection(writer)
        # Held by a transaction's body and by each group commit.
        self._lock = asyncio.Lock()
        self._queue: list[tuple[Sequence[Statement], asyncio.Future[list[Any]]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._readers = list(readers or ())
        self._reader_pool = FairPool(self._readers)

    @classmethod
    async def open(cls, path: str, readers: int = 2) -> SQLiteDatabase:
        if path != ":memory:":
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
        writer = _Writer(path)
        await writer.open()
        if path == ":memory:":
            # Every connection to :memory: is a database of its own: no readers.
            return cls(writer)
        return cls(writer, [await _sqlite_reader(path) for _ in range(readers)])

    async def script(self, statements: Sequence[Statement]) -> list[Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((statements, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        """Commit what is queued, a group at a time, until the queue is empty."""
        try:
            while self._queue:
                async with self._lock:
                    group, self._queue = self._queue[:_GROUP_COMMIT_MAX], self._queue[_GROUP_COMMIT_MAX:]
                    outcomes = await self._writer.call(_run_group, [statements for statements, _ in group])
                for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():  # its caller was cancelled; the work is done anyway
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        except BaseException as exc:
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("store closed"))
            self._queue = []
            raise
        finally:
            self._flusher = None

    async def execute(self, sql: str, *args: Any) -> int:
        result: int = (await self.script([Statement(sql, args)]))[0]
        return result

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self._readers and _READ_ONLY.match(sql):
            reader = await self._reader_pool.acquire()
            try:
                # One trip to the reader's thread: each costs a wake-up of two threads.
                return [dict(r) for r in await reader.execute_fetchall(sql, args)]
            finally:
                self._reader_pool.release(reader)
        rows: list[dict[str, Any]] = (await self.script([Statement(sql, args, fetch=True)]))[0]
        return rows

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SQLiteConnection]:
        async with self._lock:
            await self._writer.call(_begin)
            try:
                yield self._raw
            except BaseException:
                await self._writer.call(_rollback)
                raise
            else:
                await self._writer.call(_commit)

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        for reader in self._readers:
            await reader.close()
        await self._writer.close()


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

    async def script(self, statements: Sequence[Statement]) -> list[Any]:
        async with self.transaction() as tx:
            return await tx._run(statements)

    async def _run(self, statements: Sequence[Statement]) -> list[Any]:
        """Run ``statements`` inside this transaction (as :func:`_run_statements` does)."""
        results: list[Any] = []
        for statement in statements:
            result: Any
            try:
                if statement.fetch:
                    result = await self.fetchall(statement.sql, *statement.args)
                else:
                    result = await self.execute(statement.sql, *statement.args)
            except UniqueViolation:
                if statement.on_unique is None:
                    raise
                raise statement.on_unique() from None
            statement.check(len(result) if statement.fetch else result)
            results.append(result)
            if statement.then is not None:
                results += await self._run(statement.then(result))
        return results

    async def close(self) -> None:
        await self._pool.close()


async def connect(url: str) -> Database:
    """Open ``sqlite:///path`` (``sqlite:///:memory:`` too) or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return await SQLiteDatabase.open(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresDatabase.open(url)
    raise ValueError(f"unsupported store url {url!r}: use sqlite:///PATH or postgresql://...")
