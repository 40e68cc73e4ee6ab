"""Presence records in Redis: one hash field per user; a change takes its position
from the stream counter inside the script that stores it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from backends.records import PresenceRecord
from backends.redis import codec
from backends.redis.base import RedisStore, ScriptCall, idempotent, once, reply_int
from backends.redis.keys import Keys


@dataclasses.dataclass(frozen=True, slots=True)
class PutPresenceCall(ScriptCall[PresenceRecord]):
    """`lua/put_presence.lua`: store a user's presence at a new stream position."""

    script: ClassVar[str] = "put_presence"

    record: PresenceRecord

    @classmethod
    def build(
        cls, k: Keys, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PutPresenceCall:
        return cls(
            [k.stream_pos, k.presence],
            [user_id, codec.presence_tail(presence, status_msg, last_active_ts)],
            PresenceRecord(
                user_id=user_id,
                presence=presence,
                status_msg=status_msg,
                last_active_ts=last_active_ts,
                stream_pos=0,
            ),
        )

    def parse(self, reply: object) -> PresenceRecord:
        """The stored record, with the position of the change."""
        return dataclasses.replace(self.record, stream_pos=reply_int(reply))


class RedisPresenceStore(RedisStore):
    @idempotent
    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        text = await self._r.hget(self._k.presence, user_id)
        return None if text is None else codec.presence_from_stored(user_id, text)

    @once
    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        call = PutPresenceCall.build(self._k, user_id, presence, status_msg, last_active_ts)
        return await self._ctx.run(call)

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
