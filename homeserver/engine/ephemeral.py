"""The ephemeral stream: positions for what /sync reports but the store does not order
(typing, published presence). /sync tokens carry its position beside the durable one
(`s<durable>_<ephemeral>`)."""

from __future__ import annotations

from homeserver.clock import Clock


class EphemeralStream:
    """Positions strictly increasing within the process and, seeded from the wall clock
    (a thousand per millisecond), above those handed out before a restart."""

    def __init__(self, clock: Clock) -> None:
        self._pos = clock.now_ms() * 1000

    @property
    def current(self) -> int:
        return self._pos

    def next(self) -> int:
        self._pos += 1
        return self._pos
