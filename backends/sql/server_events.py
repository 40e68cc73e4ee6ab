"""Server-generated events, at positions of the server-wide stream.

An add takes its position from the stream counter inside its transaction, as events
do: adds commit in position order, and a duplicate id (the unique constraint) rolls the
whole transaction back, counter included, so a refused add uses no position.

A read is one query: the OR of the three kinds of target (the user, every user, the
rooms), each served by a range of an index ending in stream_pos, ordered by position
with the limit in SQL. Very long room lists are split into several such queries in one
transaction (bound parameters are limited), merged here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from backends.records import NewServerEvent, ServerEvent, ServerEventTarget
from backends.sql.codec import dump_json, server_event_from_mapping
from backends.sql.common import MAX_POSITION, allocate_positions
from backends.sql.database import Database
from backends.sql.schema import server_events

# Bound parameters per IN (...) list: far below every dialect's limit.
_IN_CHUNK = 500


class SqlServerEventStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_server_event(self, event: NewServerEvent) -> ServerEvent:
        # Encoded before the transaction: a value that cannot be stored fails early.
        content = dump_json(event.content)

        def run(conn: Connection) -> ServerEvent:
            row = {
                "stream_pos": allocate_positions(conn, 1),
                "event_id": event.event_id,
                "sender": event.sender,
                "type": event.type,
                "content": content,
                "origin_server_ts": event.origin_server_ts,
                "target_kind": event.target_kind,
                "target": event.target,
            }
            conn.execute(server_events.insert().values(**row))
            # Decoded afresh from the stored form: never the caller's own dict.
            return server_event_from_mapping(row)

        return await self._db.write(run, conflict=f"server event {event.event_id} exists")

    async def get_server_events(
        self, user_id: str, room_ids: Sequence[str], *, after: int, upto: int, limit: int
    ) -> list[ServerEvent]:
        upto = min(upto, MAX_POSITION)
        if limit <= 0 or after >= upto:
            return []
        after = max(after, -1)
        limit = min(limit, MAX_POSITION)
        rooms = sorted(set(room_ids))
        chunks = [rooms[start : start + _IN_CHUNK] for start in range(0, len(rooms), _IN_CHUNK)]
        c = server_events.c
        user_targets: list[ColumnElement[bool]] = [
            and_(c.target_kind == ServerEventTarget.USER, c.target == user_id),
            c.target_kind == ServerEventTarget.ALL_USERS,
        ]

        def targets(index: int) -> ColumnElement[bool]:
            conditions = list(user_targets) if index == 0 else []
            if index < len(chunks):
                conditions.append(
                    and_(c.target_kind == ServerEventTarget.ROOM, c.target.in_(chunks[index]))
                )
            return or_(*conditions)

        def run(conn: Connection) -> list[ServerEvent]:
            found: list[ServerEvent] = []
            for index in range(max(1, len(chunks))):
                rows = conn.execute(
                    select(server_events)
                    .where(targets(index), c.stream_pos > after, c.stream_pos <= upto)
                    .order_by(c.stream_pos)
                    .limit(limit)
                )
                found.extend(server_event_from_mapping(row._mapping) for row in rows)
            if len(chunks) > 1:
                found.sort(key=lambda e: e.stream_pos)
            return found[:limit]

        if len(chunks) <= 1:
            return await self._db.read_one(run)
        return await self._db.read(run)
