"""Sessions, typing and presence in Redis.

Every write is one script (`session_scripts.py`), so each is atomic and the
take/end operations are exactly-once: a script removes what it returns. Deadlines of
sessions and typing entries are sorted sets scored by `expires_at_ms`; taking what is
due reads only the due members (O(log n + taken)), and the earliest deadline is the
first member (O(log n)). Typing changes and presence changes take their position from
the stream counter inside the same script, like events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backends.errors import StorageError
from backends.protocols import AuthLookup, SessionStart
from backends.redis import codec
from backends.redis.base import RedisStore, idempotent, once
from homeserver.types import PresenceRecord, SessionRecord, TypingChange


def _unexpected(reply: Any) -> StorageError:
    return StorageError(f"unexpected reply from Redis: {reply!r}")


async def _earliest(store: RedisStore, zset: str) -> int | None:
    """The lowest score of a deadline set (its first member: O(log n)), or None."""
    first = await store._r.zrange(zset, 0, 0, withscores=True)
    return int(first[0].score) if first else None


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
            raise _unexpected(reply)
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
            raise _unexpected(reply)
        stored, previous = reply[0], codec.session_from_flat(reply[1])
        if stored == 1:
            return SessionStart(session=session, replaced=previous)
        if previous is None:
            raise _unexpected(reply)
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
        return await _earliest(self, self._k.session_deadlines)


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
            raise _unexpected(reply)
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
            raise _unexpected(reply)
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
        return await _earliest(self, self._k.typing_deadlines)


def _change(room_id: str, pos: Any, users: Any) -> TypingChange:
    if not isinstance(users, list | tuple):
        raise _unexpected(users)
    try:
        stream_pos = int(pos)
    except (TypeError, ValueError) as exc:
        raise _unexpected(pos) from exc
    return TypingChange(room_id=room_id, user_ids=tuple(sorted(users)), stream_pos=stream_pos)


def _changes(reply: Any) -> list[TypingChange]:
    """Changes from a script's flat `{room_id, pos, users, ...}` reply (order kept)."""
    if not isinstance(reply, list | tuple) or len(reply) % 3:
        raise _unexpected(reply)
    return [_change(reply[i], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]


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
            stream_pos=int(pos),
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
