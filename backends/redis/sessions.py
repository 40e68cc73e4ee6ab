"""Sessions in Redis.

Every write is one script (`lua/*.lua`), so each is atomic and the take/end operations
are exactly-once: a script removes what it returns. Session deadlines are a sorted set
scored by `expires_at_ms`; taking what is due reads only the due members
(O(log n + taken)), and the earliest deadline is the first member (O(log n)).
"""

from __future__ import annotations

from backends.protocols import AuthLookup, SessionStart
from backends.records import SessionRecord
from backends.redis import codec
from backends.redis.base import RedisStore, earliest_deadline, idempotent, once, unexpected_reply


class RedisSessionStore(RedisStore):
    @idempotent
    async def authenticate(self, token: str, session_id: str | None) -> AuthLookup | None:
        keys = [self._k.token(token)]
        if session_id is not None:
            keys.append(self._k.session(session_id))
        reply = await self._ctx.run(self._scripts.authenticate, keys, [])
        if reply is None:
            return None
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise unexpected_reply(reply)
        return AuthLookup(
            token=codec.token_from_hash(codec.hash_from_flat(reply[0])),
            session=codec.session_from_flat(reply[1]),
        )

    @once
    async def start_session(self, session: SessionRecord, *, replace: bool) -> SessionStart:
        """Not retried: a repeated explicit start would report the session it just
        stored as the one it replaced."""
        k = self._k
        active_key = k.active_session(session.user_id, session.device_id)
        user_sessions_key = k.user_sessions(session.user_id)
        reply = await self._ctx.run(
            self._scripts.start_session,
            [active_key, k.session(session.session_id), user_sessions_key, k.session_deadlines],
            [
                "1" if replace else "0",
                str(session.expires_at_ms),
                *codec.session_fields(
                    session, user_sessions_key=user_sessions_key, active_key=active_key
                ),
            ],
        )
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise unexpected_reply(reply)
        stored, previous = reply[0], codec.session_from_flat(reply[1])
        if stored == 1:
            return SessionStart(session=session, replaced=previous)
        if previous is None:
            raise unexpected_reply(reply)
        return SessionStart(session=previous, replaced=None)

    @idempotent
    async def get_session(self, session_id: str) -> SessionRecord | None:
        fields = await self._r.hgetall(self._k.session(session_id))
        return codec.session_from_hash(fields) if fields else None

    @idempotent
    async def touch_session(self, session_id: str, last_active_ts: int, expires_at_ms: int) -> bool:
        found = await self._ctx.run(
            self._scripts.touch_session,
            [self._k.session(session_id), self._k.session_deadlines],
            [str(last_active_ts), str(expires_at_ms)],
        )
        return bool(found)

    @idempotent
    async def set_session_presence(
        self, session_id: str, presence: str, status_msg: str | None
    ) -> SessionRecord | None:
        reply = await self._ctx.run(
            self._scripts.set_session_presence,
            [self._k.session(session_id)],
            [presence, "0", ""] if status_msg is None else [presence, "1", status_msg],
        )
        return codec.session_from_flat(reply)

    @once
    async def end_session(self, session_id: str) -> SessionRecord | None:
        """Not retried: a repeat after a lost reply would answer None for the session
        this call removed."""
        reply = await self._ctx.run(
            self._scripts.end_session,
            [self._k.session(session_id), self._k.session_deadlines],
            [],
        )
        return codec.session_from_flat(reply)

    @once
    async def end_device_sessions(self, user_id: str, device_id: str) -> list[SessionRecord]:
        reply = await self._ctx.run(
            self._scripts.end_device_sessions,
            [self._k.user_sessions(user_id), self._k.session_deadlines],
            [device_id],
        )
        return sorted(codec.sessions_from_flats(reply), key=lambda s: s.session_id)

    @idempotent
    async def list_user_sessions(self, user_id: str) -> list[SessionRecord]:
        reply = await self._ctx.run(
            self._scripts.set_members_hgetall, [self._k.user_sessions(user_id)], []
        )
        return sorted(codec.sessions_from_flats(reply), key=lambda s: (s.created_ts, s.session_id))

    @once
    async def take_expired_sessions(self, now_ms: int, limit: int) -> list[SessionRecord]:
        if limit <= 0:
            return []
        reply = await self._ctx.run(
            self._scripts.take_expired_sessions,
            [self._k.session_deadlines],
            [str(codec.clamp(now_ms)), str(codec.clamp(limit))],
        )
        # Redis orders equal deadlines by key name; the protocol's tie order is the id.
        return sorted(
            codec.sessions_from_flats(reply), key=lambda s: (s.expires_at_ms, s.session_id)
        )

    @idempotent
    async def next_session_deadline(self) -> int | None:
        return await earliest_deadline(self, self._k.session_deadlines)
