"""Memory account data, filters and client transaction ids."""

from __future__ import annotations

from dataclasses import replace

from backends.memory.state import MemoryState, copy_json
from backends.records import AccountDataRecord, JsonDict


class MemoryAccountDataStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        pos = self._s.next_pos()
        self._s.account_data[(user_id, room_id, type)] = AccountDataRecord(
            user_id=user_id, room_id=room_id, type=type, content=copy_json(content), stream_pos=pos
        )
        return pos

    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        record = self._s.account_data.get((user_id, room_id, type))
        return None if record is None else copy_json(record.content)

    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        records = [
            replace(r, content=copy_json(r.content))
            for (uid, _, _), r in self._s.account_data.items()
            if uid == user_id and r.stream_pos > after
        ]
        return sorted(records, key=lambda r: r.stream_pos)


class MemoryFilterStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def create_filter(self, user_id: str, definition: JsonDict) -> str:
        filter_id = str(next(self._s.filter_ids))
        self._s.filters[(user_id, filter_id)] = copy_json(definition)
        return filter_id

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict | None:
        definition = self._s.filters.get((user_id, filter_id))
        return None if definition is None else copy_json(definition)


class MemoryTransactionStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def get_txn_event(self, user_id: str, device_id: str, txn_key: str) -> str | None:
        return self._s.txns.get((user_id, device_id, txn_key))

    async def put_txn_event(
        self, user_id: str, device_id: str, txn_key: str, event_id: str
    ) -> None:
        self._s.txns.setdefault((user_id, device_id, txn_key), event_id)
