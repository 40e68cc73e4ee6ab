"""Rooms, their current state events, memberships and newest positions from memory.

`CachedRooms` implements `RoomStore` over the real store. It keeps, in bounded caches:
- each room's membership records (what `get_room_members` answers), from which
  `get_joined_members` and `get_membership` are answered too;
- each user's joined rooms (`get_joined_rooms`) and membership records
  (`get_user_memberships`);
- each room's newest stream position (`get_latest_positions`);
- rooms (`get_room`: a room never changes once created) and current state events
  (`get_state_event`: power levels, join rules, ... set by the appends).

The room's timeline and current state are read from the store, but a read in flight is
shared by the callers that ask the same at once (`shared.SharedReads`: the /syncs one
message wakes read the room once).

Appends go to the store first. A member event then drops what it changed (the room's
members, the target's joined rooms), to be read again on the next use; the room's
newest position is set from the stored events. An append that fails (it may have been
stored) drops everything it might have changed. Everything else passes through.

Each membership change is published on the change feed ("membership": the room and
the users whose membership of it changed, or may have), at the write's return, for
the caches of other processes sharing the store (`readmodel/changes.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backends.protocols import RoomStore
from backends.records import ClientTxn, Event, Membership, MembershipRecord, NewEvent, RoomRecord
from homeserver.changefeed import ChangeFeed
from homeserver.readmodel.cache import BoundedCache, reading
from homeserver.readmodel.positions import Watermark
from homeserver.readmodel.shared import SharedReads

MEMBER = "m.room.member"


@dataclass(frozen=True)
class RoomLimits:
    rooms: int = 20_000
    users: int = 100_000
    state_events: int = 50_000


@dataclass(frozen=True, slots=True)
class RoomMembers:
    """A room's membership records, by user and in user id order."""

    records: tuple[MembershipRecord, ...]
    by_user: dict[str, MembershipRecord]
    joined: tuple[str, ...]

    @classmethod
    def of(cls, records: Sequence[MembershipRecord]) -> RoomMembers:
        ordered = tuple(sorted(records, key=lambda r: r.user_id))
        return cls(
            ordered,
            {r.user_id: r for r in ordered},
            tuple(r.user_id for r in ordered if r.membership == Membership.JOIN),
        )


class RoomModel:
    def __init__(self, limits: RoomLimits) -> None:
        self.members: BoundedCache[str, RoomMembers] = BoundedCache("room_members", limits.rooms)
        self.joined_rooms: BoundedCache[str, tuple[str, ...]] = BoundedCache(
            "joined_rooms", limits.users
        )
        self.latest: BoundedCache[str, int] = BoundedCache("room_latest", limits.rooms)
        self.user_memberships: BoundedCache[str, tuple[MembershipRecord, ...]] = BoundedCache(
            "user_memberships", limits.users
        )
        # Rooms never change once created.
        self.rooms: BoundedCache[str, RoomRecord] = BoundedCache("rooms", limits.rooms)
        # (room, type, state key) -> the current state event.
        self.state: BoundedCache[tuple[str, str, str], Event] = BoundedCache(
            "room_state_events", limits.state_events
        )

    def caches(self) -> list[BoundedCache[Any, Any]]:
        return [
            self.members,
            self.joined_rooms,
            self.latest,
            self.user_memberships,
            self.rooms,
            self.state,
        ]

    def clear(self) -> None:
        for cache in self.caches():
            cache.clear()

    def member_events_stored(self, room_ids: Sequence[str], user_ids: Sequence[str]) -> None:
        """Memberships of these users in these rooms changed (or may have)."""
        if not room_ids and not user_ids:
            return
        self.members.guard.moved()
        self.joined_rooms.guard.moved()
        self.user_memberships.guard.moved()
        for room_id in room_ids:
            self.members.pop(room_id)
        for user_id in user_ids:
            self.joined_rooms.pop(user_id)
            self.user_memberships.pop(user_id)


def _member_changes(events: Sequence[NewEvent | Event]) -> tuple[list[str], list[str]]:
    rooms = sorted({e.room_id for e in events if e.type == MEMBER})
    users = sorted({e.state_key for e in events if e.type == MEMBER and e.state_key})
    return rooms, users


class CachedRooms:
    def __init__(
        self, inner: RoomStore, model: RoomModel, watermark: Watermark, feed: ChangeFeed
    ) -> None:
        self._inner = inner
        self._model = model
        self._watermark = watermark
        self._feed = feed
        # A room's timeline and state reads, shared by the /syncs that ask the same at
        # once (N listeners woken by one message: one read, not N).
        self._reads: SharedReads[Event] = SharedReads(model.latest.guard)

    def _publish_memberships(self, events: Sequence[NewEvent | Event]) -> None:
        by_room: dict[str, set[str]] = {}
        for event in events:
            if event.type == MEMBER and event.state_key:
                by_room.setdefault(event.room_id, set()).add(event.state_key)
        for room_id, users in sorted(by_room.items()):
            self._publish_membership(room_id, sorted(users))

    def _publish_membership(self, room_id: str, user_ids: Sequence[str]) -> None:
        self._feed.publish(
            stream="none", pos=0, kind="membership", room_id=room_id, user_ids=user_ids
        )

    async def create_room(self, room: RoomRecord) -> None:
        await self._inner.create_room(room)

    async def get_room(self, room_id: str) -> RoomRecord | None:
        cached = self._model.rooms.get(room_id)
        if cached is not None:
            return cached
        room = await self._inner.get_room(room_id)
        if room is not None:
            self._model.rooms.put(room_id, room)
        return room

    async def append_events(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        latest = self._model.latest
        room_ids = sorted({e.room_id for e in events})
        state = self._model.state
        state_keys = [(e.room_id, e.type, e.state_key) for e in events if e.state_key is not None]
        for room_id in room_ids:
            latest.guard.begin(room_id)  # a fill in flight for the room will be refused
        for key in state_keys:
            state.guard.begin(key)
        stored: list[Event] | None = None
        try:
            stored = await self._watermark.track(
                lambda: self._inner.append_events(events, txn=txn),
                lambda done: (e.stream_pos for e in done),
            )
        finally:
            if stored is None:
                # Failed: it may or may not be stored.
                for room_id in room_ids:
                    latest.pop(room_id)
                for key in state_keys:
                    state.pop(key)
                self._model.member_events_stored(*_member_changes(events))
                self._publish_memberships(events)
            else:
                for event in stored:
                    known = latest.peek(event.room_id)
                    if known is None or known < event.stream_pos:
                        latest.put(event.room_id, event.stream_pos)
                    if event.state_key is not None:
                        # Appends to a room run in order (its lock): the last one wins.
                        state.put((event.room_id, event.type, event.state_key), event)
                self._model.member_events_stored(*_member_changes(stored))
                self._publish_memberships(stored)
            for room_id in room_ids:
                latest.guard.end(room_id, wrote=True)
            for key in state_keys:
                state.guard.end(key, wrote=True)
        return stored

    async def get_event(self, event_id: str) -> Event | None:
        return await self._inner.get_event(event_id)

    async def get_current_state(self, room_id: str) -> list[Event]:
        return await self._reads.share(
            ("state", room_id), room_id, lambda: self._inner.get_current_state(room_id)
        )

    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        key = (room_id, type, state_key)
        state = self._model.state
        cached = state.get(key)
        if cached is not None:
            return cached
        with reading(state, key) as ticket:
            event = await self._inner.get_state_event(room_id, type, state_key)
            if event is not None:
                state.fill(ticket, key, event)
        return event

    async def get_room_events(
        self,
        room_id: str,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        newest_first: bool,
    ) -> list[Event]:
        return await self._reads.share(
            ("events", room_id, after, before, limit, newest_first),
            room_id,
            lambda: self._inner.get_room_events(
                room_id, after=after, before=before, limit=limit, newest_first=newest_first
            ),
        )

    async def get_latest_positions(self, room_ids: Sequence[str]) -> dict[str, int]:
        latest = self._model.latest
        answer: dict[str, int] = {}
        missing: list[str] = []
        for room_id in room_ids:
            pos = latest.get(room_id)
            if pos is None:
                missing.append(room_id)
            else:
                answer[room_id] = pos
        if not missing:
            return answer
        tickets = [latest.guard.begin(room_id) for room_id in missing]
        try:
            found = await self._inner.get_latest_positions(missing)
            for room_id, ticket in zip(missing, tickets, strict=True):
                if room_id in found:
                    latest.fill(ticket, room_id, found[room_id])
        finally:
            for room_id in missing:
                latest.guard.end(room_id, wrote=False)
        answer.update(found)
        return answer

    async def _members(self, room_id: str) -> RoomMembers:
        cached = self._model.members.get(room_id)
        if cached is not None:
            return cached
        with reading(self._model.members, room_id) as ticket:
            members = RoomMembers.of(await self._inner.get_room_members(room_id))
            self._model.members.fill(ticket, room_id, members)
        return members

    async def get_membership(self, room_id: str, user_id: str) -> MembershipRecord | None:
        return (await self._members(room_id)).by_user.get(user_id)

    async def get_user_memberships(self, user_id: str) -> list[MembershipRecord]:
        cache = self._model.user_memberships
        cached = cache.get(user_id)
        if cached is not None:
            return list(cached)
        with reading(cache, user_id) as ticket:
            records = await self._inner.get_user_memberships(user_id)
            cache.fill(ticket, user_id, tuple(records))
        return records

    async def get_room_members(self, room_id: str) -> list[MembershipRecord]:
        return list((await self._members(room_id)).records)

    async def get_joined_members(self, room_id: str) -> list[str]:
        return list((await self._members(room_id)).joined)

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        cached = self._model.joined_rooms.get(user_id)
        if cached is not None:
            return list(cached)
        with reading(self._model.joined_rooms, user_id) as ticket:
            rooms = await self._inner.get_joined_rooms(user_id)
            self._model.joined_rooms.fill(ticket, user_id, tuple(rooms))
        return rooms

    async def forget_room(self, user_id: str, room_id: str) -> None:
        try:
            await self._inner.forget_room(user_id, room_id)
        finally:
            self._model.member_events_stored([room_id], [user_id])
            self._publish_membership(room_id, [user_id])

    async def current_stream_pos(self) -> int:
        return await self._inner.current_stream_pos()
