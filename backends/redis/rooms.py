"""Rooms, their events, current state and memberships in Redis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from backends.errors import Conflict, DuplicateTransaction, NotFound, StorageError
from backends.records import ClientTxn, Event, MembershipRecord, NewEvent, RoomRecord
from backends.redis import codec
from backends.redis.base import (
    RedisStore,
    ScriptCall,
    idempotent,
    once,
    reply_flag,
    reply_int,
    unexpected_reply,
)
from backends.redis.keys import Keys, state_field


@dataclass(frozen=True, slots=True)
class CreateHashCall(ScriptCall[bool]):
    """`lua/create_hash.lua`: create a hash unless its key exists."""

    script: ClassVar[str] = "create_hash"

    @classmethod
    def build(cls, hash_key: str, fields: Sequence[str]) -> CreateHashCall:
        return cls([hash_key], list(fields))

    def parse(self, reply: object) -> bool:
        """True if the hash was created, False if the key existed."""
        return reply_flag(reply)


@dataclass(frozen=True, slots=True)
class AppendEventsCall(ScriptCall[list[Event]]):
    """One call of `lua/append_events.lua`: its KEYS/ARGV layout (8 keys and 8 values
    per event, as the script's header describes) built in one place, and its reply
    parsed into the stored events."""

    script: ClassVar[str] = "append_events"

    bodies: list[str]

    @classmethod
    def build(cls, k: Keys, events: Sequence[NewEvent], txn: ClientTxn | None) -> AppendEventsCall:
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
            member = new.state_key if is_state and new.type == "m.room.member" else None
            membership = str(new.content.get("membership", ""))
            keys += (
                k.room(new.room_id),
                k.room_events(new.room_id),
                k.room_state(new.room_id),
                k.room_state_content(new.room_id),
                k.room_members(new.room_id),
                "" if member is None else k.user_rooms(member),
                "" if member is None else k.room_joined(new.room_id),
                "" if member is None else k.user_joined(member),
            )
            args += (
                new.event_id,
                new.room_id,
                body,
                "" if new.state_key is None else state_field(new.type, new.state_key),
                codec.dumps(new.content) if is_state else "",
                new.state_key or "",
                "" if member is None else codec.membership_tail(membership, new.event_id),
                "" if member is None else ("1" if membership == "join" else "0"),
            )
        return cls(keys, args, bodies)

    def parse(self, reply: object) -> list[Event]:
        """The stored events, or the script's refusal as NotFound/Conflict/
        DuplicateTransaction/StorageError."""
        if not isinstance(reply, list | tuple) or not reply:
            raise unexpected_reply(reply)
        status = reply[0]
        if status in ("duplicate", "wrongtype", "notfound", "conflict") and len(reply) == 2:
            what = str(reply[1])
            if status == "duplicate":
                raise DuplicateTransaction(what)
            if status == "wrongtype":
                raise StorageError(f"Redis key {what} holds the wrong kind of value")
            if status == "notfound":
                raise NotFound(f"room {what}")
            raise Conflict(f"event {what} exists")
        if status != "ok" or len(reply) != 1 + 2 * len(self.bodies):
            raise unexpected_reply(reply)
        try:
            return [
                codec.event_from_parts(int(reply[1 + 2 * i]), str(reply[2 + 2 * i]), body)
                for i, body in enumerate(self.bodies)
            ]
        except (TypeError, ValueError) as exc:
            raise unexpected_reply(reply) from exc


@dataclass(frozen=True, slots=True)
class CurrentStateCall(ScriptCall[list[Event]]):
    """`lua/current_state.lua`: a room's current state events."""

    script: ClassVar[str] = "current_state"

    @classmethod
    def build(cls, k: Keys, room_id: str) -> CurrentStateCall:
        return cls([k.room_state(room_id), k.events], [])

    def parse(self, reply: object) -> list[Event]:
        """The events in stream order."""
        return sorted(codec.events_from_stored(reply), key=lambda e: e.stream_pos)


@dataclass(frozen=True, slots=True)
class StateEventCall(ScriptCall[Event | None]):
    """`lua/state_event.lua`: one current state event of a room."""

    script: ClassVar[str] = "state_event"

    @classmethod
    def build(cls, k: Keys, room_id: str, type: str, state_key: str) -> StateEventCall:
        return cls([k.room_state(room_id), k.events], [state_field(type, state_key)])

    def parse(self, reply: object) -> Event | None:
        if reply is None:
            return None
        if not isinstance(reply, str):
            raise unexpected_reply(reply)
        return codec.event_from_stored(reply)


@dataclass(frozen=True, slots=True)
class RoomEventsCall(ScriptCall[list[Event]]):
    """`lua/room_events.lua`: a page of a room's events between two positions."""

    script: ClassVar[str] = "room_events"

    @classmethod
    def build(
        cls,
        k: Keys,
        room_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        newest_first: bool,
    ) -> RoomEventsCall:
        return cls(
            [k.room_events(room_id), k.events],
            [
                "-inf" if after is None else f"({codec.clamp(after)}",
                "+inf" if before is None else f"({codec.clamp(before)}",
                str(codec.clamp(limit)),
                "1" if newest_first else "0",
            ],
        )

    def parse(self, reply: object) -> list[Event]:
        """The events in the order asked for."""
        return codec.events_from_stored(reply)


@dataclass(frozen=True, slots=True)
class BackfillJoinedCall(ScriptCall[int]):
    """`lua/backfill_joined.lua`: rebuild one room's joined zsets for some members."""

    script: ClassVar[str] = "backfill_joined"

    @classmethod
    def build(
        cls, k: Keys, members_key: str, room_id: str, user_ids: Sequence[str]
    ) -> BackfillJoinedCall:
        return cls(
            [members_key, k.room_joined(room_id), *(k.user_joined(u) for u in user_ids)],
            [room_id, *user_ids],
        )

    def parse(self, reply: object) -> int:
        """How many of the users are joined."""
        return reply_int(reply)


@dataclass(frozen=True, slots=True)
class ForgetRoomCall(ScriptCall[bool]):
    """`lua/forget_room.lua`: set a membership's forgotten flag."""

    script: ClassVar[str] = "forget_room"

    @classmethod
    def build(cls, k: Keys, user_id: str, room_id: str) -> ForgetRoomCall:
        return cls([k.room_members(room_id), k.user_rooms(user_id)], [user_id, room_id])

    def parse(self, reply: object) -> bool:
        """False if there is no membership record."""
        return reply_flag(reply)


class RedisRoomStore(RedisStore):
    @once
    async def create_room(self, room: RoomRecord) -> None:
        call = CreateHashCall.build(self._k.room(room.room_id), codec.room_fields(room))
        if not await self._ctx.run(call):
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
        call = AppendEventsCall.build(self._k, events, txn)
        return await self._ctx.run(call)

    @idempotent
    async def get_event(self, event_id: str) -> Event | None:
        text = await self._r.hget(self._k.events, event_id)
        return None if text is None else codec.event_from_stored(text)

    @idempotent
    async def get_current_state(self, room_id: str) -> list[Event]:
        call = CurrentStateCall.build(self._k, room_id)
        return await self._ctx.run(call)

    @idempotent
    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        call = StateEventCall.build(self._k, room_id, type, state_key)
        return await self._ctx.run(call)

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
        call = RoomEventsCall.build(
            self._k, room_id, after=after, before=before, limit=limit, newest_first=newest_first
        )
        return await self._ctx.run(call)

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
    async def get_joined_members(self, room_id: str) -> list[str]:
        return list(await self._r.zrange(self._k.room_joined(room_id), 0, -1))

    @idempotent
    async def get_joined_rooms(self, user_id: str) -> list[str]:
        return list(await self._r.zrange(self._k.user_joined(user_id), 0, -1))

    @idempotent
    async def backfill_joined(self) -> None:
        """Build the joined-member and joined-room zsets from the membership hashes,
        once per prefix (data written before they existed): a one-off on open, marked
        done by `Keys.joined_index`. Each room is rebuilt by one script, atomic with
        respect to concurrent member events, so it is safe while other processes (of
        this version) write."""
        k = self._k
        if await self._r.exists([k.joined_index]):
            return
        if await self._r.exists([k.stream_pos]):
            async for key in self._r.scan_iter(match=k.room_members_pattern(), count=1000):
                room_id = k.room_of_members_key(key)
                user_ids = list(await self._r.hkeys(key))
                for i in range(0, len(user_ids), 1000):
                    call = BackfillJoinedCall.build(k, key, room_id, user_ids[i : i + 1000])
                    await self._ctx.run(call)
        await self._r.set(k.joined_index, "1")

    @idempotent
    async def forget_room(self, user_id: str, room_id: str) -> None:
        call = ForgetRoomCall.build(self._k, user_id, room_id)
        if not await self._ctx.run(call):
            raise NotFound(f"no membership of {user_id} in {room_id}")

    @idempotent
    async def current_stream_pos(self) -> int:
        value = await self._r.get(self._k.stream_pos)
        return 0 if value is None else int(value)
