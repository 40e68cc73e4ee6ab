"""Per-user data: account data, filters and client transaction ids."""

from __future__ import annotations

from sqlalchemy import Connection, select

from backends.records import AccountDataRecord, JsonDict
from backends.sql.codec import account_data_from_row, dump_json, load_json, room_key
from backends.sql.common import MAX_POSITION, TXN_EVENT, allocate_positions, insert_for
from backends.sql.database import Database
from backends.sql.schema import account_data, filters, txns

# Filter ids are decimal row ids; anything longer cannot name one (and would overflow).
_MAX_FILTER_ID_DIGITS = 18


class SqlAccountDataStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        encoded = dump_json(content)

        def run(conn: Connection) -> int:
            pos = allocate_positions(conn, 1)
            insert = insert_for(conn, account_data).values(
                user_id=user_id,
                room_key=room_key(room_id),
                type=type,
                content=encoded,
                stream_pos=pos,
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[
                        account_data.c.user_id,
                        account_data.c.room_key,
                        account_data.c.type,
                    ],
                    set_={
                        "content": insert.excluded.content,
                        "stream_pos": insert.excluded.stream_pos,
                    },
                )
            )
            return pos

        return await self._db.write(run)

    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        def run(conn: Connection) -> JsonDict | None:
            content = conn.execute(
                select(account_data.c.content).where(
                    account_data.c.user_id == user_id,
                    account_data.c.room_key == room_key(room_id),
                    account_data.c.type == type,
                )
            ).scalar_one_or_none()
            return None if content is None else load_json(content)

        return await self._db.read(run)

    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        if after >= MAX_POSITION:
            return []
        after = max(after, -1)

        def run(conn: Connection) -> list[AccountDataRecord]:
            rows = conn.execute(
                select(account_data)
                .where(account_data.c.user_id == user_id, account_data.c.stream_pos > after)
                .order_by(account_data.c.stream_pos)
            )
            return [account_data_from_row(row) for row in rows]

        return await self._db.read(run)


class SqlFilterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_filter(self, user_id: str, definition: JsonDict) -> str:
        encoded = dump_json(definition)

        def run(conn: Connection) -> str:
            filter_id = conn.execute(
                filters.insert()
                .values(user_id=user_id, definition=encoded)
                .returning(filters.c.filter_id)
            ).scalar_one()
            return str(filter_id)

        return await self._db.write(run)

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict | None:
        if not (
            filter_id.isascii() and filter_id.isdigit() and len(filter_id) <= _MAX_FILTER_ID_DIGITS
        ):
            return None
        row_id = int(filter_id)

        def run(conn: Connection) -> JsonDict | None:
            definition = conn.execute(
                select(filters.c.definition).where(
                    filters.c.filter_id == row_id, filters.c.user_id == user_id
                )
            ).scalar_one_or_none()
            return None if definition is None else load_json(definition)

        return await self._db.read(run)


class SqlTransactionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_txn_event(self, user_id: str, device_id: str, txn_key: str) -> str | None:
        def run(conn: Connection) -> str | None:
            event_id: str | None = conn.execute(
                TXN_EVENT,
                {"b_user_id": user_id, "b_device_id": device_id, "b_txn_key": txn_key},
            ).scalar_one_or_none()
            return event_id

        return await self._db.read(run)

    async def put_txn_event(
        self, user_id: str, device_id: str, txn_key: str, event_id: str
    ) -> None:
        def run(conn: Connection) -> None:
            conn.execute(
                insert_for(conn, txns)
                .values(user_id=user_id, device_id=device_id, txn_key=txn_key, event_id=event_id)
                .on_conflict_do_nothing(
                    index_elements=[txns.c.user_id, txns.c.device_id, txns.c.txn_key]
                )
            )

        await self._db.write(run)
