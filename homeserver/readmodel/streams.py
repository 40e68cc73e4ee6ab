"""Account data (from memory: each user's whole set, bounded by users) and server
events (passed through, the position of the last one kept); both counted by the
watermark."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from backends.protocols import AccountDataStore, ServerEventStore
from backends.records import AccountDataRecord, JsonDict, NewServerEvent, ServerEvent
from homeserver.readmodel.cache import BoundedCache, reading, writing
from homeserver.readmodel.positions import Watermark

Key = tuple[str | None, str]  # (room id or None for global, type)


class CachedAccountData:
    """`AccountDataStore` with each user's account data (the latest content of every
    (room, type)) in a bounded cache, filled whole on a miss (`get_account_data_since`
    from 0 answers every record) and kept current by `put_account_data`. Contents
    are copied on the way in, so a caller's later change to its dict changes nothing."""

    def __init__(
        self,
        inner: AccountDataStore,
        cache: BoundedCache[str, dict[Key, AccountDataRecord]],
        watermark: Watermark,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._watermark = watermark

    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        with writing(self._cache, user_id) as ticket:
            pos = await self._watermark.track(
                lambda: self._inner.put_account_data(user_id, room_id, type, content),
                lambda pos: (pos,),
            )
            known = self._cache.peek(user_id)
            if known is not None:
                updated = dict(known)
                updated[(room_id, type)] = AccountDataRecord(
                    user_id, room_id, type, copy.deepcopy(content), pos
                )
                self._cache.fill(ticket, user_id, updated)
        return pos

    async def _all(self, user_id: str) -> dict[Key, AccountDataRecord]:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        with reading(self._cache, user_id) as ticket:
            records = await self._inner.get_account_data_since(user_id, 0)
            found = {(r.room_id, r.type): r for r in records}
            self._cache.fill(ticket, user_id, found)
        return found

    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        record = (await self._all(user_id)).get((room_id, type))
        return None if record is None else record.content

    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        records = [r for r in (await self._all(user_id)).values() if r.stream_pos > after]
        records.sort(key=lambda r: r.stream_pos)
        return records


class TrackedServerEvents:
    def __init__(self, inner: ServerEventStore, watermark: Watermark) -> None:
        self._inner = inner
        self._watermark = watermark

    async def add_server_event(self, event: NewServerEvent) -> ServerEvent:
        stored = await self._watermark.track(
            lambda: self._inner.add_server_event(event), lambda e: (e.stream_pos,)
        )
        mark = self._watermark
        mark.last_server_event = max(mark.last_server_event, stored.stream_pos)
        return stored

    async def get_server_events(
        self, user_id: str, room_ids: Sequence[str], *, after: int, upto: int, limit: int
    ) -> list[ServerEvent]:
        return await self._inner.get_server_events(
            user_id, room_ids, after=after, upto=upto, limit=limit
        )
