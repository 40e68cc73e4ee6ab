"""Wakes waiting /sync requests, and remembers the position of each user's last change.

Race-free use: take `waiter(user_id)` BEFORE reading storage, then wait on it only if
the read found nothing new. A change that lands between the read and the wait has
already set the event the waiter holds.

Every change that /sync reports is notified to everyone it concerns, with its stream
position, right after it is stored. So the notifier knows, without storage, the last
positions (durable and ephemeral) at which anything changed for a user:
`durable_quiet` / `ephemeral_quiet` are true when nothing has, and a woken or arriving
/sync with nothing new can go back to waiting without a storage round trip. What the
notifier does not know (before `start_at`, or for users it has forgotten to stay
bounded) counts as "maybe": the caller then reads storage as before. A change stored
but not yet notified is no problem: its notification wakes the waiter, and the /sync
that follows reads storage. A /sync that answers only ephemeral news keeps its token's
durable position, so a durable change not yet notified is still ahead of it.

The notifier learns of changes from the change feed (`homeserver/changefeed.py`): it
is a `FeedConsumer`, subscribed by the engine. A durable change wakes and records its
users (`notify`), an ephemeral one likewise on the ephemeral stream
(`notify_ephemeral`), one for everyone wakes everybody (`notify_all`); invalidations
(stream "none") are not its business. A gap in the feed (changes lost) makes every user
"maybe" for both streams, whatever their position, and wakes every waiter, until the
engine settles it (`settle`) with the store's position read after the gap: whatever
was lost is at or below it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import trio

from homeserver.changefeed import Change, FeedConsumer

# Users whose last change position is remembered; beyond that, the oldest are
# forgotten (their position counts as the highest one forgotten).
DEFAULT_MAX_USERS = 500_000


class Notifier(FeedConsumer):
    def __init__(self, max_users: int = DEFAULT_MAX_USERS) -> None:
        super().__init__()
        self._events: dict[str, trio.Event] = {}
        self._max_users = max_users
        # user -> (last durable position, last ephemeral position) notified.
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()
        # Positions at or below the floors are "maybe" for everyone: from before
        # start_at, or of forgotten users. None: not started, everything is "maybe".
        self._floor: tuple[int, int] | None = None
        # The last (durable, ephemeral) changes notified to all users.
        self._everyone = (0, 0)
        self._highest = (0, 0)
        # Gaps in the feed, and how many of them a read of the store has settled: while
        # one is unsettled, everything is "maybe".
        self._gaps = 0
        self._settled = 0
        self._gap_seen = trio.Event()

    def start_at(self, pos: int, ephemeral: int) -> None:
        """Everything up to `pos` (the store's position when the engine starts) and
        `ephemeral` (the ephemeral stream's) was there before this notifier: it counts
        as "maybe" changed for every user."""
        old = self._floor or (0, 0)
        self._floor = (max(pos, old[0]), max(ephemeral, old[1]))
        self._highest = (max(self._highest[0], pos), max(self._highest[1], ephemeral))

    def waiter(self, user_id: str) -> trio.Event:
        """The event the next change for `user_id` will set."""
        event = self._events.get(user_id)
        if event is None:
            event = self._events[user_id] = trio.Event()
        return event

    def notify(self, user_ids: Iterable[str], pos: int) -> None:
        """A change at durable stream position `pos` concerns these users: wake their
        waiters (cost: the number of users named)."""
        self._record(user_ids, pos, 0)

    def notify_ephemeral(self, user_ids: Iterable[str], pos: int) -> None:
        """The same for a change at ephemeral stream position `pos` (typing)."""
        self._record(user_ids, 0, pos)

    def _record(self, user_ids: Iterable[str], pos: int, eph: int) -> None:
        self._highest = (max(self._highest[0], pos), max(self._highest[1], eph))
        last = self._last
        for user_id in user_ids:
            known = last.get(user_id)
            if known is None:
                last[user_id] = (pos, eph)
            else:
                last[user_id] = (max(known[0], pos), max(known[1], eph))
                last.move_to_end(user_id)
            event = self._events.pop(user_id, None)
            if event is not None:
                event.set()
        while len(last) > self._max_users:
            _, forgotten = last.popitem(last=False)
            if self._floor is not None:
                self._floor = (
                    max(self._floor[0], forgotten[0]),
                    max(self._floor[1], forgotten[1]),
                )

    def notify_all(self, pos: int) -> None:
        """A change at durable position `pos` concerns every user."""
        self._notify_everyone(pos, 0)

    def _notify_everyone(self, pos: int, eph: int) -> None:
        self._highest = (max(self._highest[0], pos), max(self._highest[1], eph))
        self._everyone = (max(self._everyone[0], pos), max(self._everyone[1], eph))
        self._wake_all()

    def _wake_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    # -- the change feed ------------------------------------------------------------

    def apply(self, change: Change) -> None:
        if change.stream == "none":
            return
        durable = change.stream == "durable"
        if change.everyone:
            self._notify_everyone(change.pos if durable else 0, 0 if durable else change.pos)
        elif durable:
            self.notify(change.user_ids, change.pos)
        else:
            self.notify_ephemeral(change.user_ids, change.pos)

    def on_gap(self, origin: str | None) -> None:
        """Changes were lost: nobody's last position is known any more. Everything
        is "maybe" until `settle`, and every waiting /sync reads the store."""
        self._gaps += 1
        if self._floor is not None:
            self._floor = (
                max(self._floor[0], self._highest[0]),
                max(self._floor[1], self._highest[1]),
            )
        self._gap_seen.set()
        self._wake_all()

    @property
    def gaps(self) -> int:
        """How many gaps the feed has had."""
        return self._gaps

    @property
    def unsettled(self) -> bool:
        return self._settled < self._gaps

    async def wait_unsettled(self) -> int:
        """Until a gap is not settled; returns the number of gaps so far (to pass to
        `settle` once the store's position is read)."""
        while not self.unsettled:
            if self._gap_seen.is_set():
                self._gap_seen = trio.Event()
            await self._gap_seen.wait()
        return self._gaps

    def settle(self, gaps: int, pos: int, ephemeral: int) -> None:
        """The store's position `pos` (and the ephemeral stream's) read after the first
        `gaps` gaps: what they lost is at or below it, and counts as "maybe" for every
        user from now on (as at `start_at`)."""
        self.start_at(pos, ephemeral)
        self._settled = max(self._settled, min(gaps, self._gaps))

    def durable_quiet(self, user_id: str, since: int) -> bool:
        """True if, for certain, no durable change notified for the user is newer than
        the durable position `since`. False means "maybe": read storage. A position
        above every one known (a token from a store that lost data) is "maybe" too."""
        floor = self._floor
        if floor is None or self.unsettled or since > self._highest[0]:
            return False
        pos = self._last.get(user_id, floor)[0]
        return max(pos, floor[0], self._everyone[0]) <= since

    def ephemeral_quiet(self, user_id: str, since: int | None) -> bool:
        """The same for the ephemeral stream (None: a token without that position)."""
        floor = self._floor
        if floor is None or since is None or self.unsettled or since > self._highest[1]:
            return False
        return max(self._last.get(user_id, floor)[1], floor[1], self._everyone[1]) <= since

    @property
    def waiting_users(self) -> int:
        return len(self._events)
