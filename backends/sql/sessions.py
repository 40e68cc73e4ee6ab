"""Sessions and each device's active session.

How the invariants hold on PostgreSQL (READ COMMITTED, concurrent writers) and SQLite
(one writer at a time, so trivially):
- One active session per device: `active_sessions` has the device as primary key. A
  start inserts its session, then upserts the pointer with a no-op DO UPDATE that
  returns the pointer's session id and leaves the pointer row locked until commit, so
  starts for one device run one after the other from that point on and each sees the
  last committed pointer.
- Exactly-once removal: every removal is a DELETE ... RETURNING, and a row is deleted
  (and returned) by one transaction only; the others wait for its lock, then find it
  gone. Deleting a session deletes the pointer to it (ON DELETE CASCADE).
- Expiry takes the earliest deadlines through the (expires_at_ms, session_id) index,
  locking them with FOR UPDATE SKIP LOCKED: concurrent reapers take disjoint rows
  without waiting for each other, and a row touched meanwhile is re-checked against
  its new deadline.
Deadlock freedom: a start holds its pointer row and then waits on nothing but its
own new session row; removals lock session rows first, then (by cascade) pointers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, select, update

from backends.protocols import AuthLookup, SessionStart
from backends.records import SessionRecord
from backends.sql.codec import session_from_mapping, session_from_row, token_from_row
from backends.sql.common import MAX_POSITION, insert_for
from backends.sql.database import Database
from backends.sql.schema import access_tokens, active_sessions, sessions

# The session's columns in the authenticate join, named apart from the token's.
_PREFIX = "session_"
_SESSION_COLUMNS = [column.label(_PREFIX + column.name) for column in sessions.c]


# The hot statements, built once: SQLAlchemy builds and keys a statement on every
# call otherwise, which cost three times what executing it costs (SQLite, 2026-12-08:
# 211 us against 57 us for this UPDATE ... RETURNING).
_AUTH_ACTIVE = (
    select(access_tokens, *_SESSION_COLUMNS)
    .select_from(
        access_tokens.outerjoin(
            active_sessions,
            (active_sessions.c.user_id == access_tokens.c.user_id)
            & (active_sessions.c.device_id == access_tokens.c.device_id),
        ).outerjoin(sessions, sessions.c.session_id == active_sessions.c.session_id)
    )
    .where(access_tokens.c.token == bindparam("b_token"))
)
_AUTH_NAMED = (
    select(access_tokens, *_SESSION_COLUMNS)
    .select_from(
        access_tokens.outerjoin(sessions, sessions.c.session_id == bindparam("b_session_id"))
    )
    .where(access_tokens.c.token == bindparam("b_token"))
)
_GET = select(sessions).where(sessions.c.session_id == bindparam("b_session_id"))
_TOUCH = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("b_session_id"))
    .values(
        last_active_ts=bindparam("b_last_active_ts"), expires_at_ms=bindparam("b_expires_at_ms")
    )
)
_SET_PRESENCE = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("b_session_id"))
    .values(presence=bindparam("b_presence"), status_msg=bindparam("b_status_msg"))
    .returning(*sessions.c)
)
_END = (
    delete(sessions)
    .where(sessions.c.session_id == bindparam("b_session_id"))
    .returning(*sessions.c)
)
_LIST_USER = (
    select(sessions)
    .where(sessions.c.user_id == bindparam("b_user_id"))
    .order_by(sessions.c.created_ts, sessions.c.session_id)
)
_INSERT = sessions.insert()


def _auth_lookup(row: Row[Any] | None) -> AuthLookup | None:
    if row is None:
        return None
    mapping = row._mapping
    session = None
    if mapping[_PREFIX + "session_id"] is not None:
        session = session_from_mapping(mapping, _PREFIX)
    return AuthLookup(token=token_from_row(row), session=session)


def _sorted(rows: Iterable[Row[Any]]) -> list[SessionRecord]:
    records = [session_from_row(row) for row in rows]
    return sorted(records, key=lambda s: (s.expires_at_ms, s.session_id))


class SqlSessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def authenticate(self, token: str, session_id: str | None) -> AuthLookup | None:
        # One statement, so one round trip (autocommit on PostgreSQL): the token, and
        # the named session or the device's active one, left-joined.
        if session_id is None:
            query, params = _AUTH_ACTIVE, {"b_token": token}
        else:
            query, params = _AUTH_NAMED, {"b_token": token, "b_session_id": session_id}

        def run(conn: Connection) -> AuthLookup | None:
            return _auth_lookup(conn.execute(query, params).first())

        return await self._db.read_one(run)

    async def start_session(self, session: SessionRecord, *, replace: bool) -> SessionStart:
        values = _values(session)

        def run(conn: Connection) -> SessionStart:
            conn.execute(_INSERT, values)
            upsert = insert_for(conn, active_sessions).values(
                user_id=session.user_id,
                device_id=session.device_id,
                session_id=session.session_id,
            )
            # A no-op update on conflict: it returns the current pointer and locks it.
            current_id = conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[active_sessions.c.user_id, active_sessions.c.device_id],
                    set_={"session_id": active_sessions.c.session_id},
                ).returning(active_sessions.c.session_id)
            ).scalar_one()
            if current_id == session.session_id:
                return SessionStart(session=session, replaced=None)
            row = conn.execute(_GET, {"b_session_id": current_id}).first()
            # The pointer is locked and references its session (foreign key), so the row
            # exists; were it ever missing, the device simply has no active session.
            current = None if row is None else session_from_row(row)
            if current is not None and not replace:
                conn.execute(_END, {"b_session_id": session.session_id})
                return SessionStart(session=current, replaced=None)
            conn.execute(
                update(active_sessions)
                .where(
                    active_sessions.c.user_id == session.user_id,
                    active_sessions.c.device_id == session.device_id,
                )
                .values(session_id=session.session_id)
            )
            return SessionStart(session=session, replaced=current)

        return await self._db.write(run, conflict=f"session {session.session_id} exists")

    async def get_session(self, session_id: str) -> SessionRecord | None:
        def run(conn: Connection) -> SessionRecord | None:
            row = conn.execute(_GET, {"b_session_id": session_id}).first()
            return None if row is None else session_from_row(row)

        return await self._db.read_one(run)

    async def touch_session(self, session_id: str, last_active_ts: int, expires_at_ms: int) -> bool:
        def run(conn: Connection) -> bool:
            result = conn.execute(
                _TOUCH,
                {
                    "b_session_id": session_id,
                    "b_last_active_ts": last_active_ts,
                    "b_expires_at_ms": expires_at_ms,
                },
            )
            return result.rowcount > 0

        return await self._db.write_one(run)

    async def set_session_presence(
        self, session_id: str, presence: str, status_msg: str | None
    ) -> SessionRecord | None:
        def run(conn: Connection) -> SessionRecord | None:
            row = conn.execute(
                _SET_PRESENCE,
                {"b_session_id": session_id, "b_presence": presence, "b_status_msg": status_msg},
            ).first()
            return None if row is None else session_from_row(row)

        return await self._db.write_one(run)

    async def end_session(self, session_id: str) -> SessionRecord | None:
        def run(conn: Connection) -> SessionRecord | None:
            row = conn.execute(_END, {"b_session_id": session_id}).first()
            return None if row is None else session_from_row(row)

        return await self._db.write(run)

    async def end_device_sessions(self, user_id: str, device_id: str) -> list[SessionRecord]:
        def run(conn: Connection) -> list[SessionRecord]:
            rows = conn.execute(
                delete(sessions)
                .where(sessions.c.user_id == user_id, sessions.c.device_id == device_id)
                .returning(*sessions.c)
            )
            return sorted((session_from_row(row) for row in rows), key=lambda s: s.session_id)

        return await self._db.write(run)

    async def list_user_sessions(self, user_id: str) -> list[SessionRecord]:
        def run(conn: Connection) -> list[SessionRecord]:
            rows = conn.execute(_LIST_USER, {"b_user_id": user_id})
            return [session_from_row(row) for row in rows]

        return await self._db.read_one(run)

    async def take_expired_sessions(self, now_ms: int, limit: int) -> list[SessionRecord]:
        if limit <= 0:
            return []
        now_ms = min(now_ms, MAX_POSITION)

        def run(conn: Connection) -> list[SessionRecord]:
            due = (
                select(sessions.c.session_id)
                .where(sessions.c.expires_at_ms <= now_ms)
                .order_by(sessions.c.expires_at_ms, sessions.c.session_id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = conn.execute(
                delete(sessions).where(sessions.c.session_id.in_(due)).returning(*sessions.c)
            )
            return _sorted(rows)

        return await self._db.write(run)

    async def next_session_deadline(self) -> int | None:
        def run(conn: Connection) -> int | None:
            deadline = conn.execute(select(func.min(sessions.c.expires_at_ms))).scalar_one()
            return None if deadline is None else int(deadline)

        return await self._db.read_one(run)


def _values(session: SessionRecord) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "device_id": session.device_id,
        "presence": session.presence,
        "status_msg": session.status_msg,
        "created_ts": session.created_ts,
        "last_active_ts": session.last_active_ts,
        "expires_at_ms": session.expires_at_ms,
    }
