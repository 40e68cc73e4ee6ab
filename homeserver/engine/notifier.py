"""Wakes waiting /sync requests, and remembers the position of each user's last change.

Race-free use: take `waiter(user_id)` BEFORE reading storage, then wait on it only if
the read found nothing new. A change that lands between the read and the wait has
already set the event the waiter holds.

Every change that /sync reports is notified to everyone it concerns, with its stream
position, right after it is stored. So the notifier knows, without storage, the last
position at which anything changed for a user: `nothing_since(user, since)` is true
when nothing has, and a woken or arriving /sync with nothing new can go back to
waiting without a storage round trip. What the notifier does not know (before
`start_at`, or for users it has forgotten to stay bounded) counts as "maybe": the
caller then reads storage as before. A change stored but not yet notified is no
problem: its notification wakes the waiter, and the /sync that follows reads storage.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import trio

# Users whose last change position is remembered; beyond that, the oldest are
# forgotten (their position counts as the highest one forgotten).
DEFAULT_MAX_USERS = 500_000


class Notifier:
    def __init__(self, max_users: int = DEFAULT_MAX_USERS) -> None:
        self._events: dict[str, trio.Event] = {}
        self._max_users = max_users
        self._last: OrderedDict[str, int] = OrderedDict()
        # Positions at or below `_floor` are "maybe" for everyone: from before
        # start_at, or of forgotten users. None: not started, everything is "maybe".
        self._floor: int | None = None
        self._everyone = 0  # the last change notified to all users
        self._highest = 0

    def start_at(self, pos: int) -> None:
        """Everything up to `pos` (the store's position when the engine starts) was
        there before this notifier: it counts as "maybe" changed for every user."""
        self._floor = max(pos, self._floor or 0)
        self._highest = max(self._highest, pos)

    def waiter(self, user_id: str) -> trio.Event:
        """The event the next change for `user_id` will set."""
        event = self._events.get(user_id)
        if event is None:
            event = self._events[user_id] = trio.Event()
        return event

    def notify(self, user_ids: Iterable[str], pos: int) -> None:
        """A change at stream position `pos` concerns these users: wake their waiters
        (cost: the number of users named)."""
        self._highest = max(self._highest, pos)
        for user_id in user_ids:
            if self._last.get(user_id, 0) < pos:
                self._last[user_id] = pos
                self._last.move_to_end(user_id)
            event = self._events.pop(user_id, None)
            if event is not None:
                event.set()
        while len(self._last) > self._max_users:
            _, forgotten = self._last.popitem(last=False)
            self._floor = max(self._floor or 0, forgotten) if self._floor is not None else None

    def notify_all(self, pos: int) -> None:
        self._highest = max(self._highest, pos)
        self._everyone = max(self._everyone, pos)
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def nothing_since(self, user_id: str, since: int) -> bool:
        """True if, for certain, nothing notified for the user is newer than `since`.
        False means "maybe": read storage. A `since` above every position known (a
        token from a store that lost data) is "maybe" too."""
        floor = self._floor
        if floor is None or since > self._highest:
            return False
        return max(self._last.get(user_id, floor), floor, self._everyone) <= since

    @property
    def waiting_users(self) -> int:
        return len(self._events)
