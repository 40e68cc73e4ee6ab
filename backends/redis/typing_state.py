"""Typing notifications in Redis, bound to the session that typed.

Every write is one script, atomic and exactly-once like the session scripts. Typing
deadlines are a sorted set scored by `expires_at_ms`; a change takes its position
from the stream counter inside the same script, like events.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.records import TypingChange
from backends.redis import codec
from backends.redis.base import (
    RedisStore,
    earliest_deadline,
    idempotent,
    once,
    reply_int,
    unexpected_reply,
)


class RedisTypingStore(RedisStore):
    @once
    async def set_typing(
        self, room_id: str, user_id: str, session_id: str, expires_at_ms: int
    ) -> TypingChange | None:
        k = self._k
        reply = await self._ctx.run(
            self._scripts.set_typing,
            [
                k.stream_pos,
                k.typing_pos,
                k.typing_entry(room_id, user_id),
                k.typing_room(room_id),
                k.session_typing(session_id),
                k.typing_deadlines,
            ],
            [room_id, user_id, session_id, str(expires_at_ms)],
        )
        if reply is None:
            return None
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise unexpected_reply(reply)
        return _change(room_id, reply[0], reply[1])

    @once
    async def clear_typing(self, room_id: str, user_id: str) -> TypingChange | None:
        k = self._k
        reply = await self._ctx.run(
            self._scripts.clear_typing,
            [k.stream_pos, k.typing_pos, k.typing_entry(room_id, user_id), k.typing_deadlines],
            [],
        )
        if reply is None:
            return None
        changes = _changes(reply)
        if len(changes) != 1:
            raise unexpected_reply(reply)
        return changes[0]

    @once
    async def clear_session_typing(self, session_id: str) -> list[TypingChange]:
        k = self._k
        reply = await self._ctx.run(
            self._scripts.clear_session_typing,
            [k.stream_pos, k.typing_pos, k.session_typing(session_id), k.typing_deadlines],
            [],
        )
        return _changes(reply)

    @idempotent
    async def get_typing(self, room_ids: Sequence[str]) -> dict[str, TypingChange]:
        ids = list(dict.fromkeys(room_ids))
        if not ids:
            return {}
        reply = await self._ctx.run(
            self._scripts.get_typing,
            [self._k.typing_pos, *(self._k.typing_room(r) for r in ids)],
            ids,
        )
        return {change.room_id: change for change in _changes(reply)}

    @once
    async def take_expired_typing(self, now_ms: int, limit: int) -> list[TypingChange]:
        if limit <= 0:
            return []
        k = self._k
        reply = await self._ctx.run(
            self._scripts.take_expired_typing,
            [k.stream_pos, k.typing_pos, k.typing_deadlines],
            [str(codec.clamp(now_ms)), str(codec.clamp(limit))],
        )
        return _changes(reply)

    @idempotent
    async def next_typing_deadline(self) -> int | None:
        return await earliest_deadline(self, self._k.typing_deadlines)


def _change(room_id: object, pos: object, users: object) -> TypingChange:
    if not isinstance(room_id, str):
        raise unexpected_reply(room_id)
    if not isinstance(users, list | tuple) or not all(isinstance(u, str) for u in users):
        raise unexpected_reply(users)
    return TypingChange(
        room_id=room_id, user_ids=tuple(sorted(map(str, users))), stream_pos=reply_int(pos)
    )


def _changes(reply: object) -> list[TypingChange]:
    """Changes from a script's flat `{room_id, pos, users, ...}` reply (order kept)."""
    if not isinstance(reply, list | tuple) or len(reply) % 3:
        raise unexpected_reply(reply)
    return [_change(reply[i], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]
