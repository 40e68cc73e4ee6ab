"""Memory typing notifications, bound to the session that typed."""

from __future__ import annotations

from collections.abc import Sequence

from backends.memory.state import MemoryState, SessionState
from backends.records import TypingChange


class MemoryTypingStore:
    def __init__(self, state: MemoryState, sessions: SessionState) -> None:
        self._s = state
        self._t = sessions

    def _change(self, room_id: str) -> TypingChange:
        pos = self._s.next_pos()
        self._t.typing_pos[room_id] = pos
        users = tuple(sorted(self._t.typing_by_room.get(room_id, ())))
        return TypingChange(room_id=room_id, user_ids=users, stream_pos=pos)

    def _drop(self, key: tuple[str, str]) -> bool:
        session_id = self._t.typing.pop(key, None)
        if session_id is None:
            return False
        self._t.typing_deadlines.discard(key)
        entries = self._t.typing_by_session.get(session_id)
        if entries is not None:
            entries.discard(key)
            if not entries:
                del self._t.typing_by_session[session_id]
        room_users = self._t.typing_by_room.get(key[0])
        if room_users is not None:
            room_users.discard(key[1])
            if not room_users:
                del self._t.typing_by_room[key[0]]
        return True

    async def set_typing(
        self, room_id: str, user_id: str, session_id: str, expires_at_ms: int
    ) -> TypingChange | None:
        key = (room_id, user_id)
        previous_session = self._t.typing.get(key)
        if previous_session is not None and previous_session != session_id:
            # Moving to another session is not a change of who types: re-index only.
            entries = self._t.typing_by_session.get(previous_session)
            if entries is not None:
                entries.discard(key)
                if not entries:
                    del self._t.typing_by_session[previous_session]
        self._t.typing[key] = session_id
        self._t.typing_deadlines.set(key, expires_at_ms)
        self._t.typing_by_session.setdefault(session_id, set()).add(key)
        room_users = self._t.typing_by_room.setdefault(room_id, set())
        if user_id in room_users:
            return None
        room_users.add(user_id)
        return self._change(room_id)

    async def clear_typing(self, room_id: str, user_id: str) -> TypingChange | None:
        if not self._drop((room_id, user_id)):
            return None
        return self._change(room_id)

    async def clear_session_typing(self, session_id: str) -> list[TypingChange]:
        keys = sorted(self._t.typing_by_session.get(session_id, ()))
        rooms = sorted({room for room, user in keys if self._drop((room, user))})
        return [self._change(room) for room in rooms]

    async def get_typing(self, room_ids: Sequence[str]) -> dict[str, TypingChange]:
        out: dict[str, TypingChange] = {}
        for room_id in room_ids:
            pos = self._t.typing_pos.get(room_id)
            if pos is not None:
                users = tuple(sorted(self._t.typing_by_room.get(room_id, ())))
                out[room_id] = TypingChange(room_id=room_id, user_ids=users, stream_pos=pos)
        return out

    async def take_expired_typing(self, now_ms: int, limit: int) -> list[TypingChange]:
        due = self._t.typing_deadlines.pop_due(now_ms, limit)
        rooms: set[str] = set()
        for key in due:
            if self._drop(key):
                rooms.add(key[0])
        return [self._change(room) for room in sorted(rooms)]

    async def next_typing_deadline(self) -> int | None:
        return self._t.typing_deadlines.earliest()
