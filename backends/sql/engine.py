"""Building the SQLAlchemy Core engine for a storage URL: the psycopg 3 or sqlite3
driver, a fixed-size pool without overflow, and per-dialect connection settings
(PostgreSQL: connect timeout, TCP keepalives, TCP user timeout and server-side limits;
SQLite: WAL, busy timeout, foreign keys, and `BEGIN IMMEDIATE` for writes). See
`backends.sql.database` for why each is there."""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from backends.errors import StorageError
from backends.timeouts import StorageTimeouts

SQLITE_BUSY_TIMEOUT_MS = 10_000
_WAL_RETRY_S = 0.005
# Execution option marking a connection whose transaction writes (SQLite only).
WRITE_OPTION = "homeserver_write"
# TCP keepalives on PostgreSQL connections: an idle pooled connection across a
# partition is found dead before it is handed out (with the TCP user timeout, Linux
# drops it when a probe goes unanswered that long).
_KEEPALIVE_IDLE_S = 30
_KEEPALIVE_INTERVAL_S = 10
_KEEPALIVE_COUNT = 3
# Server-side limits on PostgreSQL sessions, set to the operation timeout.
SESSION_LIMITS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


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


def is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def create_sync_engine(url: URL, pool_size: int, timeouts: StorageTimeouts | None = None) -> Engine:
    """A Core engine with a fixed-size pool (no overflow), set up for its dialect.

    With `timeouts`, PostgreSQL sessions get server-side limits of `operation_ms`;
    without, none (migrations). Connecting is bounded either way.
    """
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, pool_size)
    connect_timeouts = timeouts or StorageTimeouts()
    # Parameters given in the URL's query win (SQLAlchemy lets connect_args win).
    defaults: dict[str, Any] = {
        # libpq counts whole seconds, at least 2.
        "connect_timeout": max(2, math.ceil(connect_timeouts.connect_s)),
        "keepalives": 1,
        "keepalives_idle": _KEEPALIVE_IDLE_S,
        "keepalives_interval": _KEEPALIVE_INTERVAL_S,
        "keepalives_count": _KEEPALIVE_COUNT,
        # Linux only (libpq ignores it elsewhere): unacknowledged data breaks the
        # connection after this long. No effect on a peer that ACKs and stays silent.
        "tcp_user_timeout": connect_timeouts.operation_ms,
    }
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        # Never reached in practice: a thread runs only with a limiter token, and the
        # limiter is no larger than the pool.
        pool_timeout=connect_timeouts.operation_s,
        # No pre-ping (a round trip per checkout, ~25% of read throughput): a dead
        # connection invalidates the whole pool on first use instead, and the
        # transaction is retried once (see Database._transaction).
        connect_args={k: v for k, v in defaults.items() if k not in url.query},
    )
    if timeouts is not None:
        limit = str(timeouts.operation_ms)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            # Session settings rather than startup `options` (which PgBouncer refuses).
            # A session we gave up on mid-transaction (its client gone silent) holds
            # its locks no longer than the idle-in-transaction timeout.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(
                    "SELECT "
                    + ", ".join(f"set_config('{name}', %s, false)" for name in SESSION_LIMITS),
                    [limit] * len(SESSION_LIMITS),
                )
            finally:
                cursor.close()
            dbapi_connection.commit()

    return engine


def _create_sqlite_engine(url: URL, pool_size: int) -> Engine:
    connect_args: dict[str, Any] = {
        # Pooled connections move between worker threads, one thread at a time.
        "check_same_thread": False,
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
    }
    if is_sqlite_memory(url):
        # One shared connection: every thread must see the same in-memory database.
        engine = create_engine(url, poolclass=StaticPool, connect_args=connect_args)
    else:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
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
        if conn.get_execution_options().get(WRITE_OPTION):
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
