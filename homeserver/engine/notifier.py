"""Wakes waiting /sync requests. Knows nothing of storage.

Race-free use: take `waiter(user_id)` BEFORE reading storage, then wait on it only if
the read found nothing new. A change that lands between the read and the wait has
already set the event the waiter holds.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio


class Notifier:
    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}

    def waiter(self, user_id: str) -> trio.Event:
        """The event the next change for `user_id` will set."""
        event = self._events.get(user_id)
        if event is None:
            event = self._events[user_id] = trio.Event()
        return event

    def notify(self, user_ids: Iterable[str]) -> None:
        """Wake every waiter of these users (cost: the number of users named)."""
        for user_id in user_ids:
            event = self._events.pop(user_id, None)
            if event is not None:
                event.set()

    def notify_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    @property
    def waiting_users(self) -> int:
        return len(self._events)
