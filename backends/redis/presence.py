"""Presence records in Redis: one hash field per user; a change takes its position
from the stream counter inside the script that stores it."""

from __future__ import annotations

from collections.abc import Sequence

from backends.records import PresenceRecord
from backends.redis import codec
from backends.redis.base import RedisStore, idempotent, once, reply_int


class RedisPresenceStore(RedisStore):
    @idempotent
    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        text = await self._r.hget(self._k.presence, user_id)
        return None if text is None else codec.presence_from_stored(user_id, text)

    @once
    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        pos = await self._ctx.run(
            self._scripts.put_presence,
            [self._k.stream_pos, self._k.presence],
            [user_id, codec.presence_tail(presence, status_msg, last_active_ts)],
        )
        return PresenceRecord(
            user_id=user_id,
            presence=presence,
            status_msg=status_msg,
            last_active_ts=last_active_ts,
            stream_pos=reply_int(pos),
        )

    @idempotent
    async def get_presence_since(self, user_ids: Sequence[str], after: int) -> list[PresenceRecord]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return []
        texts = await self._r.hmget(self._k.presence, ids)
        records = [
            codec.presence_from_stored(user_id, text)
            for user_id, text in zip(ids, texts, strict=True)
            if text is not None
        ]
        return sorted((r for r in records if r.stream_pos > after), key=lambda r: r.stream_pos)
