"""The in-memory backend: the reference semantics of `backends.protocols`.

Volatile and single-process. Everything it hands out is a copy, so callers can never
change its state behind its back (the SQL and Redis backends get that for free).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from backends.errors import Conflict, DuplicateTransaction, NotFound
from backends.protocols import ProfileField, Storage
from homeserver.types import (
    AccessToken,
    AccountDataRecord,
    ClientTxn,
    DeviceRecord,
    Event,
    JsonDict,
    MembershipRecord,
    NewEvent,
    RoomRecord,
    UserRecord,
)


def _copy(content: JsonDict) -> JsonDict:
    return copy.deepcopy(content)


def _copy_event(event: Event) -> Event:
    return replace(
        event,
        content=_copy(event.content),
        unsigned=_copy(event.unsigned),
        prev_content=None if event.prev_content is None else _copy(event.prev_content),
    )


@dataclass
class _State:
    """All of the memory backend's data; the stores are views on one of these."""

    stream_pos: int = 0
    users: dict[str, UserRecord] = field(default_factory=dict)
    devices: dict[tuple[str, str], DeviceRecord] = field(default_factory=dict)
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    device_tokens: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    rooms: dict[str, RoomRecord] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    room_events: dict[str, list[Event]] = field(default_factory=dict)
    state: dict[str, dict[tuple[str, str], Event]] = field(default_factory=dict)
    members: dict[str, dict[str, MembershipRecord]] = field(default_factory=dict)
    user_rooms: dict[str, dict[str, MembershipRecord]] = field(default_factory=dict)
    account_data: dict[tuple[str, str | None, str], AccountDataRecord] = field(default_factory=dict)
    filters: dict[tuple[str, str], JsonDict] = field(default_factory=dict)
    filter_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    txns: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def next_pos(self) -> int:
        self.stream_pos += 1
        return self.stream_pos


class MemoryUserStore:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def create_user(self, user: UserRecord) -> None:
        if user.user_id in self._s.users:
            raise Conflict(f"user {user.user_id} exists")
        self._s.users[user.user_id] = user

    async def get_user(self, user_id: str) -> UserRecord | None:
        return self._s.users.get(user_id)

    async def list_user_ids(self, *, after: str | None, limit: int) -> list[str]:
        ids = sorted(u for u in self._s.users if after is None or u > after)
        return ids[: max(0, limit)]

    async def set_profile_field(self, user_id: str, field: ProfileField, value: str | None) -> None:
        user = self._s.users.get(user_id)
        if user is None:
            raise NotFound(f"user {user_id}")
        if field == "displayname":
            self._s.users[user_id] = replace(user, displayname=value)
        else:
            self._s.users[user_id] = replace(user, avatar_url=value)


class MemoryDeviceStore:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        if token.token in self._s.tokens:
            raise Conflict("token exists")
        key = (device.user_id, device.device_id)
        existing = self._s.devices.get(key)
        if existing is None:
            self._s.devices[key] = device
        elif device.display_name is not None:
            self._s.devices[key] = replace(existing, display_name=device.display_name)
        for old in self._s.device_tokens.pop(key, set()):
            self._s.tokens.pop(old, None)
        self._s.tokens[token.token] = token
        self._s.device_tokens[key] = {token.token}

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        return self._s.devices.get((user_id, device_id))

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        return sorted(
            (d for (uid, _), d in self._s.devices.items() if uid == user_id),
            key=lambda d: d.device_id,
        )

    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        key = (user_id, device_id)
        device = self._s.devices.get(key)
        if device is None:
            raise NotFound(f"device {device_id}")
        self._s.devices[key] = replace(device, display_name=display_name)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        key = (user_id, device_id)
        existed = self._s.devices.pop(key, None) is not None
        for token in self._s.device_tokens.pop(key, set()):
            self._s.tokens.pop(token, None)
        for txn_key in [k for k in self._s.txns if k[0] == user_id and k[1] == device_id]:
            del self._s.txns[txn_key]
        return existed

    async def delete_all_devices(self, user_id: str) -> list[str]:
        ids = sorted(did for (uid, did) in self._s.devices if uid == user_id)
        for device_id in ids:
            await self.delete_device(user_id, device_id)
        return ids

    async def get_token(self, token: str) -> AccessToken | None:
        return self._s.tokens.get(token)


class MemoryRoomStore:
    def __init__(self, state: _State) -> None:
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
            replace(new, content=_copy(new.content), unsigned=_copy(new.unsigned)) for new in events
        ]
        if txn_slot is not None:
            self._s.txns[txn_slot] = events[0].event_id
        written = [self._write(new) for new in copies]
        return [_copy_event(event) for event in written]

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
        return event

    async def get_event(self, event_id: str) -> Event | None:
        event = self._s.events.get(event_id)
        return None if event is None else _copy_event(event)

    async def get_current_state(self, room_id: str) -> list[Event]:
        state = self._s.state.get(room_id, {})
        return [_copy_event(e) for e in sorted(state.values(), key=lambda e: e.stream_pos)]

    async def get_state_event(self, room_id: str, type: str, state_key: str) -> Event | None:
        event = self._s.state.get(room_id, {}).get((type, state_key))
        return None if event is None else _copy_event(event)

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
        return [_copy_event(e) for e in chosen]

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
    """The key of `txn` in `_State.txns` (None without one)."""
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


class MemoryAccountDataStore:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        pos = self._s.next_pos()
        self._s.account_data[(user_id, room_id, type)] = AccountDataRecord(
            user_id=user_id, room_id=room_id, type=type, content=_copy(content), stream_pos=pos
        )
        return pos

    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        record = self._s.account_data.get((user_id, room_id, type))
        return None if record is None else _copy(record.content)

    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        records = [
            replace(r, content=_copy(r.content))
            for (uid, _, _), r in self._s.account_data.items()
            if uid == user_id and r.stream_pos > after
        ]
        return sorted(records, key=lambda r: r.stream_pos)


class MemoryFilterStore:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def create_filter(self, user_id: str, definition: JsonDict) -> str:
        filter_id = str(next(self._s.filter_ids))
        self._s.filters[(user_id, filter_id)] = _copy(definition)
        return filter_id

    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict | None:
        definition = self._s.filters.get((user_id, filter_id))
        return None if definition is None else _copy(definition)


class MemoryTransactionStore:
    def __init__(self, state: _State) -> None:
        self._s = state

    async def get_txn_event(self, user_id: str, device_id: str, txn_key: str) -> str | None:
        return self._s.txns.get((user_id, device_id, txn_key))

    async def put_txn_event(
        self, user_id: str, device_id: str, txn_key: str, event_id: str
    ) -> None:
        self._s.txns.setdefault((user_id, device_id, txn_key), event_id)


def open_memory_storage() -> Storage:
    """A fresh, empty memory backend."""
    from backends.memory_policy import MemoryRateLimitStore, MemoryServerEventStore
    from backends.memory_sessions import (
        MemoryPresenceStore,
        MemorySessionStore,
        MemoryTypingStore,
        SessionState,
    )

    state = _State()
    ephemeral = SessionState()

    async def close() -> None:
        return None

    return Storage(
        description="memory://",
        users=MemoryUserStore(state),
        devices=MemoryDeviceStore(state),
        rooms=MemoryRoomStore(state),
        account_data=MemoryAccountDataStore(state),
        filters=MemoryFilterStore(state),
        txns=MemoryTransactionStore(state),
        sessions=MemorySessionStore(state, ephemeral),
        typing=MemoryTypingStore(state, ephemeral),
        presence=MemoryPresenceStore(state, ephemeral),
        rate_limits=MemoryRateLimitStore(),
        server_events=MemoryServerEventStore(state),
        closer=close,
    )


@asynccontextmanager
async def open_memory(url: str) -> AsyncIterator[Storage]:
    """Opener for `memory://` (the URL carries no options)."""
    storage = open_memory_storage()
    try:
        yield storage
    finally:
        await storage.aclose()
