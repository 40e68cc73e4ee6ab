"""Presence: a user's presence is the strongest desired presence over their live
sessions (online > unavailable > offline); with no live session it is offline.

The sessions (and the presence each desires) are durable: they are stored before a
request is answered, and survive a restart. The published presence is derived from
them, so it is kept in memory and positioned in the ephemeral stream: a change wakes
the /sync of everyone who shares a room with the user, and the user's own, and those
answer from memory. The store keeps a copy for restarts and for users this process
does not hold: written behind (at most one write per user per `flush_interval_s`),
and at once when a user goes offline (the change a lost write would get wrong
longest). After a restart, what the store last kept is the published presence until
the user's next change.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from backends import Storage, StorageError
from backends.records import JsonDict, Presence, PresenceRecord, SessionRecord
from homeserver.changefeed import ChangeFeed
from homeserver.clock import Clock
from homeserver.engine.ephemeral import EphemeralStream
from homeserver.errors import Forbidden, NotFoundError
from homeserver.locks import KeyedLock

log = logging.getLogger("homeserver.presence")

DEFAULT_MAX_USERS = 100_000


@dataclass(frozen=True)
class PresenceStatus:
    presence: str
    status_msg: str | None
    last_active_ts: int | None


def aggregate(sessions: list[SessionRecord]) -> tuple[str, str | None] | None:
    """The strongest presence over the sessions and its status message; None if none."""
    if not sessions:
        return None
    # Strongest presence; among equals, the most recently active session's message.
    best = max(sessions, key=lambda s: (Presence.RANK[s.presence], s.last_active_ts))
    return best.presence, best.status_msg


class PresenceService:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        feed: ChangeFeed,
        stream: EphemeralStream,
        *,
        enabled: bool,
        max_users: int = DEFAULT_MAX_USERS,
        flush_interval_s: float = 1.0,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._feed = feed
        self._stream = stream
        self.enabled = enabled
        self._locks = KeyedLock()
        self._max_users = max_users
        self.flush_interval_s = flush_interval_s
        # user -> the published record; its stream_pos is an ephemeral position.
        self._published: OrderedDict[str, PresenceRecord] = OrderedDict()
        self._dirty: set[str] = set()
        # A token at or below this ephemeral position may predate what memory holds
        # (from before this process, or forgotten to stay bounded): the store answers
        # for the users memory does not hold.
        self.floor = stream.current
        # Called with every change published (tests, metrics).
        self.observers: list[Callable[[PresenceRecord], None]] = []

    async def audience(self, user_id: str) -> set[str]:
        """The user and everyone who shares a joined room with them."""
        users = {user_id}
        for room_id in await self._storage.rooms.get_joined_rooms(user_id):
            users.update(await self._storage.rooms.get_joined_members(room_id))
        return users

    async def current(self, user_id: str) -> PresenceRecord | None:
        """The user's published presence (memory, else the store's copy), or None."""
        record = self._published.get(user_id)
        if record is not None:
            return record
        return await self._storage.presence.get_presence(user_id)

    async def recompute(self, user_id: str) -> PresenceRecord | None:
        """Re-derive the user's presence from their sessions; publish it if it changed.
        Returns the new record when a change was published."""
        if not self.enabled:
            return None
        async with self._locks.hold(user_id):
            sessions = await self._storage.sessions.list_user_sessions(user_id)
            current = await self.current(user_id)
            derived = aggregate(sessions)
            if derived is None:
                presence = Presence.OFFLINE
                status_msg = current.status_msg if current else None
            else:
                presence, status_msg = derived
            if current is None and presence == Presence.OFFLINE:
                return None
            if current is not None and (current.presence, current.status_msg) == (
                presence,
                status_msg,
            ):
                return None
            last_active = max(
                (s.last_active_ts for s in sessions),
                default=current.last_active_ts if current else self._clock.now_ms(),
            )
            record = PresenceRecord(
                user_id, presence, status_msg, last_active, stream_pos=self._stream.next()
            )
            self._remember(record)
            if presence == Presence.OFFLINE:
                await self._write(user_id)
        self._feed.publish(
            stream="ephemeral",
            pos=record.stream_pos,
            kind="presence",
            user_ids=await self.audience(user_id),
            payload={"user_id": user_id},
        )
        for observer in self.observers:
            observer(record)
        return record

    def _remember(self, record: PresenceRecord) -> None:
        self._published[record.user_id] = record
        self._published.move_to_end(record.user_id)
        self._dirty.add(record.user_id)
        for _ in range(len(self._published) - self._max_users):
            user_id, oldest = next(iter(self._published.items()))
            self._published.move_to_end(user_id)
            if user_id in self._dirty:
                continue  # kept until written; the next pass may forget it
            del self._published[user_id]
            self.floor = max(self.floor, oldest.stream_pos)

    # -- what /sync reads -------------------------------------------------------------

    async def changes_since(
        self, user_ids: Iterable[str], since: int | None, upto: int
    ) -> list[PresenceRecord]:
        """The published presence of those users changed after the ephemeral position
        `since` (None: every one known) and at most `upto` (a later change is for the
        next /sync), oldest change first. Users memory does not hold are read from the
        store when `since` may predate what memory holds."""
        found: list[PresenceRecord] = []
        missing: list[str] = []
        for user_id in user_ids:
            record = self._published.get(user_id)
            if record is not None:
                if (since is None or record.stream_pos > since) and record.stream_pos <= upto:
                    found.append(record)
            elif since is None or since < self.floor:
                missing.append(user_id)
        found.sort(key=lambda r: r.stream_pos)
        if missing:
            # From before this process: older than anything in memory.
            found[:0] = await self._storage.presence.get_presence_since(sorted(missing), 0)
        return found

    # -- written behind -----------------------------------------------------------------

    async def _write(self, user_id: str) -> None:
        record = self._published.get(user_id)
        if record is None or user_id not in self._dirty:
            return
        self._dirty.discard(user_id)
        try:
            stored = await self._storage.presence.put_presence(
                user_id, record.presence, record.status_msg, record.last_active_ts
            )
        except BaseException:
            self._dirty.add(user_id)
            raise
        # The copy takes a durable position; nobody needs waking for it.
        self._feed.publish(
            stream="durable", pos=stored.stream_pos, kind="presence", payload={"user_id": user_id}
        )

    async def flush(self) -> None:
        """Write every published change not yet in the store."""
        for user_id in sorted(self._dirty):
            async with self._locks.hold(user_id):
                await self._write(user_id)

    async def write_behind(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Flush every `flush_interval_s`, and once more when cancelled (shutdown)."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.flush_interval_s)
                try:
                    await self.flush()
                except StorageError as exc:
                    log.warning("presence write-behind: storage error, retrying: %s", exc)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.flush()
                except Exception:
                    log.exception("presence write-behind: final flush failed")

    # -- reads ----------------------------------------------------------------------------

    async def status(self, viewer: str, user_id: str) -> JsonDict:
        """GET /presence/{userId}/status, as seen by `viewer`."""
        if await self._storage.users.get_user(user_id) is None:
            raise NotFoundError("Unknown user")
        if viewer != user_id and viewer not in await self.audience(user_id):
            raise Forbidden("You do not share a room with this user")
        record = await self.current(user_id) if self.enabled else None
        sessions = await self._storage.sessions.list_user_sessions(user_id) if self.enabled else []
        return self.event_content(record, sessions)

    def event_content(
        self, record: PresenceRecord | None, sessions: Sequence[SessionRecord] | None = None
    ) -> JsonDict:
        presence = record.presence if record else Presence.OFFLINE
        last_active = max((s.last_active_ts for s in sessions or ()), default=None)
        if last_active is None and record is not None:
            last_active = record.last_active_ts
        content: JsonDict = {
            "presence": presence,
            "currently_active": presence == Presence.ONLINE,
        }
        if last_active is not None:
            content["last_active_ago"] = max(0, self._clock.now_ms() - last_active)
        if record is not None and record.status_msg is not None:
            content["status_msg"] = record.status_msg
        return content
