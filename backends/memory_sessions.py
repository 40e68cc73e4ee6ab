"""Memory implementations of sessions, typing and presence (see backends.protocols).

Deadlines sit in heaps with lazy deletion: a touch pushes a new entry and leaves the
old one to be skipped when popped; the heap is rebuilt when stale entries outnumber
live ones, so memory stays proportional to what is alive and taking expired entries
costs in proportion to what expires.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from backends.protocols import AuthLookup, SessionStart
from homeserver.types import PresenceRecord, SessionRecord, TypingChange

if TYPE_CHECKING:
    from backends.memory import _State

K = TypeVar("K", str, tuple[str, str])


@dataclass
class _Deadlines(Generic[K]):
    """Live deadlines by key, plus a heap of (deadline, key) with lazy deletion."""

    live: dict[K, int] = field(default_factory=dict)
    heap: list[tuple[int, K]] = field(default_factory=list)

    def set(self, key: K, deadline: int) -> None:
        if self.live.get(key) == deadline:
            return
        self.live[key] = deadline
        heapq.heappush(self.heap, (deadline, key))
        if len(self.heap) > 2 * len(self.live) + 1024:
            self.heap = [(d, k) for k, d in self.live.items()]
            heapq.heapify(self.heap)

    def discard(self, key: K) -> None:
        self.live.pop(key, None)

    def earliest(self) -> int | None:
        while self.heap:
            deadline, key = self.heap[0]
            if self.live.get(key) == deadline:
                return deadline
            heapq.heappop(self.heap)
        return None

    def pop_due(self, now_ms: int, limit: int) -> list[K]:
        due: list[K] = []
        while self.heap and len(due) < limit:
            deadline, key = self.heap[0]
            if deadline > now_ms:
                break
            heapq.heappop(self.heap)
            if self.live.get(key) == deadline:
                del self.live[key]
                due.append(key)
        return due


@dataclass
class SessionState:
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    active: dict[tuple[str, str], str] = field(default_factory=dict)
    by_user: dict[str, set[str]] = field(default_factory=dict)
    session_deadlines: _Deadlines[str] = field(default_factory=_Deadlines)
    # typing: (room_id, user_id) -> session_id; deadlines keyed the same way
    typing: dict[tuple[str, str], str] = field(default_factory=dict)
    typing_deadlines: _Deadlines[tuple[str, str]] = field(default_factory=_Deadlines)
    typing_by_session: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    typing_by_room: dict[str, set[str]] = field(default_factory=dict)
    typing_pos: dict[str, int] = field(default_factory=dict)
    presence: dict[str, PresenceRecord] = field(default_factory=dict)


class MemorySessionStore:
    def __init__(self, state: _State, sessions: SessionState) -> None:
        self._s = state
        self._t = sessions

    async def authenticate(self, token: str, session_id: str | None) -> AuthLookup | None:
        record = self._s.tokens.get(token)
        if record is None:
            return None
        if session_id is None:
            session_id = self._t.active.get((record.user_id, record.device_id))
        session = self._t.sessions.get(session_id) if session_id is not None else None
        return AuthLookup(token=record, session=session)

    def _store(self, session: SessionRecord) -> None:
        self._t.sessions[session.session_id] = session
        self._t.by_user.setdefault(session.user_id, set()).add(session.session_id)
        self._t.session_deadlines.set(session.session_id, session.expires_at_ms)

    async def start_session(self, session: SessionRecord, *, replace: bool) -> SessionStart:
        key = (session.user_id, session.device_id)
        current_id = self._t.active.get(key)
        current = self._t.sessions.get(current_id) if current_id is not None else None
        if current is not None and not replace:
            return SessionStart(session=current, replaced=None)
        self._store(session)
        self._t.active[key] = session.session_id
        return SessionStart(session=session, replaced=current)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return self._t.sessions.get(session_id)

    async def touch_session(self, session_id: str, last_active_ts: int, expires_at_ms: int) -> bool:
        session = self._t.sessions.get(session_id)
        if session is None:
            return False
        self._t.sessions[session_id] = replace(
            session, last_active_ts=last_active_ts, expires_at_ms=expires_at_ms
        )
        self._t.session_deadlines.set(session_id, expires_at_ms)
        return True

    async def set_session_presence(
        self, session_id: str, presence: str, status_msg: str | None
    ) -> SessionRecord | None:
        session = self._t.sessions.get(session_id)
        if session is None:
            return None
        session = replace(session, presence=presence, status_msg=status_msg)
        self._t.sessions[session_id] = session
        return session

    def _remove(self, session_id: str) -> SessionRecord | None:
        session = self._t.sessions.pop(session_id, None)
        if session is None:
            return None
        self._t.session_deadlines.discard(session_id)
        user_sessions = self._t.by_user.get(session.user_id)
        if user_sessions is not None:
            user_sessions.discard(session_id)
            if not user_sessions:
                del self._t.by_user[session.user_id]
        key = (session.user_id, session.device_id)
        if self._t.active.get(key) == session_id:
            del self._t.active[key]
        return session

    async def end_session(self, session_id: str) -> SessionRecord | None:
        return self._remove(session_id)

    async def end_device_sessions(self, user_id: str, device_id: str) -> list[SessionRecord]:
        ids = [
            sid
            for sid in sorted(self._t.by_user.get(user_id, ()))
            if self._t.sessions[sid].device_id == device_id
        ]
        return [s for s in (self._remove(sid) for sid in ids) if s is not None]

    async def list_user_sessions(self, user_id: str) -> list[SessionRecord]:
        sessions = [self._t.sessions[sid] for sid in self._t.by_user.get(user_id, ())]
        return sorted(sessions, key=lambda s: (s.created_ts, s.session_id))

    async def take_expired_sessions(self, now_ms: int, limit: int) -> list[SessionRecord]:
        due = self._t.session_deadlines.pop_due(now_ms, limit)
        return [s for s in (self._remove(sid) for sid in due) if s is not None]

    async def next_session_deadline(self) -> int | None:
        return self._t.session_deadlines.earliest()


class MemoryTypingStore:
    def __init__(self, state: _State, sessions: SessionState) -> None:
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


class MemoryPresenceStore:
    def __init__(self, state: _State, sessions: SessionState) -> None:
        self._s = state
        self._t = sessions

    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        return self._t.presence.get(user_id)

    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        record = PresenceRecord(
            user_id=user_id,
            presence=presence,
            status_msg=status_msg,
            last_active_ts=last_active_ts,
            stream_pos=self._s.next_pos(),
        )
        self._t.presence[user_id] = record
        return record

    async def get_presence_since(self, user_ids: Sequence[str], after: int) -> list[PresenceRecord]:
        records = [
            r
            for r in (self._t.presence.get(u) for u in set(user_ids))
            if r is not None and r.stream_pos > after
        ]
        return sorted(records, key=lambda r: r.stream_pos)
