"""Sessions in Redis.

Every write is one script (`lua/*.lua`), so each is atomic and the take/end operations
are exactly-once: a script removes what it returns. Session deadlines are a sorted set
scored by `expires_at_ms`; taking what is due reads only the due members
(O(log n + taken)), and the earliest deadline is the first member (O(log n)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from backends.protocols import AuthLookup, SessionStart
from backends.records import SessionRecord
from backends.redis import codec
from backends.redis.base import (
    RedisStore,
    ScriptCall,
    idempotent,
    once,
    reply_flag,
    unexpected_reply,
)
from backends.redis.keys import Keys


@dataclass(frozen=True, slots=True)
class AuthenticateCall(ScriptCall[AuthLookup | None]):
    """`lua/authenticate.lua`: a token with the named session, or (no session id) the
    token device's active session."""

    script: ClassVar[str] = "authenticate"

    @classmethod
    def build(cls, k: Keys, token: str, session_id: str | None) -> AuthenticateCall:
        keys = [k.token(token)]
        if session_id is not None:
            keys.append(k.session(session_id))
        return cls(keys, [])

    def parse(self, reply: object) -> AuthLookup | None:
        """None for an unknown token."""
        if reply is None:
            return None
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise unexpected_reply(reply)
        return AuthLookup(
            token=codec.token_from_hash(codec.hash_from_flat(reply[0])),
            session=codec.session_from_flat(reply[1]),
        )


@dataclass(frozen=True, slots=True)
class StartSessionCall(ScriptCall[SessionStart]):
    """`lua/start_session.lua`: store a session as its device's active one, unless
    (`replace` false) the device has one already."""

    script: ClassVar[str] = "start_session"

    session: SessionRecord

    @classmethod
    def build(cls, k: Keys, session: SessionRecord, *, replace: bool) -> StartSessionCall:
        active_key = k.active_session(session.user_id, session.device_id)
        user_sessions_key = k.user_sessions(session.user_id)
        return cls(
            [active_key, k.session(session.session_id), user_sessions_key, k.session_deadlines],
            [
                "1" if replace else "0",
                str(session.expires_at_ms),
                *codec.session_fields(
                    session, user_sessions_key=user_sessions_key, active_key=active_key
                ),
            ],
            session,
        )

    def parse(self, reply: object) -> SessionStart:
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise unexpected_reply(reply)
        stored, previous = reply[0], codec.session_from_flat(reply[1])
        if stored == 1:
            return SessionStart(session=self.session, replaced=previous)
        if previous is None:
            raise unexpected_reply(reply)
        return SessionStart(session=previous, replaced=None)


@dataclass(frozen=True, slots=True)
class TouchSessionCall(ScriptCall[bool]):
    """`lua/touch_session.lua`: a session's activity time and deadline."""

    script: ClassVar[str] = "touch_session"

    @classmethod
    def build(
        cls, k: Keys, session_id: str, last_active_ts: int, expires_at_ms: int
    ) -> TouchSessionCall:
        return cls(
            [k.session(session_id), k.session_deadlines],
            [str(last_active_ts), str(expires_at_ms)],
        )

    def parse(self, reply: object) -> bool:
        """False if the session is not stored."""
        return reply_flag(reply)


@dataclass(frozen=True, slots=True)
class SetSessionPresenceCall(ScriptCall[SessionRecord | None]):
    """`lua/set_session_presence.lua`: a session's presence and status message."""

    script: ClassVar[str] = "set_session_presence"

    @classmethod
    def build(
        cls, k: Keys, session_id: str, presence: str, status_msg: str | None
    ) -> SetSessionPresenceCall:
        return cls(
            [k.session(session_id)],
            [presence, "0", ""] if status_msg is None else [presence, "1", status_msg],
        )

    def parse(self, reply: object) -> SessionRecord | None:
        """The updated session, None if it is not stored."""
        return codec.session_from_flat(reply)


@dataclass(frozen=True, slots=True)
class EndSessionCall(ScriptCall[SessionRecord | None]):
    """`lua/end_session.lua`: remove a session."""

    script: ClassVar[str] = "end_session"

    @classmethod
    def build(cls, k: Keys, session_id: str) -> EndSessionCall:
        return cls([k.session(session_id), k.session_deadlines], [])

    def parse(self, reply: object) -> SessionRecord | None:
        """The removed session, None if it was not stored."""
        return codec.session_from_flat(reply)


@dataclass(frozen=True, slots=True)
class EndDeviceSessionsCall(ScriptCall[list[SessionRecord]]):
    """`lua/end_device_sessions.lua`: remove every session of one device."""

    script: ClassVar[str] = "end_device_sessions"

    @classmethod
    def build(cls, k: Keys, user_id: str, device_id: str) -> EndDeviceSessionsCall:
        return cls([k.user_sessions(user_id), k.session_deadlines], [device_id])

    def parse(self, reply: object) -> list[SessionRecord]:
        """The removed sessions, by id."""
        return sorted(codec.sessions_from_flats(reply), key=lambda s: s.session_id)


@dataclass(frozen=True, slots=True)
class SetMembersHgetallCall(ScriptCall[list[SessionRecord]]):
    """`lua/set_members_hgetall.lua`, on a user's session set: the user's sessions."""

    script: ClassVar[str] = "set_members_hgetall"

    @classmethod
    def build(cls, k: Keys, user_id: str) -> SetMembersHgetallCall:
        return cls([k.user_sessions(user_id)], [])

    def parse(self, reply: object) -> list[SessionRecord]:
        """The sessions, oldest first."""
        return sorted(codec.sessions_from_flats(reply), key=lambda s: (s.created_ts, s.session_id))


@dataclass(frozen=True, slots=True)
class TakeExpiredSessionsCall(ScriptCall[list[SessionRecord]]):
    """`lua/take_expired_sessions.lua`: remove (at most `limit`) sessions due by now."""

    script: ClassVar[str] = "take_expired_sessions"

    @classmethod
    def build(cls, k: Keys, now_ms: int, limit: int) -> TakeExpiredSessionsCall:
        return cls([k.session_deadlines], [str(codec.clamp(now_ms)), str(codec.clamp(limit))])

    def parse(self, reply: object) -> list[SessionRecord]:
        """The removed sessions, earliest deadline first."""
        # Redis orders equal deadlines by key name; the protocol's tie order is the id.
        return sorted(
            codec.sessions_from_flats(reply), key=lambda s: (s.expires_at_ms, s.session_id)
        )


class RedisSessionStore(RedisStore):
    @idempotent
    async def authenticate(self, token: str, session_id: str | None) -> AuthLookup | None:
        call = AuthenticateCall.build(self._k, token, session_id)
        return await self._ctx.run(call)

    @once
    async def start_session(self, session: SessionRecord, *, replace: bool) -> SessionStart:
        """Not retried: a repeated explicit start would report the session it just
        stored as the one it replaced."""
        call = StartSessionCall.build(self._k, session, replace=replace)
        return await self._ctx.run(call)

    @idempotent
    async def get_session(self, session_id: str) -> SessionRecord | None:
        fields = await self._r.hgetall(self._k.session(session_id))
        return codec.session_from_hash(fields) if fields else None

    @idempotent
    async def touch_session(self, session_id: str, last_active_ts: int, expires_at_ms: int) -> bool:
        call = TouchSessionCall.build(self._k, session_id, last_active_ts, expires_at_ms)
        return await self._ctx.run(call)

    @idempotent
    async def set_session_presence(
        self, session_id: str, presence: str, status_msg: str | None
    ) -> SessionRecord | None:
        call = SetSessionPresenceCall.build(self._k, session_id, presence, status_msg)
        return await self._ctx.run(call)

    @once
    async def end_session(self, session_id: str) -> SessionRecord | None:
        """Not retried: a repeat after a lost reply would answer None for the session
        this call removed."""
        call = EndSessionCall.build(self._k, session_id)
        return await self._ctx.run(call)

    @once
    async def end_device_sessions(self, user_id: str, device_id: str) -> list[SessionRecord]:
        call = EndDeviceSessionsCall.build(self._k, user_id, device_id)
        return await self._ctx.run(call)

    @idempotent
    async def list_user_sessions(self, user_id: str) -> list[SessionRecord]:
        call = SetMembersHgetallCall.build(self._k, user_id)
        return await self._ctx.run(call)

    @once
    async def take_expired_sessions(self, now_ms: int, limit: int) -> list[SessionRecord]:
        if limit <= 0:
            return []
        call = TakeExpiredSessionsCall.build(self._k, now_ms, limit)
        return await self._ctx.run(call)

    @idempotent
    async def next_session_deadline(self) -> int | None:
        return await self._earliest_deadline(self._k.session_deadlines)
