"""The core every room service shares: per-room locks, building and appending events
(and waking everyone they concern), power levels, membership and the client format.

Every change to a room runs under that room's lock (`hold`), so the auth check and the
append it allows see the same state (within this process). One core, one set of locks:
all the room services of an engine must be built over the same RoomCore.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from backends import Storage
from backends.records import ClientTxn, Event, JsonDict, Membership, NewEvent, RoomRecord
from homeserver.changefeed import ChangeFeed, small
from homeserver.clock import Clock
from homeserver.engine.events import client_event, new_event_id
from homeserver.engine.power_levels import PowerLevels
from homeserver.errors import Forbidden
from homeserver.locks import KeyedLock
from homeserver.types import Requester


class RoomCore:
    def __init__(self, storage: Storage, clock: Clock, feed: ChangeFeed) -> None:
        self._storage = storage
        self._clock = clock
        self._feed = feed
        self._locks = KeyedLock()

    def hold(self, room_id: str) -> AbstractAsyncContextManager[None]:
        """The room's lock: hold it from an auth check to the append it allows."""
        return self._locks.hold(room_id)

    # -- events -----------------------------------------------------------------------

    def new_event(
        self,
        room_id: str,
        sender: str,
        event_type: str,
        content: JsonDict,
        *,
        state_key: str | None = None,
        requester: Requester | None = None,
        txn_id: str | None = None,
        unsigned: JsonDict | None = None,
    ) -> NewEvent:
        return NewEvent(
            event_id=new_event_id(),
            room_id=room_id,
            sender=sender,
            type=event_type,
            content=content,
            origin_server_ts=self._clock.now_ms(),
            state_key=state_key,
            txn_id=txn_id,
            device_id=requester.device_id if requester else None,
            unsigned=unsigned or {},
        )

    async def append(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        stored = await self._storage.rooms.append_events(events, txn=txn)
        await self._notify_rooms(stored)
        return stored

    async def append_member(
        self,
        requester: Requester,
        room_id: str,
        sender: str,
        target: str,
        content: JsonDict,
        *,
        unsigned: JsonDict | None = None,
    ) -> None:
        """Append one m.room.member event (the caller holds the room lock)."""
        await self.append(
            [
                self.new_event(
                    room_id,
                    sender,
                    "m.room.member",
                    content,
                    state_key=target,
                    requester=requester,
                    unsigned=unsigned,
                )
            ]
        )

    async def _notify_rooms(self, events: Sequence[Event]) -> None:
        """Publish one change per room: its joined and invited members (and the target
        of a leave, kick or ban: they must learn about it too), at its newest position,
        with the state keys the events set when they fit."""
        by_room: dict[str, list[Event]] = {}
        for event in events:
            by_room.setdefault(event.room_id, []).append(event)
        for room_id, room_events in by_room.items():
            users: set[str] = set()
            for member in await self._storage.rooms.get_room_members(room_id):
                if member.membership in (Membership.JOIN, Membership.INVITE):
                    users.add(member.user_id)
            users.update(
                e.state_key for e in room_events if e.type == "m.room.member" and e.state_key
            )
            state = [[e.type, e.state_key] for e in room_events if e.state_key is not None]
            self._feed.publish(
                stream="durable",
                pos=max(e.stream_pos for e in room_events),
                kind="room_event",
                room_id=room_id,
                user_ids=users,
                payload=small({"state": state}, {"state": None}) if state else None,
            )

    def format(self, event: Event, requester: Requester | None, **kw: Any) -> JsonDict:
        """The client format of a stored event, as `requester` sees it."""
        return client_event(
            event,
            now_ms=self._clock.now_ms(),
            device_id=requester.device_id if requester else None,
            **kw,
        )

    # -- auth state -------------------------------------------------------------------

    async def power_levels(self, room: RoomRecord) -> PowerLevels:
        event = await self._storage.rooms.get_state_event(room.room_id, "m.room.power_levels", "")
        return PowerLevels.of(event.content if event else None, room.creator)

    async def membership_of(self, room_id: str, user_id: str) -> str | None:
        record = await self._storage.rooms.get_membership(room_id, user_id)
        return None if record is None else record.membership

    async def require_joined(self, room_id: str, user_id: str) -> RoomRecord:
        room = await self._storage.rooms.get_room(room_id)
        if room is None or await self.membership_of(room_id, user_id) != Membership.JOIN:
            raise Forbidden(f"User {user_id} is not in room {room_id}")
        return room

    async def member_content(self, user_id: str, membership: str) -> JsonDict:
        """The content of the user's m.room.member event; a join carries their profile."""
        content: JsonDict = {"membership": membership}
        if membership == Membership.JOIN:
            user = await self._storage.users.get_user(user_id)
            if user is not None:
                if user.displayname is not None:
                    content["displayname"] = user.displayname
                if user.avatar_url is not None:
                    content["avatar_url"] = user.avatar_url
        return content

    async def joined_rooms(self, user_id: str) -> list[str]:
        return await self._storage.rooms.get_joined_rooms(user_id)

    async def share_a_room(self, user_a: str, user_b: str) -> bool:
        """Whether both users are joined to at least one common room."""
        joined_a = set(await self.joined_rooms(user_a))
        return bool(joined_a) and not joined_a.isdisjoint(await self.joined_rooms(user_b))
