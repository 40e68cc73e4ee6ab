"""Memory rooms, events, state and memberships."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from backends.errors import Conflict, DuplicateTransaction, NotFound
from backends.memory.state import MemoryState, copy_event, copy_json
from backends.records import ClientTxn, Event, JsonDict, MembershipRecord, NewEvent, RoomRecord


class MemoryRoomStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def create_room(self, room: RoomRecord) -> None:
        if room.room_id in self._s.rooms:
            raise Conflict(f"room {room.room_id} exists")
        self._s.rooms[room.room_id] = room
        self._s.room_events[room.room_id] = []
        self._s.state[room.room_id] = {}
        self._s.members[room.room_id] = {}

    async def get_room(self, room_id: str) -> RoomRecord | None:
        return self._s.rooms.get(room_id)

    async def append_events(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        txn_slot = _txn_slot(txn, events)
        if txn_slot is not None and (recorded := self._s.txns.get(txn_slot)) is not None:
            raise DuplicateTransaction(recorded)
        seen: set[str] = set()
        for new in events:
            if new.room_id not in self._s.rooms:
                raise NotFound(f"room {new.room_id}")
            if new.event_id in self._s.events or new.event_id in seen:
                raise Conflict(f"event {new.event_id} exists")
            seen.add(new.event_id)
        # Everything that can fail (copying) before the first write, so that nothing
        # fails half way: the events and their transaction are stored together or not.
        copies = [
            replace(new, content=copy_json(new.content), unsigned=copy_json(new.unsigned))
            for new in events
        ]
        if txn_slot is not None:
            self._s.txns[txn_slot] = events[0].event_id
        written = [self._write(new) for new in copies]
        return [copy_event(event) for event in written]

    def _write(self, new: NewEvent) -> Event:
        """Store one validated event (its own copy) at the next position."""
        prev_content: JsonDict | None = None
        room_state = self._s.state[new.room_id]
        if new.state_key is not None:
            prev = room_state.get((new.type, new.state_key))
            prev_content = None if prev is None else prev.content
        event = Event.from_new(new, self._s.next_pos(), prev_content)
        self._s.events[event.event_id] = event
        self._s.room_events[event.room_id].append(event)
        if event.state_key is not None:
            room_state[(event.type, event.state_key)] = event
            if event.type == "m.room.member":
                record = MembershipRecord(
                    room_id=event.room_id,
                    user_id=event.state_key,
                    membership=str(event.content.get("membership", "")),
                    event_id=event.event_id,
                    stream_pos=event.stream_pos,
                )
                self._s.members[event.room_id][event.state_key] = record
                self._s.user_rooms.setdefault(event.state_key, {})[event.room_id] = record
                self._index_join(record)
        return event

    async def get_event(self, event_id: str) -> Event | None:
        event = self._s.events.get(event_id)
        return None if event is None else copy_event(event)

    async def get_current_state(self, room_id: str) -> list[Event]:
        state = self._s.state.get(room_id, {})
        return [copy_event(e) for e in sorted(state.values(), key=lambda e: e.stream_pos)]

    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        event = self._s.state.get(room_id, {}).get((type, state_key))
        return None if event is None else copy_event(event)

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
        events = self._s.room_events.get(room_id, [])
        lo = 0 if after is None else _bisect_after(events, after)
        hi = len(events) if before is None else _bisect_after(events, before - 1)
        if newest_first:
            chosen = events[max(lo, hi - limit) : hi][::-1]
        else:
            chosen = events[lo : min(hi, lo + limit)]
        return [copy_event(e) for e in chosen]

    async def get_latest_positions(self, room_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for room_id in room_ids:
            events = self._s.room_events.get(room_id)
            if events:
                out[room_id] = events[-1].stream_pos
        return out

    async def get_membership(self, room_id: str, user_id: str) -> MembershipRecord | None:
        return self._s.members.get(room_id, {}).get(user_id)

    async def get_user_memberships(self, user_id: str) -> list[MembershipRecord]:
        rooms = self._s.user_rooms.get(user_id, {})
        return [rooms[r] for r in sorted(rooms)]

    async def get_room_members(self, room_id: str) -> list[MembershipRecord]:
        members = self._s.members.get(room_id, {})
        return [members[u] for u in sorted(members)]

    async def get_joined_members(self, room_id: str) -> list[str]:
        return sorted(self._s.joined_members.get(room_id, ()))

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        return sorted(self._s.joined_rooms.get(user_id, ()))

    def _index_join(self, record: MembershipRecord) -> None:
        """Keep `joined_members`/`joined_rooms` equal to the "join" memberships."""
        room_id, user_id = record.room_id, record.user_id
        if record.membership == "join":
            self._s.joined_members.setdefault(room_id, set()).add(user_id)
            self._s.joined_rooms.setdefault(user_id, set()).add(room_id)
            return
        members = self._s.joined_members.get(room_id)
        if members is not None:
            members.discard(user_id)
            if not members:
                del self._s.joined_members[room_id]
        rooms = self._s.joined_rooms.get(user_id)
        if rooms is not None:
            rooms.discard(room_id)
            if not rooms:
                del self._s.joined_rooms[user_id]

    async def forget_room(self, user_id: str, room_id: str) -> None:
        record = self._s.members.get(room_id, {}).get(user_id)
        if record is None:
            raise NotFound(f"no membership of {user_id} in {room_id}")
        record = replace(record, forgotten=True)
        self._s.members[room_id][user_id] = record
        self._s.user_rooms[user_id][room_id] = record

    async def current_stream_pos(self) -> int:
        return self._s.stream_pos


def _txn_slot(txn: ClientTxn | None, events: Sequence[NewEvent]) -> tuple[str, str, str] | None:
    """The key of `txn` in `MemoryState.txns` (None without one)."""
    if txn is None:
        return None
    if not events:
        raise ValueError("a client transaction needs an event to record")
    return (txn.user_id, txn.device_id, txn.txn_key)


def _bisect_after(events: list[Event], pos: int) -> int:
    """Index of the first event with stream_pos > pos (events are sorted by position)."""
    lo, hi = 0, len(events)
    while lo < hi:
        mid = (lo + hi) // 2
        if events[mid].stream_pos <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo
