"""Rooms, their events, current state and memberships in Redis."""

from __future__ import annotations

from collections.abc import Sequence

from backends.errors import Conflict, DuplicateTransaction, NotFound, StorageError
from backends.redis import codec
from backends.redis.base import RedisStore, idempotent, once
from backends.redis.keys import state_field
from homeserver.types import ClientTxn, Event, MembershipRecord, NewEvent, RoomRecord


class RedisRoomStore(RedisStore):
    @once
    async def create_room(self, room: RoomRecord) -> None:
        created = await self._ctx.run(
            self._scripts.create_hash, [self._k.room(room.room_id)], codec.room_fields(room)
        )
        if not created:
            raise Conflict(f"room {room.room_id} exists")

    @idempotent
    async def get_room(self, room_id: str) -> RoomRecord | None:
        fields = await self._r.hgetall(self._k.room(room_id))
        return codec.room_from_hash(fields) if fields else None

    @once
    async def append_events(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        """One script call: validation, position allocation and every write (the
        transaction's record included) happen in a single atomic step, so no reader
        sees position N+1 before N is complete."""
        if not events:
            if txn is not None:
                raise ValueError("a client transaction needs an event to record")
            return []
        k = self._k
        keys = [
            k.stream_pos,
            k.events,
            k.room_latest,
            "" if txn is None else k.txns(txn.user_id, txn.device_id),
        ]
        args = [str(len(events)), "" if txn is None else txn.txn_key]
        bodies: list[str] = []
        for new in events:
            body = codec.event_body(new)
            bodies.append(body)
            is_state = new.state_key is not None
            is_member = is_state and new.type == "m.room.member"
            keys += (
                k.room(new.room_id),
                k.room_events(new.room_id),
                k.room_state(new.room_id),
                k.room_state_content(new.room_id),
                k.room_members(new.room_id),
                k.user_rooms(new.state_key) if is_member and new.state_key is not None else "",
            )
            args += (
                new.event_id,
                new.room_id,
                body,
                state_field(new.type, new.state_key) if new.state_key is not None else "",
                codec.dumps(new.content) if is_state else "",
                new.state_key or "",
                codec.membership_tail(str(new.content.get("membership", "")), new.event_id)
                if is_member
                else "",
            )
        reply = await self._ctx.run(self._scripts.append_events, keys, args)
        status = reply[0]
        if status == "duplicate":
            raise DuplicateTransaction(reply[1])
        if status == "wrongtype":
            raise StorageError(f"Redis key {reply[1]} holds the wrong kind of value")
        if status == "notfound":
            raise NotFound(f"room {reply[1]}")
        if status == "conflict":
            raise Conflict(f"event {reply[1]} exists")
        if status != "ok" or len(reply) != 1 + 2 * len(events):
            raise StorageError(f"unexpected reply from Redis: {reply!r}")
        return [
            codec.event_from_parts(int(reply[1 + 2 * i]), reply[2 + 2 * i], body)
            for i, body in enumerate(bodies)
        ]

    @idempotent
    async def get_event(self, event_id: str) -> Event | None:
        text = await self._r.hget(self._k.events, event_id)
        return None if text is None else codec.event_from_stored(text)

    @idempotent
    async def get_current_state(self, room_id: str) -> list[Event]:
        reply = await self._ctx.run(
            self._scripts.current_state, [self._k.room_state(room_id), self._k.events], []
        )
        return sorted(codec.events_from_stored(reply), key=lambda e: e.stream_pos)

    @idempotent
    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        text = await self._ctx.run(
            self._scripts.state_event,
            [self._k.room_state(room_id), self._k.events],
            [state_field(type, state_key)],
        )
        return codec.event_from_stored(text) if isinstance(text, str) else None

    @idempotent
    async def get_room_events(
        self,
        room_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[Event]:
        if limit <= 0:
            return []
        reply = await self._ctx.run(
            self._scripts.room_events,
            [self._k.room_events(room_id), self._k.events],
            [
                "-inf" if after is None else f"({codec.clamp(after)}",
                "+inf" if before is None else f"({codec.clamp(before)}",
                str(codec.clamp(limit)),
                "1" if newest_first else "0",
            ],
        )
        return codec.events_from_stored(reply)

    @idempotent
    async def get_latest_positions(self, room_ids: Sequence[str]) -> dict[str, int]:
        ids = list(dict.fromkeys(room_ids))
        if not ids:
            return {}
        positions = await self._r.hmget(self._k.room_latest, ids)
        return {r: int(p) for r, p in zip(ids, positions, strict=True) if p is not None}

    @idempotent
    async def get_membership(self, room_id: str, user_id: str) -> MembershipRecord | None:
        text = await self._r.hget(self._k.room_members(room_id), user_id)
        return None if text is None else codec.membership_from_stored(room_id, user_id, text)

    @idempotent
    async def get_user_memberships(self, user_id: str) -> list[MembershipRecord]:
        records = await self._r.hgetall(self._k.user_rooms(user_id))
        return [
            codec.membership_from_stored(room_id, user_id, records[room_id])
            for room_id in sorted(records)
        ]

    @idempotent
    async def get_room_members(self, room_id: str) -> list[MembershipRecord]:
        records = await self._r.hgetall(self._k.room_members(room_id))
        return [
            codec.membership_from_stored(room_id, user_id, records[user_id])
            for user_id in sorted(records)
        ]

    @idempotent
    async def forget_room(self, user_id: str, room_id: str) -> None:
        found = await self._ctx.run(
            self._scripts.forget_room,
            [self._k.room_members(room_id), self._k.user_rooms(user_id)],
            [user_id, room_id],
        )
        if not found:
            raise NotFound(f"no membership of {user_id} in {room_id}")

    @idempotent
    async def current_stream_pos(self) -> int:
        value = await self._r.get(self._k.stream_pos)
        return 0 if value is None else int(value)
