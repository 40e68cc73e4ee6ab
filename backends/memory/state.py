"""The memory backend's data: one `MemoryState` (durable areas) and one `SessionState`
(sessions, typing, presence), shared by the stores, which are views on them.

Deadlines sit in heaps with lazy deletion: a touch pushes a new entry and leaves the
old one to be skipped when popped; the heap is rebuilt when stale entries outnumber
live ones, so memory stays proportional to what is alive and taking expired entries
costs in proportion to what expires.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from backends.records import (
    AccessToken,
    AccountDataRecord,
    DeviceRecord,
    Event,
    JsonDict,
    MembershipRecord,
    PresenceRecord,
    RoomRecord,
    SessionRecord,
    UserRecord,
)


def copy_json(content: JsonDict) -> JsonDict:
    """A deep copy: nothing a caller holds shares state with the store."""
    return copy.deepcopy(content)


def copy_event(event: Event) -> Event:
    return replace(
        event,
        content=copy_json(event.content),
        unsigned=copy_json(event.unsigned),
        prev_content=None if event.prev_content is None else copy_json(event.prev_content),
    )


@dataclass
class MemoryState:
    """The durable areas of the memory backend; the stores are views on one of these."""

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
    # The "join" memberships only, kept by the room store as memberships change.
    joined_members: dict[str, set[str]] = field(default_factory=dict)
    joined_rooms: dict[str, set[str]] = field(default_factory=dict)
    account_data: dict[tuple[str, str | None, str], AccountDataRecord] = field(default_factory=dict)
    filters: dict[tuple[str, str], JsonDict] = field(default_factory=dict)
    filter_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    txns: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def next_pos(self) -> int:
        self.stream_pos += 1
        return self.stream_pos


K = TypeVar("K", str, tuple[str, str])


@dataclass
class Deadlines(Generic[K]):
    """Live deadlines by key, plus a heap of (deadline, key) with lazy deletion."""

    live: dict[K, int] = field(default_factory=dict)
    heap: list[tuple[int, K]] = field(default_factory=list)

    def set(self, key: K, deadline: int) -> None:
        if self.live.get(key) == deadline:
            return
        self.live[key] = deadline
        heapq.heappush(self.heap, (deadline, key))
        if len(self.heap) > 2 * len(self.live) + 1024:
            self.heap = [(d, k) for k, d in self.live.items()]
            heapq.heapify(self.heap)

    def discard(self, key: K) -> None:
        self.live.pop(key, None)

    def earliest(self) -> int | None:
        while self.heap:
            deadline, key = self.heap[0]
            if self.live.get(key) == deadline:
                return deadline
            heapq.heappop(self.heap)
        return None

    def pop_due(self, now_ms: int, limit: int) -> list[K]:
        due: list[K] = []
        while self.heap and len(due) < limit:
            deadline, key = self.heap[0]
            if deadline > now_ms:
                break
            heapq.heappop(self.heap)
            if self.live.get(key) == deadline:
                del self.live[key]
                due.append(key)
        return due


@dataclass
class SessionState:
    """Sessions, typing and presence (volatile in every backend but SQL)."""

    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    active: dict[tuple[str, str], str] = field(default_factory=dict)
    by_user: dict[str, set[str]] = field(default_factory=dict)
    session_deadlines: Deadlines[str] = field(default_factory=Deadlines)
    # typing: (room_id, user_id) -> session_id; deadlines keyed the same way
    typing: dict[tuple[str, str], str] = field(default_factory=dict)
    typing_deadlines: Deadlines[tuple[str, str]] = field(default_factory=Deadlines)
    typing_by_session: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    typing_by_room: dict[str, set[str]] = field(default_factory=dict)
    typing_pos: dict[str, int] = field(default_factory=dict)
    presence: dict[str, PresenceRecord] = field(default_factory=dict)
