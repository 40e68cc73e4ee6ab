"""Rooms, events, current state and memberships."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Text, bindparam, literal_column, select, update
from sqlalchemy.sql.expression import ColumnClause

from backends.errors import Conflict, DuplicateTransaction, NotFound
from backends.records import ClientTxn, Event, MembershipRecord, NewEvent, RoomRecord
from backends.sql.codec import (
    dump_json,
    event_from_mapping,
    event_from_row,
    membership_from_row,
    room_from_row,
)
from backends.sql.common import (
    MAX_POSITION,
    TXN_EVENT,
    allocate_positions,
    upsert_for,
)
from backends.sql.database import Database
from backends.sql.schema import events as event_table
from backends.sql.schema import memberships, room_state, rooms, stream_counter, txns

# Bound parameters per IN (...) list: far below every dialect's limit.
_IN_CHUNK = 500


# A literal, not a bound parameter: only then can SQLite's planner (and PostgreSQL's
# generic plans) match the partial indexes on `membership = 'join'`.
_JOIN: ColumnClause[str] = literal_column("'join'", Text)


# The statements of every append, built once (see `sessions.py` for why).
_ROOMS_IN = select(rooms.c.room_id).where(rooms.c.room_id.in_(bindparam("b_ids", expanding=True)))
_EVENTS_IN = select(event_table.c.event_id).where(
    event_table.c.event_id.in_(bindparam("b_ids", expanding=True))
)
_CHECK_ONE = select(
    select(rooms.c.room_id)
    .where(rooms.c.room_id == bindparam("b_room_id"))
    .scalar_subquery()
    .label("room_known"),
    select(event_table.c.event_id)
    .where(event_table.c.event_id == bindparam("b_event_id"))
    .scalar_subquery()
    .label("event_known"),
)
_INSERT_EVENTS = event_table.insert()


def _append_one_statement() -> Any:
    """PostgreSQL: a message's position, its row and its room's newest position in ONE
    statement (data-modifying CTEs: the counter's row is locked first, then the room's,
    in the order the separate statements take them), one round trip instead of three."""
    counter = (
        update(stream_counter)
        .where(stream_counter.c.id == 1)
        .values(pos=stream_counter.c.pos + 1)
        .returning(stream_counter.c.pos)
        .cte("counter")
    )
    others = [column for column in event_table.c if column.name != "stream_pos"]
    inserted = (
        event_table.insert()
        .from_select(
            ["stream_pos", *(column.name for column in others)],
            select(
                counter.c.pos,
                *(bindparam(f"b_{column.name}", type_=column.type) for column in others),
            ),
        )
        .returning(event_table.c.stream_pos)
        .cte("inserted")
    )
    return (
        update(rooms)
        .where(rooms.c.room_id == bindparam("b_room_id"))
        .values(latest_pos=select(inserted.c.stream_pos).scalar_subquery())
        .returning(rooms.c.latest_pos)
    )


_APPEND_ONE_PG = _append_one_statement()
_SET_LATEST = (
    update(rooms)
    .where(rooms.c.room_id == bindparam("b_room_id"))
    .values(latest_pos=bindparam("b_pos"))
)
_STATE_CONTENT = (
    select(event_table.c.content)
    .join(room_state, room_state.c.stream_pos == event_table.c.stream_pos)
    .where(
        room_state.c.room_id == bindparam("b_room_id"),
        room_state.c.type == bindparam("b_type"),
        room_state.c.state_key == bindparam("b_state_key"),
    )
)


@functools.cache
def _record_txn_statement(dialect: str) -> Any:
    insert = upsert_for(dialect, txns)
    return (
        insert.values(
            user_id=bindparam("b_user_id"),
            device_id=bindparam("b_device_id"),
            txn_key=bindparam("b_txn_key"),
            event_id=bindparam("b_event_id"),
        )
        .on_conflict_do_nothing(index_elements=[txns.c.user_id, txns.c.device_id, txns.c.txn_key])
        # RETURNING, not rowcount: drivers need not report rowcount for an INSERT.
        .returning(txns.c.event_id)
    )


@functools.cache
def _set_state_statement(dialect: str) -> Any:
    insert = upsert_for(dialect, room_state)
    return insert.on_conflict_do_update(
        index_elements=[room_state.c.room_id, room_state.c.type, room_state.c.state_key],
        set_={"stream_pos": insert.excluded.stream_pos},
    )


@functools.cache
def _set_membership_statement(dialect: str) -> Any:
    insert = upsert_for(dialect, memberships)
    return insert.on_conflict_do_update(
        index_elements=[memberships.c.room_id, memberships.c.user_id],
        set_={
            "membership": insert.excluded.membership,
            "event_id": insert.excluded.event_id,
            "stream_pos": insert.excluded.stream_pos,
            "forgotten": False,
        },
    )


class SqlRoomStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_room(self, room: RoomRecord) -> None:
        def run(conn: Connection) -> None:
            conn.execute(
                rooms.insert().values(
                    room_id=room.room_id,
                    creator=room.creator,
                    room_version=room.room_version,
                    created_ts=room.created_ts,
                    latest_pos=None,
                )
            )

        await self._db.write(run, conflict=f"room {room.room_id} exists")

    async def get_room(self, room_id: str) -> RoomRecord | None:
        def run(conn: Connection) -> RoomRecord | None:
            row = conn.execute(select(rooms).where(rooms.c.room_id == room_id)).first()
            return None if row is None else room_from_row(row)

        return await self._db.read(run)

    async def append_events(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        batch = list(events)
        if not batch:
            if txn is not None:
                raise ValueError("a client transaction needs an event to record")
            return []
        # Encode before entering the transaction: short transactions, and a value that
        # cannot be stored fails before anything is written.
        encoded = [(dump_json(new.content), dump_json(new.unsigned)) for new in batch]

        one_message = len(batch) == 1 and batch[0].state_key is None

        def run(conn: Connection) -> list[Event]:
            if txn is not None:
                _record_txn(conn, txn, batch[0].event_id)
            _check_new_events(conn, batch)
            if one_message and conn.dialect.name == "postgresql":
                return [_append_one_message(conn, batch[0], *encoded[0])]
            first_pos = allocate_positions(conn, len(batch))
            # Read current state only now: the counter lock orders us after every
            # earlier writer, so the state we replace is the latest committed one.
            replaced: dict[tuple[str, str, str], str] = {}
            rows: list[dict[str, Any]] = []
            stored: list[Event] = []
            for offset, (new, (content, unsigned)) in enumerate(zip(batch, encoded, strict=True)):
                pos = first_pos + offset
                prev_content: str | None = None
                if new.state_key is not None:
                    key = (new.room_id, new.type, new.state_key)
                    prev_content = replaced[key] if key in replaced else _state_content(conn, key)
                    replaced[key] = content
                row = _event_row(new, pos, content, unsigned, prev_content)
                rows.append(row)
                # Decoded afresh from the stored form: never the caller's own dicts.
                stored.append(event_from_mapping(row))
            conn.execute(_INSERT_EVENTS, rows)
            _apply_state(conn, stored)
            return stored

        # Every append takes the stream counter's lock: they run one after the other.
        return await self._db.write(run, conflict="event exists", serialized=True)

    async def get_event(self, event_id: str) -> Event | None:
        def run(conn: Connection) -> Event | None:
            row = conn.execute(
                select(event_table).where(event_table.c.event_id == event_id)
            ).first()
            return None if row is None else event_from_row(row)

        return await self._db.read(run)

    async def get_current_state(self, room_id: str) -> list[Event]:
        def run(conn: Connection) -> list[Event]:
            rows = conn.execute(
                select(event_table)
                .join(room_state, room_state.c.stream_pos == event_table.c.stream_pos)
                .where(room_state.c.room_id == room_id)
                .order_by(event_table.c.stream_pos)
            )
            return [event_from_row(row) for row in rows]

        return await self._db.read(run)

    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        def run(conn: Connection) -> Event | None:
            row = conn.execute(
                select(event_table)
                .join(room_state, room_state.c.stream_pos == event_table.c.stream_pos)
                .where(
                    room_state.c.room_id == room_id,
                    room_state.c.type == type,
                    room_state.c.state_key == state_key,
                )
            ).first()
            return None if row is None else event_from_row(row)

        return await self._db.read(run)

    async def get_room_events(
        self,
        room_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[Event]:
        if limit <= 0:
            return []
        # Positions are 64-bit in the database; wider bounds select all or nothing.
        if after is not None and after >= MAX_POSITION:
            return []
        if before is not None and before <= 0:
            return []
        if after is not None and after < 0:
            after = None
        if before is not None and before > MAX_POSITION:
            before = None
        limit = min(limit, MAX_POSITION)

        def run(conn: Connection) -> list[Event]:
            query = select(event_table).where(event_table.c.room_id == room_id)
            if after is not None:
                query = query.where(event_table.c.stream_pos > after)
            if before is not None:
                query = query.where(event_table.c.stream_pos < before)
            order = (
                event_table.c.stream_pos.desc() if newest_first else event_table.c.stream_pos.asc()
            )
            rows = conn.execute(query.order_by(order).limit(limit))
            return [event_from_row(row) for row in rows]

        return await self._db.read(run)

    async def get_latest_positions(self, room_ids: Sequence[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(room_ids))
        if not wanted:
            return {}

        def run(conn: Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = conn.execute(
                    select(rooms.c.room_id, rooms.c.latest_pos).where(
                        rooms.c.room_id.in_(chunk), rooms.c.latest_pos.is_not(None)
                    )
                )
                out.update({row.room_id: int(row.latest_pos) for row in rows})
            return out

        return await self._db.read(run)

    async def get_membership(self, room_id: str, user_id: str) -> MembershipRecord | None:
        def run(conn: Connection) -> MembershipRecord | None:
            row = conn.execute(
                select(memberships).where(
                    memberships.c.room_id == room_id, memberships.c.user_id == user_id
                )
            ).first()
            return None if row is None else membership_from_row(row)

        return await self._db.read(run)

    async def get_user_memberships(self, user_id: str) -> list[MembershipRecord]:
        def run(conn: Connection) -> list[MembershipRecord]:
            rows = conn.execute(
                select(memberships)
                .where(memberships.c.user_id == user_id)
                .order_by(memberships.c.room_id)
            )
            return [membership_from_row(row) for row in rows]

        return await self._db.read(run)

    async def get_room_members(self, room_id: str) -> list[MembershipRecord]:
        def run(conn: Connection) -> list[MembershipRecord]:
            rows = conn.execute(
                select(memberships)
                .where(memberships.c.room_id == room_id)
                .order_by(memberships.c.user_id)
            )
            return [membership_from_row(row) for row in rows]

        return await self._db.read(run)

    async def get_joined_members(self, room_id: str) -> list[str]:
        def run(conn: Connection) -> list[str]:
            rows = conn.execute(
                select(memberships.c.user_id)
                .where(memberships.c.room_id == room_id, memberships.c.membership == _JOIN)
                .order_by(memberships.c.user_id)
            )
            return list(rows.scalars())

        return await self._db.read(run)

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        def run(conn: Connection) -> list[str]:
            rows = conn.execute(
                select(memberships.c.room_id)
                .where(memberships.c.user_id == user_id, memberships.c.membership == _JOIN)
                .order_by(memberships.c.room_id)
            )
            return list(rows.scalars())

        return await self._db.read(run)

    async def forget_room(self, user_id: str, room_id: str) -> None:
        def run(conn: Connection) -> None:
            result = conn.execute(
                update(memberships)
                .where(memberships.c.room_id == room_id, memberships.c.user_id == user_id)
                .values(forgotten=True)
            )
            if result.rowcount == 0:
                raise NotFound(f"no membership of {user_id} in {room_id}")

        await self._db.write(run)

    async def current_stream_pos(self) -> int:
        def run(conn: Connection) -> int:
            pos = conn.execute(
                select(stream_counter.c.pos).where(stream_counter.c.id == 1)
            ).scalar_one()
            return int(pos)

        return await self._db.read(run)


def _record_txn(conn: Connection, txn: ClientTxn, event_id: str) -> None:
    """Record the transaction for `event_id`, in the caller's transaction; raise
    DuplicateTransaction (rolling it back) if it is recorded already.

    ON CONFLICT DO NOTHING rather than a read first: on PostgreSQL a concurrent
    writer's uncommitted record of the same transaction makes this insert wait for that
    writer's outcome, so of two concurrent attempts exactly one goes on.
    """
    key = {"b_user_id": txn.user_id, "b_device_id": txn.device_id, "b_txn_key": txn.txn_key}
    inserted = conn.execute(
        _record_txn_statement(conn.dialect.name), {**key, "b_event_id": event_id}
    ).first()
    if inserted is None:
        recorded = conn.execute(TXN_EVENT, key).scalar_one()
        raise DuplicateTransaction(recorded)


def _event_row(
    new: NewEvent, pos: int, content: str, unsigned: str, prev_content: str | None = None
) -> dict[str, Any]:
    """The stored row of a new event (content and unsigned already encoded)."""
    return {
        "stream_pos": pos,
        "event_id": new.event_id,
        "room_id": new.room_id,
        "sender": new.sender,
        "type": new.type,
        "state_key": new.state_key,
        "content": content,
        "origin_server_ts": new.origin_server_ts,
        "txn_id": new.txn_id,
        "device_id": new.device_id,
        "unsigned": unsigned,
        "redacts": new.redacts,
        "prev_content": prev_content,
    }


def _append_one_message(conn: Connection, new: NewEvent, content: str, unsigned: str) -> Event:
    """A message (no state) on PostgreSQL, checked already: one statement."""
    row = _event_row(new, 0, content, unsigned)
    params = {f"b_{name}": value for name, value in row.items() if name != "stream_pos"}
    pos = conn.execute(_APPEND_ONE_PG, params).scalar_one()
    row["stream_pos"] = int(pos)
    return event_from_mapping(row)


def _check_new_events(conn: Connection, batch: list[NewEvent]) -> None:
    """Raise NotFound for an unknown room or Conflict for a known (or repeated) event
    id, in the order of the batch, before anything is written."""
    if len(batch) == 1:
        # Every send: both questions in one statement (one round trip on PostgreSQL).
        (new,) = batch
        room_known, event_known = conn.execute(
            _CHECK_ONE, {"b_room_id": new.room_id, "b_event_id": new.event_id}
        ).one()
        if room_known is None:
            raise NotFound(f"room {new.room_id}")
        if event_known is not None:
            raise Conflict(f"event {new.event_id} exists")
        return
    room_ids = list(dict.fromkeys(new.room_id for new in batch))
    known_rooms: set[str] = set()
    for start in range(0, len(room_ids), _IN_CHUNK):
        chunk = room_ids[start : start + _IN_CHUNK]
        known_rooms.update(conn.execute(_ROOMS_IN, {"b_ids": chunk}).scalars())
    event_ids = [new.event_id for new in batch]
    existing: set[str] = set()
    for start in range(0, len(event_ids), _IN_CHUNK):
        chunk = event_ids[start : start + _IN_CHUNK]
        existing.update(conn.execute(_EVENTS_IN, {"b_ids": chunk}).scalars())
    seen: set[str] = set()
    for new in batch:
        if new.room_id not in known_rooms:
            raise NotFound(f"room {new.room_id}")
        if new.event_id in existing or new.event_id in seen:
            raise Conflict(f"event {new.event_id} exists")
        seen.add(new.event_id)


def _state_content(conn: Connection, key: tuple[str, str, str]) -> str | None:
    """The stored content of the current state event for (room, type, state_key)."""
    room_id, type_, state_key = key
    content: str | None = conn.execute(
        _STATE_CONTENT, {"b_room_id": room_id, "b_type": type_, "b_state_key": state_key}
    ).scalar_one_or_none()
    return content


def _apply_state(conn: Connection, stored: list[Event]) -> None:
    """Current state, memberships and each room's latest position for the new events."""
    latest: dict[str, int] = {}
    for event in stored:
        latest[event.room_id] = event.stream_pos
        if event.state_key is None:
            continue
        conn.execute(
            _set_state_statement(conn.dialect.name),
            {
                "room_id": event.room_id,
                "type": event.type,
                "state_key": event.state_key,
                "stream_pos": event.stream_pos,
            },
        )
        if event.type == "m.room.member":
            conn.execute(
                _set_membership_statement(conn.dialect.name),
                {
                    "room_id": event.room_id,
                    "user_id": event.state_key,
                    "membership": str(event.content.get("membership", "")),
                    "event_id": event.event_id,
                    "stream_pos": event.stream_pos,
                    "forgotten": False,
                },
            )
    for room_id, pos in latest.items():
        conn.execute(_SET_LATEST, {"b_room_id": room_id, "b_pos": pos})
