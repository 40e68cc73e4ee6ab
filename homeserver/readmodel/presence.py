"""Each user's published presence from memory.

`CachedPresence` implements `PresenceStore` over the real store: `get_presence` (read
by every presence recomputation and status request) is answered from a bounded cache,
kept current by `put_presence`, which returns the record the store wrote. Reading
the changes since a position (/sync) passes through.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.protocols import PresenceStore
from backends.records import PresenceRecord
from homeserver.readmodel.cache import BoundedCache, reading, writing
from homeserver.readmodel.positions import Watermark


class CachedPresence:
    def __init__(
        self,
        inner: PresenceStore,
        cache: BoundedCache[str, PresenceRecord],
        watermark: Watermark,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._watermark = watermark

    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        with reading(self._cache, user_id) as ticket:
            found = await self._inner.get_presence(user_id)
            if found is not None:
                self._cache.fill(ticket, user_id, found)
        return found

    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        with writing(self._cache, user_id) as ticket:
            record = await self._watermark.track(
                lambda: self._inner.put_presence(user_id, presence, status_msg, last_active_ts),
                lambda r: (r.stream_pos,),
            )
            self._cache.fill(ticket, user_id, record)
        return record

    async def get_presence_since(self, user_ids: Sequence[str], after: int) -> list[PresenceRecord]:
        return await self._inner.get_presence_since(user_ids, after)
