"""Published presence: one row per user, at the stream position of its last change.

A put takes its position from the stream counter inside its transaction, as events
do, so puts commit in position order and concurrent puts for one user leave the one
with the highest position.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from backends.records import PresenceRecord
from backends.sql.codec import presence_from_row
from backends.sql.common import MAX_POSITION, allocate_positions, insert_for
from backends.sql.database import Database
from backends.sql.schema import presence as presence_table

# Bound parameters per IN (...) list: far below every dialect's limit.
_IN_CHUNK = 500


class SqlPresenceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        def run(conn: Connection) -> PresenceRecord | None:
            row = conn.execute(
                select(presence_table).where(presence_table.c.user_id == user_id)
            ).first()
            return None if row is None else presence_from_row(row)

        return await self._db.read_one(run)

    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        def run(conn: Connection) -> PresenceRecord:
            record = PresenceRecord(
                user_id=user_id,
                presence=presence,
                status_msg=status_msg,
                last_active_ts=last_active_ts,
                stream_pos=allocate_positions(conn, 1),
            )
            upsert = insert_for(conn, presence_table).values(
                user_id=record.user_id,
                presence=record.presence,
                status_msg=record.status_msg,
                last_active_ts=record.last_active_ts,
                stream_pos=record.stream_pos,
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[presence_table.c.user_id],
                    set_={
                        "presence": upsert.excluded.presence,
                        "status_msg": upsert.excluded.status_msg,
                        "last_active_ts": upsert.excluded.last_active_ts,
                        "stream_pos": upsert.excluded.stream_pos,
                    },
                )
            )
            return record

        return await self._db.write(run)

    async def get_presence_since(self, user_ids: Sequence[str], after: int) -> list[PresenceRecord]:
        users = sorted(set(user_ids))
        if not users or after >= MAX_POSITION:
            return []
        after = max(after, -1)

        def run(conn: Connection) -> list[PresenceRecord]:
            records: list[PresenceRecord] = []
            for start in range(0, len(users), _IN_CHUNK):
                rows = conn.execute(
                    select(presence_table).where(
                        presence_table.c.user_id.in_(users[start : start + _IN_CHUNK]),
                        presence_table.c.stream_pos > after,
                    )
                )
                records.extend(presence_from_row(row) for row in rows)
            return sorted(records, key=lambda r: r.stream_pos)

        if len(users) <= _IN_CHUNK:
            return await self._db.read_one(run)
        return await self._db.read(run)
