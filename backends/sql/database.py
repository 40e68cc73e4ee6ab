"""The engine and the one door between Trio and the blocking SQLAlchemy Core engine.

SQLAlchemy's async engine is asyncio-only, so the sync engine runs in threads:
`Database.read` / `Database.write` run a function of a `Connection` inside one
transaction through `trio.to_thread.run_sync`, limited to the pool size (the pool has no
overflow, so a thread never waits for a connection). `Database.read_one` runs a read of
one statement, on PostgreSQL without BEGIN/COMMIT: one round trip, for hot paths such as
authentication. A cancelled caller does not abandon its thread: the transaction commits
or rolls back as a whole, then the caller sees `trio.Cancelled`. Driver exceptions are
mapped to `backends.errors` in the thread.

SQLite: pysqlite's own transaction handling is turned off; read transactions begin with
`BEGIN`, write transactions with `BEGIN IMMEDIATE` (taking the write lock up front, so a
read-then-write transaction can neither lose an update nor fail with "database is
locked" half way), and writes are funnelled through a limiter of 1.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy.exc
import trio
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from backends.errors import BackendUnavailable, Conflict, StorageError

T = TypeVar("T")

DEFAULT_POOL_SIZE = {"sqlite": 4, "postgresql": 8}
CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_TIMEOUT_MS = 10_000
_WAL_RETRY_S = 0.005
# Execution option marking a connection whose transaction writes (SQLite only).
_WRITE_OPTION = "homeserver_write"


def parse_url(url: str) -> tuple[URL, int | None]:
    """The SQLAlchemy URL for a storage URL, and the `pool_size` query option if any.

    `postgresql://` and `postgres://` use the psycopg 3 driver; `sqlite:///path` the
    standard library's sqlite3.
    """
    try:
        sa_url = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise StorageError(f"invalid database URL: {exc}") from exc
    backend = sa_url.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        sa_url = sa_url.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        sa_url = sa_url.set(drivername="sqlite+pysqlite")
    else:
        raise StorageError(f"not an SQL storage URL: {sa_url.drivername}://...")
    pool_size: int | None = None
    raw = sa_url.query.get("pool_size")
    if raw is not None:
        value = raw if isinstance(raw, str) else raw[-1]
        if not value.isdigit() or int(value) < 1:
            raise StorageError(f"invalid pool_size in database URL: {value!r}")
        pool_size = int(value)
        sa_url = sa_url.difference_update_query(["pool_size"])
    return sa_url, pool_size


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def create_sync_engine(url: URL, pool_size: int) -> Engine:
    """A Core engine with a fixed-size pool (no overflow), set up for its dialect."""
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, pool_size)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=CONNECT_TIMEOUT_S,
        # No pre-ping (a round trip per checkout, ~25% of read throughput): a dead
        # connection invalidates the whole pool on first use instead, and the
        # transaction is retried once (see Database._transaction).
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def _create_sqlite_engine(url: URL, pool_size: int) -> Engine:
    connect_args: dict[str, Any] = {
        # Pooled connections move between worker threads, one thread at a time.
        "check_same_thread": False,
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
    }
    if _is_sqlite_memory(url):
        # One shared connection: every thread must see the same in-memory database.
        engine = create_engine(url, poolclass=StaticPool, connect_args=connect_args)
    else:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=CONNECT_TIMEOUT_S,
            connect_args=connect_args,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from pysqlite; `_on_begin` emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            _enable_wal(cursor)
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the database file to WAL mode (it stays so), retrying while locked.

    Connections converting a fresh file at the same time (several processes migrating
    it) contend for its exclusive lock, and SQLite answers "database is locked" without
    waiting (it would deadlock); this connection holds no lock between attempts.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(_WAL_RETRY_S)


def map_error(exc: BaseException, conflict: str | None = None) -> StorageError:
    """The `backends.errors` exception for a driver (or other) exception.

    Messages carry the driver's first line only: SQLAlchemy's own text includes the
    statement's parameters, which may hold secrets such as access tokens.
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        detail = _first_line(exc.orig) if exc.orig is not None else type(exc).__name__
        if isinstance(exc, sqlalchemy.exc.IntegrityError):
            if conflict is not None:
                return Conflict(conflict)
            return StorageError(f"integrity error: {detail}")
        if exc.connection_invalidated or isinstance(
            exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        ):
            return BackendUnavailable(f"database unavailable: {detail}")
        return StorageError(f"database error: {detail}")
    if isinstance(exc, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
        return BackendUnavailable(f"database unavailable: {_first_line(exc)}")
    return StorageError(f"database error ({type(exc).__name__}): {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _DeadConnection(Exception):
    """A statement found its pooled connection dead; the transaction never committed."""


class Database:
    """An engine plus the limiters that gate access to it from Trio."""

    def __init__(self, engine: Engine, pool_size: int) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        is_sqlite = self.dialect == "sqlite"
        if is_sqlite and isinstance(engine.pool, StaticPool):
            pool_size = 1
        self._limiter = trio.CapacityLimiter(pool_size)
        self._write_limiter = trio.CapacityLimiter(1) if is_sqlite else None
        self._autocommit = self.dialect == "postgresql"

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)` in a read transaction, in a worker thread."""
        return await self._run(fn, write=False, conflict=None)

    async def read_one(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(connection)`, which reads with ONE statement, in a worker thread.

        On PostgreSQL the statement runs in autocommit mode: one round trip instead of
        three (BEGIN, the statement, COMMIT), and a single statement sees one snapshot
        anyway. SQLite (in process) reads in a transaction as `read` does.
        """
        return await self._run(fn, write=False, conflict=None, autocommit=self._autocommit)

    async def write(self, fn: Callable[[Connection], T], *, conflict: str | None = None) -> T:
        """Run `fn(connection)` in a write transaction, in a worker thread.

        An integrity error becomes `Conflict(conflict)` when `conflict` is given (the
        transaction is rolled back, so nothing is written), else a StorageError.
        """
        if self._write_limiter is None:
            return await self._run(fn, write=True, conflict=conflict)
        async with self._write_limiter:
            return await self._run(fn, write=True, conflict=conflict)

    async def _run(
        self,
        fn: Callable[[Connection], T],
        *,
        write: bool,
        conflict: str | None,
        autocommit: bool = False,
    ) -> T:
        # abandon_on_cancel=False: the thread always finishes its transaction.
        result = await trio.to_thread.run_sync(
            self._transaction, fn, write, conflict, autocommit, limiter=self._limiter
        )
        # The work is done (committed or rolled back); a cancelled caller hears so now.
        await trio.lowlevel.checkpoint_if_cancelled()
        return result

    def _transaction(
        self, fn: Callable[[Connection], T], write: bool, conflict: str | None, autocommit: bool
    ) -> T:
        try:
            try:
                return self._attempt(fn, write, autocommit)
            except _DeadConnection:
                # The pooled connection had died (database restarted, connection killed)
                # before the transaction could commit, so nothing was written, and
                # SQLAlchemy has invalidated the pool: once more on a fresh connection.
                return self._attempt(fn, write, autocommit)
        except StorageError:
            raise
        except _DeadConnection as dead:
            cause = dead.__cause__ if dead.__cause__ is not None else dead
            raise map_error(cause, conflict) from cause
        except Exception as exc:
            raise map_error(exc, conflict) from exc

    def _attempt(self, fn: Callable[[Connection], T], write: bool, autocommit: bool) -> T:
        with self.engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE_OPTION: True})
            elif autocommit:
                # Reset to the default level when the connection returns to the pool.
                conn.execution_options(isolation_level="AUTOCOMMIT")
            with conn.begin():
                try:
                    return fn(conn)
                except sqlalchemy.exc.DBAPIError as exc:
                    # Only failures before COMMIT: after it, a write may have happened.
                    if exc.connection_invalidated:
                        raise _DeadConnection from exc
                    raise

    async def dispose(self) -> None:
        """Close every pooled connection; finishes even if the caller is cancelled."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.engine.dispose)


@asynccontextmanager
async def open_database(url: str, pool_size: int | None = None) -> AsyncIterator[Database]:
    """A `Database` for a storage URL (pool size: argument, else URL option, else default);
    its engine is disposed on exit. Opening does no I/O: connection errors surface on use.
    """
    sa_url, url_pool_size = parse_url(url)
    size = pool_size or url_pool_size or DEFAULT_POOL_SIZE[sa_url.get_backend_name()]
    try:
        engine = create_sync_engine(sa_url, size)
    except Exception as exc:
        raise map_error(exc) from exc
    db = Database(engine, size)
    try:
        yield db
    finally:
        await db.dispose()
