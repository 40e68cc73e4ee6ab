"""Memory sessions and their authentication lookups."""

from __future__ import annotations

from dataclasses import replace

from backends.memory.state import MemoryState, SessionState
from backends.protocols import AuthLookup, SessionStart
from backends.records import SessionRecord


class MemorySessionStore:
    def __init__(self, state: MemoryState, sessions: SessionState) -> None:
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
