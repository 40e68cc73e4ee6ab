"""One structured loop that acts on stored deadlines as they fall due.

It sleeps until the earliest stored deadline (never longer than `max_tick_s`, so
deadlines set by other processes sharing the store are found too), takes what is due
in batches, and hands it on. Its cost per tick is one `next_deadline()` call plus the
work for what expires: nothing grows with the number of live entries.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

from backends import StorageError
from homeserver.clock import Clock

T = TypeVar("T")
log = logging.getLogger("homeserver.deadlines")

BATCH = 1000


class DeadlineLoop(Generic[T]):
    def __init__(
        self,
        name: str,
        clock: Clock,
        take_due: Callable[[int, int], Awaitable[Sequence[T]]],
        next_deadline: Callable[[], Awaitable[int | None]],
        on_due: Callable[[Sequence[T]], Awaitable[None]],
        *,
        max_tick_s: float = 1.0,
    ) -> None:
        self.name = name
        self._clock = clock
        self._take_due = take_due
        self._next_deadline = next_deadline
        self._on_due = on_due
        self._max_tick_s = max_tick_s
        self._wake = trio.Event()
        self._planned_ms: float = math.inf

    def deadline_set(self, deadline_ms: int) -> None:
        """Tell the loop about a deadline set in this process (wakes it if earlier)."""
        if deadline_ms < self._planned_ms:
            self._wake.set()

    async def run_once(self) -> int:
        """Handle everything due now; returns how many entries were handled."""
        handled = 0
        while True:
            due = await self._take_due(self._clock.now_ms(), BATCH)
            if due:
                await self._on_due(due)
                handled += len(due)
            if len(due) < BATCH:
                return handled

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = trio.Event()
            try:
                await self.run_once()
                next_ms = await self._next_deadline()
            except StorageError as exc:
                log.warning("%s: storage error, retrying: %s", self.name, exc)
                next_ms = None
            except Exception:
                # A bug in a handler must not stop expiry for everyone else.
                log.exception("%s: unexpected error, retrying", self.name)
                next_ms = None
            now = self._clock.now_ms()
            wait_s = self._max_tick_s
            if next_ms is not None:
                wait_s = min(wait_s, max(0.0, (next_ms - now) / 1000))
            self._planned_ms = now + wait_s * 1000
            with trio.move_on_after(wait_s):
                await self._wake.wait()
            self._planned_ms = math.inf
