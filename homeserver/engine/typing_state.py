"""Typing notifications: per session, capped in time, ended with their session.

Typing is ephemeral (the spec never persists it), so it lives in this process only and
is never a storage write: who types in which room, for which session, until when, and
each room's last change, positioned in the ephemeral stream (`engine/ephemeral.py`),
which /sync tokens carry beside the durable stream position. After a restart nobody types.
Within one process: several server processes sharing a store do not share typing yet
(the scale-out issue's change feed will carry it).

Bounded: at most `max_rooms` rooms' last changes are kept; the oldest are forgotten.
Nobody types in a forgotten room (typing ends within the timeout cap, and its end is
a newer change), so a /sync learns nothing from it. Typing shown to a client when the
server restarts stays shown until that client's own timeout: the change that ended it
was never made.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from backends import Storage
from backends.records import Membership
from homeserver.changefeed import ChangeFeed
from homeserver.clock import Clock
from homeserver.engine.deadlines import DeadlineLoop
from homeserver.engine.ephemeral import EphemeralStream
from homeserver.errors import Forbidden
from homeserver.types import Requester

DEFAULT_MAX_ROOMS = 100_000


@dataclass(frozen=True, slots=True)
class TypingNow:
    """A room's typing users after its last change, at that change's ephemeral
    position."""

    room_id: str
    user_ids: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class _Entry:
    owner: str  # the session (or device) the typing belongs to
    expires_at_ms: int


class TypingService:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        feed: ChangeFeed,
        stream: EphemeralStream,
        *,
        timeout_cap_ms: int,
        max_rooms: int = DEFAULT_MAX_ROOMS,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._feed = feed
        self.timeout_cap_ms = timeout_cap_ms
        self.stream = stream
        self._max_rooms = max_rooms
        self._typing: dict[str, dict[str, _Entry]] = {}
        self._by_owner: dict[str, set[tuple[str, str]]] = {}
        self._deadlines: list[tuple[int, str, str]] = []  # (expires, room, user)
        self._changes: OrderedDict[str, TypingNow] = OrderedDict()
        self.expiry = DeadlineLoop(
            "typing-expiry", clock, self._take_expired, self._next_deadline, self.publish
        )

    # -- what /sync reads -----------------------------------------------------------------

    def changes_since(
        self, room_ids: Iterable[str], since: int | None
    ) -> tuple[list[TypingNow], int]:
        """The rooms among `room_ids` whose typing changed after `since` (None: every
        room where somebody types), and the stream position this answer covers."""
        upto = self.stream.current
        found: list[TypingNow] = []
        for room_id in room_ids:
            change = self._changes.get(room_id)
            if since is None:
                if change is not None and change.user_ids:
                    found.append(change)
            elif change is not None and change.pos > since:
                found.append(change)
        return found, upto

    def last_change(self, room_id: str) -> TypingNow | None:
        """The room's last typing change remembered, or None."""
        return self._changes.get(room_id)

    def typing_in(self, room_id: str) -> tuple[str, ...]:
        """Who types in the room now (sorted)."""
        return tuple(sorted(self._typing.get(room_id, {})))

    # -- changes --------------------------------------------------------------------------

    async def publish(self, changes: Sequence[TypingNow]) -> None:
        """Wake the joined members of every room whose typing set changed."""
        latest: dict[str, int] = {}
        for change in changes:
            latest[change.room_id] = max(latest.get(change.room_id, 0), change.pos)
        for room_id, pos in latest.items():
            members = await self._storage.rooms.get_joined_members(room_id)
            self._feed.publish(
                stream="ephemeral", pos=pos, kind="typing", room_id=room_id, user_ids=members
            )

    async def set_typing(
        self, requester: Requester, room_id: str, user_id: str, typing: bool, timeout_ms: int
    ) -> None:
        if user_id != requester.user_id:
            raise Forbidden("Cannot set typing for another user")
        membership = await self._storage.rooms.get_membership(room_id, user_id)
        if membership is None or membership.membership != Membership.JOIN:
            raise Forbidden(f"User {user_id} is not in room {room_id}")
        if typing:
            # Without sessions (disabled by the operator) typing belongs to the device
            # and ends only by its timeout or typing: false.
            owner = requester.session_id or f"device:{user_id}:{requester.device_id}"
            expires = self._clock.now_ms() + min(timeout_ms, self.timeout_cap_ms)
            change = self._set(room_id, user_id, owner, expires)
            self.expiry.deadline_set(expires)
        else:
            change = self._clear([(room_id, user_id)])
        await self.publish(change)

    async def end_session(self, session_id: str) -> None:
        await self.publish(self._clear(sorted(self._by_owner.get(session_id, ()))))

    # -- the state (synchronous: each change is whole before anything else runs) ---------

    def _set(self, room_id: str, user_id: str, owner: str, expires: int) -> list[TypingNow]:
        room = self._typing.setdefault(room_id, {})
        previous = room.get(user_id)
        if previous is not None:
            self._unown(previous.owner, room_id, user_id)
        room[user_id] = _Entry(owner, expires)
        self._by_owner.setdefault(owner, set()).add((room_id, user_id))
        heapq.heappush(self._deadlines, (expires, room_id, user_id))
        if previous is not None:
            return []  # only the deadline (or the session) moved
        return [self._changed(room_id)]

    def _clear(self, keys: Iterable[tuple[str, str]]) -> list[TypingNow]:
        rooms: set[str] = set()
        for room_id, user_id in keys:
            room = self._typing.get(room_id)
            entry = room.pop(user_id, None) if room is not None else None
            if entry is None:
                continue
            self._unown(entry.owner, room_id, user_id)
            if room is not None and not room:
                del self._typing[room_id]
            rooms.add(room_id)
        return [self._changed(room_id) for room_id in sorted(rooms)]

    def _unown(self, owner: str, room_id: str, user_id: str) -> None:
        keys = self._by_owner.get(owner)
        if keys is not None:
            keys.discard((room_id, user_id))
            if not keys:
                del self._by_owner[owner]

    def _changed(self, room_id: str) -> TypingNow:
        change = TypingNow(room_id, self.typing_in(room_id), self.stream.next())
        self._changes[room_id] = change
        self._changes.move_to_end(room_id)
        while len(self._changes) > self._max_rooms:
            self._changes.popitem(last=False)
        return change

    # -- expiry ---------------------------------------------------------------------------

    async def _take_expired(self, now_ms: int, limit: int) -> list[TypingNow]:
        due: list[tuple[str, str]] = []
        while self._deadlines and self._deadlines[0][0] <= now_ms and len(due) < limit:
            expires, room_id, user_id = heapq.heappop(self._deadlines)
            entry = self._typing.get(room_id, {}).get(user_id)
            if entry is not None and entry.expires_at_ms == expires:
                due.append((room_id, user_id))
        return self._clear(due)

    async def _next_deadline(self) -> int | None:
        while self._deadlines:
            expires, room_id, user_id = self._deadlines[0]
            entry = self._typing.get(room_id, {}).get(user_id)
            if entry is not None and entry.expires_at_ms == expires:
                return expires
            heapq.heappop(self._deadlines)  # refreshed or cleared since
        return None
