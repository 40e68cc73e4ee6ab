"""Statement helpers shared by the SQL stores."""

from __future__ import annotations

from sqlalchemy import Connection, Table, update
from sqlalchemy.dialects import postgresql, sqlite

from backends.sql.schema import stream_counter

UpsertInsert = postgresql.Insert | sqlite.Insert

# Stream positions are signed 64-bit integers on every dialect.
MAX_POSITION = 2**63 - 1


def insert_for(conn: Connection, table: Table) -> UpsertInsert:
    """An INSERT of the connection's dialect, which knows ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def allocate_positions(conn: Connection, count: int) -> int:
    """Hand out `count` consecutive stream positions; returns the first.

    Runs inside the writer's transaction: the counter row stays locked until commit
    (PostgreSQL row lock, SQLite's single writer), so transactions commit in position
    order and a reader never sees a position while a lower one is still to come.
    """
    new_pos = conn.execute(
        update(stream_counter)
        .where(stream_counter.c.id == 1)
        .values(pos=stream_counter.c.pos + count)
        .returning(stream_counter.c.pos)
    ).scalar_one()
    return int(new_pos) - count + 1
