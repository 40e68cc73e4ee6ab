"""Typing entries (room, user) -> (session, deadline), and each room's last change.

A change of a room's set of typing users takes a position from the stream counter in
the writing transaction, as events do, and only after the entry itself is written:
the counter's lock then orders the change after every earlier one, so the users it
reports (read after taking the position) are the room's set at that position.

Concurrency on PostgreSQL:
- set_typing inserts with ON CONFLICT DO NOTHING: only the inserting transaction
  makes the user appear (and takes a position); otherwise the existing row is updated
  in place (a refresh or a move to another session: no change). If the row vanished
  in between (cleared concurrently), it tries again.
- Removals are DELETE ... RETURNING: an entry is removed, and reported, once.
  Expiry locks the due entries with FOR UPDATE SKIP LOCKED, so concurrent takers
  take disjoint entries, earliest deadline first through the expires_at_ms index.
- Lock order is always typing rows, then the counter, then typing_rooms rows; no
  transaction holding the counter waits for a typing row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, delete, func, select, tuple_, update

from backends.errors import StorageError
from backends.records import TypingChange
from backends.sql.common import MAX_POSITION, allocate_positions, insert_for
from backends.sql.database import Database
from backends.sql.schema import typing, typing_rooms

# Bound parameters per IN (...) list: far below every dialect's limit.
_IN_CHUNK = 500
# set_typing retries when its entry is deleted between its insert and its update.
_SET_ATTEMPTS = 5


def _record_changes(conn: Connection, room_ids: Iterable[str]) -> list[TypingChange]:
    """Give each room (sorted) the next stream position and report its typing users."""
    rooms = sorted(set(room_ids))
    if not rooms:
        return []
    first_pos = allocate_positions(conn, len(rooms))
    positions = {room_id: first_pos + offset for offset, room_id in enumerate(rooms)}
    upsert = insert_for(conn, typing_rooms).values(
        [{"room_id": room_id, "stream_pos": pos} for room_id, pos in positions.items()]
    )
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[typing_rooms.c.room_id],
            set_={"stream_pos": upsert.excluded.stream_pos},
        )
    )
    users: dict[str, list[str]] = {room_id: [] for room_id in rooms}
    for start in range(0, len(rooms), _IN_CHUNK):
        rows = conn.execute(
            select(typing.c.room_id, typing.c.user_id)
            .where(typing.c.room_id.in_(rooms[start : start + _IN_CHUNK]))
            .order_by(typing.c.room_id, typing.c.user_id)
        )
        for room_id, user_id in rows:
            users[room_id].append(user_id)
    return [
        TypingChange(room_id=room_id, user_ids=tuple(users[room_id]), stream_pos=positions[room_id])
        for room_id in rooms
    ]


class SqlTypingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_typing(
        self, room_id: str, user_id: str, session_id: str, expires_at_ms: int
    ) -> TypingChange | None:
        def run(conn: Connection) -> TypingChange | None:
            for _ in range(_SET_ATTEMPTS):
                inserted = conn.execute(
                    insert_for(conn, typing)
                    .values(
                        room_id=room_id,
                        user_id=user_id,
                        session_id=session_id,
                        expires_at_ms=expires_at_ms,
                    )
                    .on_conflict_do_nothing(index_elements=[typing.c.room_id, typing.c.user_id])
                    .returning(typing.c.room_id)
                ).first()
                if inserted is not None:
                    [change] = _record_changes(conn, [room_id])
                    return change
                refreshed = conn.execute(
                    update(typing)
                    .where(typing.c.room_id == room_id, typing.c.user_id == user_id)
                    .values(session_id=session_id, expires_at_ms=expires_at_ms)
                )
                if refreshed.rowcount > 0:
                    return None
            raise StorageError("typing entry keeps changing concurrently")

        return await self._db.write(run)

    async def clear_typing(self, room_id: str, user_id: str) -> TypingChange | None:
        def run(conn: Connection) -> TypingChange | None:
            removed = conn.execute(
                delete(typing)
                .where(typing.c.room_id == room_id, typing.c.user_id == user_id)
                .returning(typing.c.room_id)
            ).first()
            if removed is None:
                return None
            [change] = _record_changes(conn, [room_id])
            return change

        return await self._db.write(run)

    async def clear_session_typing(self, session_id: str) -> list[TypingChange]:
        def run(conn: Connection) -> list[TypingChange]:
            rooms = conn.execute(
                delete(typing).where(typing.c.session_id == session_id).returning(typing.c.room_id)
            ).scalars()
            return _record_changes(conn, rooms)

        return await self._db.write(run)

    async def get_typing(self, room_ids: Sequence[str]) -> dict[str, TypingChange]:
        rooms = sorted(set(room_ids))
        if not rooms:
            return {}

        def run(conn: Connection) -> dict[str, TypingChange]:
            found: dict[str, tuple[int, list[str]]] = {}
            for start in range(0, len(rooms), _IN_CHUNK):
                # One statement per chunk: each room's users and position from one
                # snapshot.
                rows = conn.execute(
                    select(typing_rooms.c.room_id, typing_rooms.c.stream_pos, typing.c.user_id)
                    .select_from(
                        typing_rooms.outerjoin(typing, typing.c.room_id == typing_rooms.c.room_id)
                    )
                    .where(typing_rooms.c.room_id.in_(rooms[start : start + _IN_CHUNK]))
                    .order_by(typing_rooms.c.room_id, typing.c.user_id)
                )
                for room_id, stream_pos, user_id in rows:
                    _, users = found.setdefault(room_id, (stream_pos, []))
                    if user_id is not None:
                        users.append(user_id)
            return {
                room_id: TypingChange(room_id=room_id, user_ids=tuple(users), stream_pos=pos)
                for room_id, (pos, users) in found.items()
            }

        if len(rooms) <= _IN_CHUNK:
            return await self._db.read_one(run)
        return await self._db.read(run)

    async def take_expired_typing(self, now_ms: int, limit: int) -> list[TypingChange]:
        if limit <= 0:
            return []
        now_ms = min(now_ms, MAX_POSITION)

        def run(conn: Connection) -> list[TypingChange]:
            due = (
                select(typing.c.room_id, typing.c.user_id)
                .where(typing.c.expires_at_ms <= now_ms)
                .order_by(typing.c.expires_at_ms)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rooms = conn.execute(
                delete(typing)
                .where(tuple_(typing.c.room_id, typing.c.user_id).in_(due))
                .returning(typing.c.room_id)
            ).scalars()
            return _record_changes(conn, rooms)

        return await self._db.write(run)

    async def next_typing_deadline(self) -> int | None:
        def run(conn: Connection) -> int | None:
            deadline = conn.execute(select(func.min(typing.c.expires_at_ms))).scalar_one()
            return None if deadline is None else int(deadline)

        return await self._db.read_one(run)
