"""The one door between Trio and the blocking SQLAlchemy Core engine.

SQLAlchemy's async engine is asyncio-only, so the sync engine runs in threads:
`Database.read` / `Database.write` run a function of a `Connection` inside one
transaction through `trio.to_thread.run_sync`, limited to the pool size (the pool has no
overflow, so a thread never waits for a connection). `Database.read_one` runs a read of
one statement, on PostgreSQL without BEGIN/COMMIT: one round trip, for hot paths such as
authentication. Driver exceptions are mapped to `backends.errors` in the thread.

Deadlines. A silent database (a network partition: packets dropped, no reset) would
hold a thread, and the request waiting on it, for as long as it lasts: the kernel ACKs
what a stalled peer's buffers still take, so no TCP-level option fires. So every
operation has a deadline (`StorageTimeouts.operation_ms`, from the call on: waiting for
a thread slot, connecting, every statement, the commit). When it passes:

- the caller gets BackendUnavailable at once; its thread is abandoned and keeps its
  CapacityLimiter token until it really ends, so threads never outnumber connections;
- the thread is made to end: its PostgreSQL connection's socket is shut down (the
  blocked driver call fails at once and the connection is discarded, never returned to
  the pool), a SQLite statement is interrupted. A thread still connecting ends within
  the connect timeout; one waiting on SQLite's busy lock within its busy timeout;
- the transaction happened entirely or not at all, but we no longer know which: a
  COMMIT already on its way may still commit after the caller heard 503. Clients retry,
  and writes that must not happen twice carry a transaction id stored in the same
  transaction, so the retry finds the first attempt's outcome.

A cancelled caller (a client that went away) does not abandon its thread: the
transaction commits or rolls back as a whole, then the caller sees `trio.Cancelled`,
no later than the deadline (then the thread is made to end as above). An operation
cancelled before its thread started never runs.

Pooled connections that die (database restarted, connection killed) invalidate the
pool; a transaction that had not reached COMMIT is retried once on a fresh connection.
PostgreSQL connections also get TCP keepalives, a TCP user timeout (a real partition
then breaks a connection that has unacknowledged data) and server-side limits
(statement, lock and idle-in-transaction timeouts, so a session we gave up on does not
hold locks). Schema migrations (`Database.migrate`) have no deadline and no limits.

SQLite: pysqlite's own transaction handling is turned off; read transactions begin with
`BEGIN`, write transactions with `BEGIN IMMEDIATE` (taking the write lock up front, so a
read-then-write transaction can neither lose an update nor fail with "database is
locked" half way), and writes are funnelled through a limiter of 1. (A write abandoned
at its deadline frees that limiter at once; the next write then waits on SQLite's own
lock until the abandoned one has ended.)

Group commit. On SQLite, the writes that queue up while one runs go to the database
together when the writer's turn comes (on PostgreSQL, the `write_one` and `serialized`
writes do, one group at a time): one thread hop, one `BEGIN IMMEDIATE` and one
COMMIT for all of them, each function run in turn in that transaction (so each sees
the ones before it, exactly as if they had run one after the other). Each caller still
hears only after the COMMIT. If any of them fails, the whole transaction is rolled back
(nothing of it was written) and each is run again in its own transaction, so one
failing write never fails another. Under 32 concurrent clients a presence change cost
about a third of its time in that per-transaction overhead.

`write_one` is for a write of one statement that may safely run twice (it sets
values): on PostgreSQL it runs in autocommit mode (one round trip, not three), so a
connection lost mid-statement may have applied it before it is retried.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import outcome
import sqlalchemy.exc
import trio
from sqlalchemy import Connection, Engine
from sqlalchemy.pool import StaticPool

from backends.errors import BackendUnavailable, StorageError
from backends.sql.engine import SESSION_LIMITS, WRITE_OPTION, create_sync_engine, parse_url
from backends.sql.errors import map_error
from backends.timeouts import StorageTimeouts

T = TypeVar("T")

DEFAULT_POOL_SIZE = {"sqlite": 4, "postgresql": 8}
# How long closing the database waits for abandoned threads to end.
_DISPOSE_WAIT_S = 5.0


class _DeadConnection(Exception):
    """A statement found its pooled connection dead; the transaction never committed."""


class _Stopped(Exception):
    """The operation was given up before its thread reached the database."""


def _interrupt(dbapi_connection: Any) -> None:
    """Make the driver call blocked on `dbapi_connection` (in another thread) fail now.

    PostgreSQL: shut the socket down (on a duplicate of its descriptor, so the number
    cannot be reused under the driver); the driver then reports a lost connection.
    SQLite: `interrupt()`, which is meant to be called from another thread.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.interrupt()
        return
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:  # closed already: nothing left to interrupt
        return
    with socket.socket(fileno=os.dup(fd)) as sock, suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Operation:
    """One operation's worker thread as seen from Trio: whether it has started, the
    DBAPI connection it uses, and a way to end it early. Both sides hold the lock only
    for a moment, so a connection is never interrupted once back in the pool."""

    def __init__(self, on_done: Callable[[_Operation], None]) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._connection: Any = None
        self._token = trio.lowlevel.current_trio_token()
        self._on_done = on_done
        self.done = trio.Event()

    # -- the Trio side

    def stop_unless_started(self) -> bool:
        """True if the thread had not started: it never will (nothing to wait for)."""
        with self._lock:
            if self._started:
                return False
            self._stopped = True
        self._finished()
        return True

    def stop(self) -> None:
        """Give the operation up: interrupt the connection it is using, if any, and
        have its thread discard that connection (or not start at all)."""
        with self._lock:
            self._stopped = True
            if self._connection is not None:
                _interrupt(self._connection)

    # -- the worker thread's side

    def start(self) -> None:
        with self._lock:
            if self._stopped:
                raise _Stopped
            self._started = True

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def attach(self, dbapi_connection: Any) -> None:
        with self._lock:
            if self._stopped:
                raise _Stopped
            self._connection = dbapi_connection

    def detach(self) -> bool:
        """Forget the connection (before it goes back to the pool); True if the
        operation was given up meanwhile (the connection must then be discarded)."""
        with self._lock:
            self._connection = None
            return self._stopped

    def end(self) -> None:
        with suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._finished)

    def _finished(self) -> None:  # in Trio
        self.done.set()
        self._on_done(self)


@dataclass(eq=False)
class _Queued(Generic[T]):
    """One write waiting for SQLite's writer, to go in the next group commit."""

    fn: Callable[[Connection], T]
    conflict: str | None
    single: bool  # one statement, safe to run twice (`write_one`)
    # Cancelled by the writer that takes this write into its group.
    waiting: trio.CancelScope = field(default_factory=trio.CancelScope)
    taken: bool = False
    result: outcome.Outcome[T] | None = None
    done: trio.Event = field(default_factory=trio.Event)


class Database:
    """An engine plus the limiters that gate access to it from Trio.

    `timeouts=None`: no operation deadline (migrations, maintenance).
    """

    def __init__(
        self, engine: Engine, pool_size: int, timeouts: StorageTimeouts | None = None
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        is_sqlite = self.dialect == "sqlite"
        if is_sqlite and isinstance(engine.pool, StaticPool):
            pool_size = 1
        self._limiter = trio.CapacityLimiter(pool_size)
        self._write_limiter = trio.CapacityLimiter(1) if is_sqlite else None
        self._autocommit = self.dialect == "postgresql"
        # PostgreSQL: `write_one` writes go one group at a time (SQLite: all writes).
        self._one_limiter = self._write_limiter or trio.CapacityLimiter(1)
        self._timeout_s = math.inf if timeouts is None else timeouts.operation_s
        # A dead connection interrupted by `_Operation.stop` would otherwise go back to
        # the pool (SQLite's is fine after an interrupt, and an in-memory database has
        # only the one).
        self._discard_stopped = not is_sqlite
        # Operations whose threads have not ended (abandoned ones included).
        self._live: set[_Operation] = set()
        # SQLite: writes waiting for the writer, taken together by the next one.
        self._queued: list[_Queued[Any]] = []
        self.group_commits = 0  # transactions that carried more than one write
        self.groups_rolled_back = 0  # groups that failed, so each write ran on its own

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

    async def write(
        self,
        fn: Callable[[Connection], T],
        *,
        conflict: str | None = None,
        serialized: bool = False,
    ) -> T:
        """Run `fn(connection)` in a write transaction, in a worker thread (on SQLite
        possibly together with other writes: see group commit above).

        `serialized`: writes that take one lock every other such write takes (the
        stream counter), so they run one after the other anyway: on PostgreSQL they
        are grouped too, with the `write_one` writes.

        An integrity error becomes `Conflict(conflict)` when `conflict` is given (the
        transaction is rolled back, so nothing is written), else a StorageError.
        """
        if self._write_limiter is not None:
            return await self._grouped(fn, conflict, self._write_limiter, single=False)
        if serialized:
            return await self._grouped(fn, conflict, self._one_limiter, single=False)
        return await self._run(fn, write=True, conflict=conflict)

    async def write_one(self, fn: Callable[[Connection], T], *, conflict: str | None = None) -> T:
        """`write` for `fn` that writes with ONE statement and may safely run twice.
        Grouped on both dialects: on SQLite with every write, on PostgreSQL with the
        other `write_one` and `serialized` writes queued meanwhile (alone, in
        autocommit mode: one round trip)."""
        return await self._grouped(fn, conflict, self._one_limiter, single=True)

    async def _grouped(
        self,
        fn: Callable[[Connection], T],
        conflict: str | None,
        turn: trio.CapacityLimiter,
        *,
        single: bool,
    ) -> T:
        """Wait for `turn`; whoever gets it runs every write queued by then."""
        deadline = trio.current_time() + self._timeout_s
        item: _Queued[T] = _Queued(fn, conflict, single)
        self._queued.append(item)
        try:
            with item.waiting, trio.move_on_at(deadline):
                async with turn:
                    group, self._queued = self._queued, []
                    for queued in group:
                        queued.taken = True
                        if queued is not item:
                            queued.waiting.cancel()
                    # The others' answers depend on this group: it runs to the end
                    # (each transaction within its own deadline) even if we are
                    # cancelled, and we hear of that afterwards.
                    with trio.CancelScope(shield=True):
                        await self._commit_group(group)
        finally:
            if not item.taken:
                self._queued.remove(item)
        if not item.taken:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise BackendUnavailable(f"database did not answer within {self._timeout_s:g} s")
        if not item.done.is_set():
            # Taken by another writer: its group ends within its deadlines.
            with trio.CancelScope(shield=True):
                await item.done.wait()
        await trio.lowlevel.checkpoint_if_cancelled()
        assert item.result is not None
        return item.result.unwrap()

    async def _commit_group(self, group: list[_Queued[Any]]) -> None:
        """Run the group in one transaction; if it fails, each write on its own."""
        try:
            if len(group) == 1:
                only = group[0]
                only.result = await outcome.acapture(
                    self._run,
                    only.fn,
                    write=True,
                    conflict=only.conflict,
                    # A `write_one` alone on PostgreSQL: one statement, autocommit.
                    autocommit=self._autocommit and only.single,
                )
                return

            def run_all(conn: Connection) -> list[Any]:
                return [queued.fn(conn) for queued in group]

            try:
                values = await self._run(run_all, write=True, conflict=None)
            except BackendUnavailable as exc:
                # Not one write's fault (the database is slow or gone): every one fails.
                for queued in group:
                    queued.result = outcome.Error(exc)
                return
            except StorageError:
                # Rolled back: nothing of it was written. Each on its own, so only the
                # failing one hears of its failure.
                self.groups_rolled_back += 1
                for queued in group:
                    queued.result = await outcome.acapture(
                        self._run, queued.fn, write=True, conflict=queued.conflict
                    )
                return
            self.group_commits += 1
            for queued, value in zip(group, values, strict=True):
                queued.result = outcome.Value(value)
        finally:
            for queued in group:
                if queued.result is None:  # pragma: no cover - only on a bug above
                    queued.result = outcome.Error(StorageError("write not run"))
                queued.done.set()

    async def migrate(self, fn: Callable[[Connection], T]) -> T:
        """Run a schema migration `fn(connection)` in a write transaction: without the
        operation deadline and, on PostgreSQL, without the server-side limits (DDL on a
        big table may take long). Connecting is still bounded."""
        run = functools.partial(
            self._run, functools.partial(_unlimited, fn), write=True, conflict=None
        )
        if self._write_limiter is not None:
            async with self._write_limiter:
                return await run(timeout_s=math.inf)
        return await run(timeout_s=math.inf)

    async def _run(
        self,
        fn: Callable[[Connection], T],
        *,
        write: bool,
        conflict: str | None,
        autocommit: bool = False,
        timeout_s: float | None = None,
    ) -> T:
        timeout = self._timeout_s if timeout_s is None else timeout_s
        deadline = trio.current_time() + timeout
        op = _Operation(self._live.discard)
        self._live.add(op)
        work = functools.partial(self._transaction, op, fn, write, conflict, autocommit)
        with trio.CancelScope(deadline=deadline) as timer:
            try:
                # SQLite's writes come here holding its writer (`_grouped`).
                return await self._in_thread(work)
            except trio.Cancelled:
                if op.stop_unless_started() or timer.cancel_called:
                    raise
            # Cancelled from outside while the transaction runs: it commits or rolls
            # back as a whole before the caller hears of it, waiting no longer than the
            # deadline (past it, the thread is made to end as below).
            with trio.CancelScope(shield=True, deadline=deadline):
                await op.done.wait()
            if not op.done.is_set():
                op.stop()
        if timer.cancelled_caught:
            # At the deadline, the thread may still be waiting on the database.
            op.stop()
            # A caller cancelled meanwhile hears that rather than our error.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise BackendUnavailable(f"database did not answer within {timeout:g} s")
        await trio.lowlevel.checkpoint_if_cancelled()
        raise AssertionError("unreachable: the caller was cancelled")  # pragma: no cover

    async def _in_thread(self, work: Callable[[], T]) -> T:
        # abandon_on_cancel: the caller stops waiting at once (see `_run`); the thread
        # keeps its limiter token until it ends.
        return await trio.to_thread.run_sync(work, limiter=self._limiter, abandon_on_cancel=True)

    def _transaction(
        self,
        op: _Operation,
        fn: Callable[[Connection], T],
        write: bool,
        conflict: str | None,
        autocommit: bool,
    ) -> T:
        try:
            op.start()
            try:
                return self._attempt(op, fn, write, autocommit)
            except _DeadConnection:
                if op.stopped:
                    raise
                # The pooled connection had died (database restarted, connection killed)
                # before the transaction could commit, so nothing was written, and
                # SQLAlchemy has invalidated the pool: once more on a fresh connection.
                return self._attempt(op, fn, write, autocommit)
        except StorageError:
            raise
        except _Stopped:
            raise BackendUnavailable("database operation given up") from None
        except _DeadConnection as dead:
            cause = dead.__cause__ if dead.__cause__ is not None else dead
            raise map_error(cause, conflict) from cause
        except Exception as exc:
            raise map_error(exc, conflict) from exc
        finally:
            op.end()

    def _attempt(
        self, op: _Operation, fn: Callable[[Connection], T], write: bool, autocommit: bool
    ) -> T:
        with self.engine.connect() as conn:
            op.attach(conn.connection.dbapi_connection)
            try:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                if autocommit:
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
            finally:
                if op.detach() and self._discard_stopped and not conn.invalidated:
                    # Its socket was shut down: never back to the pool.
                    conn.invalidate()

    async def dispose(self) -> None:
        """Close every pooled connection; finishes even if the caller is cancelled.

        Threads of operations given up at their deadline are made to end first (and
        waited for, briefly), so no connection outlives the engine."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(_DISPOSE_WAIT_S):
                while self._live:
                    op = next(iter(self._live))
                    if not op.stop_unless_started():
                        op.stop()
                        await op.done.wait()
            await trio.to_thread.run_sync(self.engine.dispose)


def _unlimited(fn: Callable[[Connection], T], conn: Connection) -> T:
    if conn.dialect.name == "postgresql":
        # SET LOCAL: for this transaction only (the connection returns to the pool).
        for name in SESSION_LIMITS:
            conn.exec_driver_sql(f"SET LOCAL {name} = 0")
    return fn(conn)


@asynccontextmanager
async def open_database(
    url: str, pool_size: int | None = None, timeouts: StorageTimeouts | None = None
) -> AsyncIterator[Database]:
    """A `Database` for a storage URL (pool size: argument, else URL option, else default);
    its engine is disposed on exit. Opening does no I/O: connection errors surface on use.

    `timeouts=None`: no operation deadline and no server-side limits (for migrations);
    connecting is bounded by the default connect timeout.
    """
    sa_url, url_pool_size = parse_url(url)
    size = pool_size or url_pool_size or DEFAULT_POOL_SIZE[sa_url.get_backend_name()]
    try:
        engine = create_sync_engine(sa_url, size, timeouts)
    except Exception as exc:
        raise map_error(exc) from exc
    db = Database(engine, size, timeouts)
    try:
        yield db
    finally:
        await db.dispose()
