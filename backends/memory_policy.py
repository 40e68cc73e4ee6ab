"""Memory implementations of rate-limit buckets and server events."""

from __future__ import annotations

import bisect
import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from backends.errors import Conflict
from homeserver.types import NewServerEvent, ServerEvent, ServerEventTarget

if TYPE_CHECKING:
    from backends.memory import _State

_PRUNE_AT = 10_000
NEVER_MS = 2**31 - 1


def refill(tokens: float, updated_ms: int, now_ms: int, capacity: float, rate: float) -> float:
    elapsed_s = max(0, now_ms - updated_ms) / 1000
    return min(capacity, tokens + elapsed_s * rate)


def wait_ms(tokens: float, cost: float, capacity: float, rate: float) -> int:
    """Milliseconds until `cost` tokens are there (or the bucket is full, if cost
    exceeds the capacity)."""
    needed = min(cost, capacity) - tokens
    if rate <= 0:
        return NEVER_MS
    return max(1, math.ceil(needed / rate * 1000))


class MemoryRateLimitStore:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, int, float, float]] = {}

    async def take_token(
        self, key: str, *, capacity: float, refill_per_s: float, now_ms: int, cost: float = 1.0
    ) -> int:
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens, updated = capacity, now_ms
        else:
            tokens = refill(bucket[0], bucket[1], now_ms, capacity, refill_per_s)
            # A clock that went back must not earn the same time twice.
            updated = max(bucket[1], now_ms)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, updated, capacity, refill_per_s)
            if len(self._buckets) > _PRUNE_AT:
                self._prune(now_ms)
            return 0
        self._buckets[key] = (tokens, updated, capacity, refill_per_s)
        return wait_ms(tokens, cost, capacity, refill_per_s)

    def _prune(self, now_ms: int) -> None:
        """Forget buckets that are full again (they behave exactly like new ones)."""
        for key, (tokens, updated, capacity, rate) in list(self._buckets.items()):
            if refill(tokens, updated, now_ms, capacity, rate) >= capacity:
                del self._buckets[key]


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
    def __init__(self, state: _State) -> None:
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
