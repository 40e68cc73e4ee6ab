"""Presence: a user's presence is the strongest desired presence over their live
sessions (online > unavailable > offline); with no live session it is offline.

A change is published once (stored at a new stream position) and wakes the /sync of
everyone who shares a room with the user, and the user's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends import Storage
from backends.records import JsonDict, Presence, PresenceRecord, SessionRecord
from homeserver.clock import Clock
from homeserver.engine.locks import KeyedLock
from homeserver.engine.notifier import Notifier
from homeserver.errors import Forbidden, NotFoundError


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
        self, storage: Storage, clock: Clock, notifier: Notifier, *, enabled: bool
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._notifier = notifier
        self.enabled = enabled
        self._locks = KeyedLock()

    async def audience(self, user_id: str) -> set[str]:
        """The user and everyone who shares a joined room with them."""
        users = {user_id}
        for room_id in await self._storage.rooms.get_joined_rooms(user_id):
            users.update(await self._storage.rooms.get_joined_members(room_id))
        return users

    async def recompute(self, user_id: str) -> PresenceRecord | None:
        """Re-derive the user's presence from their sessions; publish it if it changed.
        Returns the new record when a change was published."""
        if not self.enabled:
            return None
        async with self._locks.hold(user_id):
            sessions = await self._storage.sessions.list_user_sessions(user_id)
            current = await self._storage.presence.get_presence(user_id)
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
            record = await self._storage.presence.put_presence(
                user_id, presence, status_msg, last_active
            )
        self._notifier.notify(await self.audience(user_id), record.stream_pos)
        return record

    async def status(self, viewer: str, user_id: str) -> JsonDict:
        """GET /presence/{userId}/status, as seen by `viewer`."""
        if await self._storage.users.get_user(user_id) is None:
            raise NotFoundError("Unknown user")
        if viewer != user_id and viewer not in await self.audience(user_id):
            raise Forbidden("You do not share a room with this user")
        record = await self._storage.presence.get_presence(user_id) if self.enabled else None
        sessions = await self._storage.sessions.list_user_sessions(user_id) if self.enabled else []
        return self.event_content(record, sessions)

    def event_content(
        self, record: PresenceRecord | None, sessions: list[SessionRecord] | None = None
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
