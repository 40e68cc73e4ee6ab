"""Typing notifications in Redis, bound to the session that typed.

Every write is one script, atomic and exactly-once like the session scripts. Typing
deadlines are a sorted set scored by `expires_at_ms`; a change takes its position
from the stream counter inside the same script, like events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from backends.records import TypingChange
from backends.redis import codec
from backends.redis.base import (
    RedisStore,
    ScriptCall,
    idempotent,
    once,
    reply_int,
    unexpected_reply,
)
from backends.redis.keys import Keys


@dataclass(frozen=True, slots=True)
class SetTypingCall(ScriptCall[TypingChange | None]):
    """`lua/set_typing.lua`: a user typing in a room (from a session), until a time."""

    script: ClassVar[str] = "set_typing"

    room_id: str

    @classmethod
    def build(
        cls, k: Keys, room_id: str, user_id: str, session_id: str, expires_at_ms: int
    ) -> SetTypingCall:
        return cls(
            [
                k.stream_pos,
                k.typing_pos,
                k.typing_entry(room_id, user_id),
                k.typing_room(room_id),
                k.session_typing(session_id),
                k.typing_deadlines,
            ],
            [room_id, user_id, session_id, str(expires_at_ms)],
            room_id,
        )

    def parse(self, reply: object) -> TypingChange | None:
        """None if the room's set of typing users did not change."""
        if reply is None:
            return None
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise unexpected_reply(reply)
        return _change(self.room_id, reply[0], reply[1])


@dataclass(frozen=True, slots=True)
class ClearTypingCall(ScriptCall[TypingChange | None]):
    """`lua/clear_typing.lua`: a user stops typing in a room."""

    script: ClassVar[str] = "clear_typing"

    @classmethod
    def build(cls, k: Keys, room_id: str, user_id: str) -> ClearTypingCall:
        return cls(
            [k.stream_pos, k.typing_pos, k.typing_entry(room_id, user_id), k.typing_deadlines],
            [],
        )

    def parse(self, reply: object) -> TypingChange | None:
        """None if the user was not typing there."""
        if reply is None:
            return None
        changes = _changes(reply)
        if len(changes) != 1:
            raise unexpected_reply(reply)
        return changes[0]


@dataclass(frozen=True, slots=True)
class ClearSessionTypingCall(ScriptCall[list[TypingChange]]):
    """`lua/clear_session_typing.lua`: every typing entry of a session ends."""

    script: ClassVar[str] = "clear_session_typing"

    @classmethod
    def build(cls, k: Keys, session_id: str) -> ClearSessionTypingCall:
        return cls(
            [k.stream_pos, k.typing_pos, k.session_typing(session_id), k.typing_deadlines], []
        )

    def parse(self, reply: object) -> list[TypingChange]:
        """One change per room affected."""
        return _changes(reply)


@dataclass(frozen=True, slots=True)
class GetTypingCall(ScriptCall[dict[str, TypingChange]]):
    """`lua/get_typing.lua`: the typing users of some rooms (distinct ids)."""

    script: ClassVar[str] = "get_typing"

    @classmethod
    def build(cls, k: Keys, room_ids: Sequence[str]) -> GetTypingCall:
        return cls([k.typing_pos, *(k.typing_room(r) for r in room_ids)], list(room_ids))

    def parse(self, reply: object) -> dict[str, TypingChange]:
        """By room, for the rooms with a recorded typing position."""
        return {change.room_id: change for change in _changes(reply)}


@dataclass(frozen=True, slots=True)
class TakeExpiredTypingCall(ScriptCall[list[TypingChange]]):
    """`lua/take_expired_typing.lua`: remove (at most `limit`) entries due by now."""

    script: ClassVar[str] = "take_expired_typing"

    @classmethod
    def build(cls, k: Keys, now_ms: int, limit: int) -> TakeExpiredTypingCall:
        return cls(
            [k.stream_pos, k.typing_pos, k.typing_deadlines],
            [str(codec.clamp(now_ms)), str(codec.clamp(limit))],
        )

    def parse(self, reply: object) -> list[TypingChange]:
        """One change per room affected."""
        return _changes(reply)


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


class RedisTypingStore(RedisStore):
    @once
    async def set_typing(
        self, room_id: str, user_id: str, session_id: str, expires_at_ms: int
    ) -> TypingChange | None:
        call = SetTypingCall.build(self._k, room_id, user_id, session_id, expires_at_ms)
        return await self._ctx.run(call)

    @once
    async def clear_typing(self, room_id: str, user_id: str) -> TypingChange | None:
        call = ClearTypingCall.build(self._k, room_id, user_id)
        return await self._ctx.run(call)

    @once
    async def clear_session_typing(self, session_id: str) -> list[TypingChange]:
        call = ClearSessionTypingCall.build(self._k, session_id)
        return await self._ctx.run(call)

    @idempotent
    async def get_typing(self, room_ids: Sequence[str]) -> dict[str, TypingChange]:
        ids = list(dict.fromkeys(room_ids))
        if not ids:
            return {}
        call = GetTypingCall.build(self._k, ids)
        return await self._ctx.run(call)

    @once
    async def take_expired_typing(self, now_ms: int, limit: int) -> list[TypingChange]:
        if limit <= 0:
            return []
        call = TakeExpiredTypingCall.build(self._k, now_ms, limit)
        return await self._ctx.run(call)

    @idempotent
    async def next_typing_deadline(self) -> int | None:
        return await self._earliest_deadline(self._k.typing_deadlines)
