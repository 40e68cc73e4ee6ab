"""How far the stream is safe to read, without asking the store.

Every write that takes stream positions passes through the read model. `Watermark`
counts them: a write marks, when it starts, the highest position returned so far
(every position it will be given is above it: those at or below are committed), and
when it returns, its own positions. `safe()` is then a position at or below which
every position is committed *and* returned to its writer (so whatever the writer does
synchronously on return is done): the lowest mark of the writes in flight, or the
highest returned when none is. A /sync reads up to it instead of the store's counter.

A write that fails may still be stored (a store timeout gives up on a transaction the
database may yet commit). Its mark stays until a write that started after the failure
returns having taken positions: every store orders position-taking writes (a counter
row lock, SQLite's one writer, a Redis script, one thread), so by then the failed one
has committed or rolled back. Until then, what was learnt about the stream without
the store ("no server event since P") is in doubt (`certain_from`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class Watermark:
    def __init__(self) -> None:
        self._returned: int | None = None  # None: not started
        self._marks: Counter[int] = Counter()
        self._begun = 0
        self._doubt_after: int | None = None  # begin count at the last failure
        self._held: list[int] = []  # marks of failed writes, kept until the doubt clears
        self.certain_from = 0
        self.last_server_event = 0

    def start_at(self, pos: int) -> None:
        """The store's position when the engine starts: everything up to it is there."""
        self._returned = max(pos, self._returned or 0)
        self.certain_from = max(self.certain_from, pos)
        self.last_server_event = max(self.last_server_event, pos)

    def safe(self) -> int | None:
        if self._returned is None:
            return None
        if self._marks:
            return min(self._returned, min(self._marks))
        return self._returned

    async def track(
        self, write: Callable[[], Awaitable[T]], positions: Callable[[T], Iterable[int]]
    ) -> T:
        """Run a write that takes positions (`positions` reads them from its result)."""
        mark = self._returned or 0
        self._begun += 1
        begun = self._begun
        self._marks[mark] += 1
        try:
            result = await write()
        except BaseException:
            self._doubt_after = self._begun
            self.certain_from = 2**63
            self._held.append(mark)  # its mark stays (see the module docstring)
            raise
        self._release(mark)
        taken = max(positions(result), default=None)
        if taken is not None and self._returned is not None:
            self._returned = max(self._returned, taken)
        # Only a write that took positions went through the store's ordering.
        if taken is not None and self._doubt_after is not None and begun > self._doubt_after:
            self._doubt_after = None
            self.certain_from = self._returned or 0
            held, self._held = self._held, []
            for old in held:
                self._release(old)
        return result

    def _release(self, mark: int) -> None:
        self._marks[mark] -= 1
        if not self._marks[mark]:
            del self._marks[mark]
