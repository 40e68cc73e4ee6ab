"""Reads shared while in flight: callers that ask the store the same question at once
get one read's answer.

A message wakes every /sync of the room's members at once, and each asks the store
the same two questions (the room's timeline since the same token, up to the same
position, and its current state). `SharedReads.share(key, room_id, read)` runs the
first caller's read; a caller asking the same `key` while it is in flight waits for
it and gets (a copy of) its answer, instead of reading too.

Only if nothing changed in between: a caller joins a read in flight only if no write
to the room (an append, as `CachedRooms.append_events` reports to the room's guard)
finished since that read began. A write that finished before the caller asked is thus
always in its answer, as it would be in its own read; a write still in flight may or
may not be, as with its own read. Nothing is kept once the read is over: this is not a
cache, and it costs nothing when callers do not overlap.

The read runs in the first caller's task. If that caller is cancelled (its client went
away), the callers waiting on it read for themselves; an error of the read is every
waiting caller's error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from homeserver.readmodel.cache import FillGuard, Ticket

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    ticket: Ticket
    done: trio.Event = field(default_factory=trio.Event)
    result: list[T] | None = None
    error: Exception | None = None
    joined: int = 0


class SharedReads(Generic[T]):
    def __init__(self, guard: FillGuard) -> None:
        self._guard = guard
        self._flights: dict[Hashable, _Flight[T]] = {}
        self.shared = 0  # callers answered by another caller's read (for tests, metrics)

    async def share(
        self, key: Hashable, room_id: str, read: Callable[[], Awaitable[list[T]]]
    ) -> list[T]:
        flight = self._flights.get(key)
        if flight is not None and self._guard.still(flight.ticket, room_id):
            flight.joined += 1
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.result is not None:
                self.shared += 1
                return list(flight.result)
            # Its caller was cancelled before the answer came: read ourselves.
        return await self._fly(key, room_id, read)

    async def _fly(
        self, key: Hashable, room_id: str, read: Callable[[], Awaitable[list[T]]]
    ) -> list[T]:
        flight: _Flight[T] = _Flight(self._guard.begin(room_id))
        self._flights[key] = flight
        try:
            flight.result = await read()
            return list(flight.result) if flight.joined else flight.result
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            self._guard.end(room_id, wrote=False)
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()
