"""Wall-clock milliseconds, injectable so tests can drive time with trio's MockClock."""

from __future__ import annotations

import time
from typing import Protocol

import trio


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


class TrioClock:
    """Wall time that moves with trio's clock: under `MockClock` it jumps with it.

    Anchored to the system time at construction, then advanced by `trio.current_time()`.
    Must be used inside `trio.run`.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        self._trio_start = trio.current_time()

    def now_ms(self) -> int:
        return self._start_ms + int((trio.current_time() - self._trio_start) * 1000)
