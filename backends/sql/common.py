"""Statement helpers shared by the SQL stores."""

from __future__ import annotations

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from backends.sql.schema import stream_counter, txns

UpsertInsert = postgresql.Insert | sqlite.Insert

# Stream positions are signed 64-bit integers on every dialect.
MAX_POSITION = 2**63 - 1


def insert_for(conn: Connection, table: Table) -> UpsertInsert:
    """An INSERT of the connection's dialect, which knows ON CONFLICT."""
    return upsert_for(conn.dialect.name, table)


def upsert_for(dialect: str, table: Table) -> UpsertInsert:
    """An INSERT of the named dialect, which knows ON CONFLICT (for statements built
    once per dialect)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# The event a client transaction recorded (bound: b_user_id, b_device_id, b_txn_key).
TXN_EVENT = select(txns.c.event_id).where(
    txns.c.user_id == bindparam("b_user_id"),
    txns.c.device_id == bindparam("b_device_id"),
    txns.c.txn_key == bindparam("b_txn_key"),
)

_ALLOCATE = (
    update(stream_counter)
    .where(stream_counter.c.id == 1)
    .values(pos=stream_counter.c.pos + bindparam("b_count"))
    .returning(stream_counter.c.pos)
)


def allocate_positions(conn: Connection, count: int) -> int:
    """Hand out `count` consecutive stream positions; returns the first.

    Runs inside the writer's transaction: the counter row stays locked until commit
    (PostgreSQL row lock, SQLite's single writer), so transactions commit in position
    order and a reader never sees a position while a lower one is still to come.
    """
    new_pos = conn.execute(_ALLOCATE, {"b_count": count}).scalar_one()
    return int(new_pos) - count + 1
