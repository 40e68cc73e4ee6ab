"""The bounded map every cache of the read model is made of, and its fill guard.

A cache is filled on a miss (read through: read the store, then remember the answer)
and kept current by the writes that pass through the read model. A fill races with
writes: a read that started before a write committed may come back with the old
answer after the write has updated or dropped the entry, and two writes of one key
may come back in the other order. The guard closes those races: take
`guard.begin(key)` before going to the store, `fill` with the ticket afterwards (it
keeps the answer only if no write of that key, or of everything, finished in
between), then `guard.end(key, wrote=...)`. A refused fill costs one more read later,
never a stale entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    refused_fills: int = 0


# The key of a read that does not know beforehand which key it will find (a lookup by
# another index). Its fill of a key is refused by a write of that key that finished
# while it was in flight (the guard notes which keys those were), or by `moved()`.
ANY_KEY: object = object()


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken by a read or a write before it goes to the store."""

    everything: int
    key: int


class FillGuard:
    """Counts writes, globally (a write that drops many entries) and per key (only for
    keys with a read or a write in flight, so it stays as small as the work going on).
    An answer found by an operation is kept only if no write to its key, and no write
    to everything, finished while it was in flight."""

    __slots__ = ("_any_written", "_busy", "_everything", "_versions")

    def __init__(self) -> None:
        self._everything = 0
        self._versions: dict[object, int] = {}
        self._busy: dict[object, int] = {}
        # While reads on ANY_KEY are in flight: each key written meanwhile, with the
        # ANY_KEY version its write finished at (that version counts those writes).
        self._any_written: dict[object, int] = {}

    def begin(self, key: object) -> Ticket:
        self._busy[key] = self._busy.get(key, 0) + 1
        return Ticket(self._everything, self._versions.get(key, 0))

    def still(self, ticket: Ticket, key: object) -> bool:
        return ticket == Ticket(self._everything, self._versions.get(key, 0))

    def still_any(self, ticket: Ticket, key: object) -> bool:
        """For a read on ANY_KEY that found `key`: no write of `key`, and no write of
        everything, finished since it took `ticket`."""
        return ticket.everything == self._everything and self._any_written.get(key, 0) <= ticket.key

    def end(self, key: object, *, wrote: bool) -> None:
        """The operation that began on `key` is over (`wrote`: it changed the store).
        A write is also noted for the reads in flight on `ANY_KEY`."""
        if wrote:
            self._versions[key] = self._versions.get(key, 0) + 1
            if ANY_KEY in self._busy and key is not ANY_KEY:
                version = self._versions.get(ANY_KEY, 0) + 1
                self._versions[ANY_KEY] = version
                self._any_written[key] = version
        busy = self._busy[key] - 1
        if busy:
            self._busy[key] = busy
        else:
            del self._busy[key]
            self._versions.pop(key, None)
            if key is ANY_KEY:
                self._any_written.clear()

    def wrote(self, key: object) -> None:
        """A write of `key` that took no ticket (one of many a bulk write reports)
        finished: the reads of it in flight, or on ANY_KEY, will not fill."""
        self.begin(key)
        self.end(key, wrote=True)

    def moved(self) -> None:
        """A write changed (or may have changed) any number of entries."""
        self._everything += 1


class BoundedCache(Generic[K, V]):
    """A least-recently-used map of at most `max_entries` entries. `on_evict` hears of
    every entry dropped to make room (not of `pop`), so indexes can follow."""

    def __init__(
        self, name: str, max_entries: int, on_evict: Callable[[K, V], None] | None = None
    ) -> None:
        if max_entries < 1:
            raise ValueError("a cache holds at least one entry")
        self.name = name
        self.max_entries = max_entries
        self.guard = FillGuard()
        self.stats = CacheStats()
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._on_evict = on_evict

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return value

    def peek(self, key: K) -> V | None:
        """The entry without counting a hit or refreshing its age."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Set the entry (a write that knows the new value)."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            old_key, old_value = self._entries.popitem(last=False)
            self.stats.evictions += 1
            if self._on_evict is not None:
                self._on_evict(old_key, old_value)

    def fill(self, ticket: Ticket, key: K, value: V, *, guarded_by: object = None) -> bool:
        """Remember what an operation that took `ticket` (on `key`, or on `guarded_by`
        such as ANY_KEY) found or wrote, unless a write came between; then the entry is
        dropped (a later read finds out). The caller still ends its operation with
        `guard.end`."""
        if guarded_by is ANY_KEY:
            kept = self.guard.still_any(ticket, key)
        else:
            kept = self.guard.still(ticket, key if guarded_by is None else guarded_by)
        if not kept:
            self.stats.refused_fills += 1
            self._entries.pop(key, None)
            return False
        self.put(key, value)
        return True

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self.guard.moved()


@contextmanager
def reading(cache: BoundedCache[K, V], key: object) -> Iterator[Ticket]:
    """Around a read through: fill with the ticket inside the block."""
    ticket = cache.guard.begin(key)
    try:
        yield ticket
    finally:
        cache.guard.end(key, wrote=False)


@contextmanager
def writing(cache: BoundedCache[K, V], key: K) -> Iterator[Ticket]:
    """Around a write of one key: inside the block, after the store answered, `fill`
    with what was stored (or `pop`). If the block fails, the entry is dropped: the
    store may or may not have taken the write."""
    ticket = cache.guard.begin(key)
    try:
        yield ticket
    except BaseException:
        cache.pop(key)
        raise
    finally:
        cache.guard.end(key, wrote=True)
