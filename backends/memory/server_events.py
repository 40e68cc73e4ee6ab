"""Memory server-generated events, indexed by target."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from backends.errors import Conflict
from backends.memory.state import MemoryState
from backends.records import NewServerEvent, ServerEvent, ServerEventTarget


@dataclass
class _Index:
    positions: list[int] = field(default_factory=list)
    events: list[ServerEvent] = field(default_factory=list)

    def add(self, event: ServerEvent) -> None:
        self.positions.append(event.stream_pos)
        self.events.append(event)

    def window(self, after: int, upto: int) -> list[ServerEvent]:
        lo = bisect.bisect_right(self.positions, after)
        hi = bisect.bisect_right(self.positions, upto)
        return self.events[lo:hi]


class MemoryServerEventStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state
        self._ids: set[str] = set()
        self._all = _Index()
        self._by_target: dict[tuple[str, str], _Index] = {}

    async def add_server_event(self, event: NewServerEvent) -> ServerEvent:
        if event.event_id in self._ids:
            raise Conflict(f"server event {event.event_id} exists")
        stored = ServerEvent(
            stream_pos=self._s.next_pos(),
            event_id=event.event_id,
            sender=event.sender,
            type=event.type,
            content=copy.deepcopy(event.content),
            origin_server_ts=event.origin_server_ts,
            target_kind=event.target_kind,
            target=event.target,
        )
        self._ids.add(event.event_id)
        if event.target_kind == ServerEventTarget.ALL_USERS:
            self._all.add(stored)
        else:
            assert event.target is not None
            self._by_target.setdefault((event.target_kind, event.target), _Index()).add(stored)
        return replace(stored, content=copy.deepcopy(stored.content))

    async def get_server_events(
        self, user_id: str, room_ids: Sequence[str], *, after: int, upto: int, limit: int
    ) -> list[ServerEvent]:
        found = list(self._all.window(after, upto))
        targets = [(ServerEventTarget.USER, user_id)]
        targets += [(ServerEventTarget.ROOM, room_id) for room_id in set(room_ids)]
        for target in targets:
            index = self._by_target.get(target)
            if index is not None:
                found.extend(index.window(after, upto))
        found.sort(key=lambda e: e.stream_pos)
        return [replace(e, content=copy.deepcopy(e.content)) for e in found[: max(0, limit)]]
