"""Reading a room: its current state, its members, single events and pages of history.

Joined members read everything. A member who left (or was kicked or banned) after
being joined reads up to the event that ended their join; anyone else reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends import Storage
from backends.records import Event, JsonDict, Membership
from homeserver.engine.rooms.core import RoomCore
from homeserver.errors import Forbidden, NotFoundError
from homeserver.types import Requester


@dataclass(frozen=True)
class MessagesPage:
    chunk: list[Event]
    start: int
    end: int | None
    state: list[Event]


def ended_a_join(membership_event: Event | None) -> bool:
    """Whether this membership event replaced a join: its target was in the room until
    then (a leave after an invite or a knock, or a ban after a leave, was not).

    Conservative: a user who joined, left and was banned later reads no history.
    """
    if membership_event is None or membership_event.prev_content is None:
        return False
    return membership_event.prev_content.get("membership") == Membership.JOIN


class RoomHistory:
    def __init__(self, core: RoomCore, storage: Storage) -> None:
        self._core = core
        self._storage = storage

    async def _read_cap(self, room_id: str, user_id: str) -> int | None:
        """How far the user may read: None for all (joined), else up to their leave.

        Only a leave or ban that ended a join opens the history up to it: a rejected
        invite, or a ban of someone who never joined, must not.
        """
        record = await self._storage.rooms.get_membership(room_id, user_id)
        if record is None or record.forgotten:
            raise Forbidden(f"User {user_id} is not in room {room_id}")
        if record.membership == Membership.JOIN:
            return None
        if record.membership in (Membership.LEAVE, Membership.BAN) and ended_a_join(
            await self._storage.rooms.get_event(record.event_id)
        ):
            return record.stream_pos
        raise Forbidden(f"User {user_id} is not in room {room_id}")

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> Event:
        cap = await self._read_cap(room_id, requester.user_id)
        event = await self._storage.rooms.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or (cap is not None and event.stream_pos > cap)
        ):
            raise NotFoundError("Event not found")
        return event

    async def get_state(self, requester: Requester, room_id: str) -> list[Event]:
        await self._core.require_joined(room_id, requester.user_id)
        return await self._storage.rooms.get_current_state(room_id)

    async def get_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str
    ) -> Event:
        await self._core.require_joined(room_id, requester.user_id)
        event = await self._storage.rooms.get_state_event(room_id, event_type, state_key)
        if event is None:
            raise NotFoundError("Event not found")
        return event

    async def members(
        self,
        requester: Requester,
        room_id: str,
        *,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[Event]:
        await self._core.require_joined(room_id, requester.user_id)
        out = []
        for event in await self._storage.rooms.get_current_state(room_id):
            if event.type != "m.room.member":
                continue
            value = event.content.get("membership")
            if membership is not None and value != membership:
                continue
            if not_membership is not None and value == not_membership:
                continue
            out.append(event)
        return out

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, JsonDict]:
        events = await self.members(requester, room_id, membership=Membership.JOIN)
        out: dict[str, JsonDict] = {}
        for event in events:
            profile: JsonDict = {}
            for src, dst in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                if isinstance(event.content.get(src), str):
                    profile[dst] = event.content[src]
            out[event.state_key or ""] = profile
        return out

    async def messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        from_pos: int | None,
        to_pos: int | None,
        backwards: bool,
        limit: int,
    ) -> MessagesPage:
        """One page of history. Tokens are positions: token P is the point just after
        the event at stream position P."""
        cap = await self._read_cap(room_id, requester.user_id)
        if from_pos is None:
            from_pos = (await self._storage.rooms.current_stream_pos()) if backwards else 0
        if cap is not None:
            from_pos = min(from_pos, cap)
        if backwards:
            events = await self._storage.rooms.get_room_events(
                room_id, after=to_pos, before=from_pos + 1, limit=limit, newest_first=True
            )
            end = events[-1].stream_pos - 1 if len(events) == limit and events else None
        else:
            upper = to_pos + 1 if to_pos is not None else None
            if cap is not None:
                upper = min(upper, cap + 1) if upper is not None else cap + 1
            events = await self._storage.rooms.get_room_events(
                room_id, after=from_pos, before=upper, limit=limit, newest_first=False
            )
            end = events[-1].stream_pos if len(events) == limit and events else None
        return MessagesPage(chunk=events, start=from_pos, end=end, state=[])
