"""The ephemeral part of a /sync response (typing, presence), from memory."""

from __future__ import annotations

from backends import Storage
from backends.records import JsonDict
from homeserver.engine.presence import PresenceService
from homeserver.engine.typing_state import TypingService


def empty_joined_room() -> JsonDict:
    """A joined room's entry of a /sync response, with nothing in it yet."""
    return {
        "timeline": {"events": [], "limited": False},
        "state": {"events": []},
        "ephemeral": {"events": []},
        "account_data": {"events": []},
        "unread_notifications": {"notification_count": 0, "highlight_count": 0},
        "summary": {},
    }


class EphemeralNews:
    """Typing and presence changed since an ephemeral position, from memory (the
    store only for presence from before this process)."""

    def __init__(self, storage: Storage, presence: PresenceService, typing: TypingService) -> None:
        self._storage = storage
        self._presence = presence
        self._typing_service = typing

    async def collect(
        self, join: JsonDict, user_id: str, joined_ids: list[str], since: int | None
    ) -> tuple[bool, list[JsonDict], int]:
        """Typing (into the joined rooms of `join`) and presence changed after the
        ephemeral position `since` (None: the current state), from memory. Returns
        whether typing was added, the m.presence events, and the ephemeral position
        the answer covers (later changes are for the next /sync)."""
        upto = self._typing_service.stream.current
        if since is not None and since > upto:
            since = None  # a token from before a clock change: start over
        presence_events = await self._presence_events(user_id, joined_ids, since, upto)
        changes, _ = self._typing_service.changes_since(joined_ids, since)
        typing_news = False
        for change in changes:
            if change.pos > upto:
                continue  # changed during the presence read: the next /sync has it
            room = join.get(change.room_id)
            if room is None:
                room = join[change.room_id] = empty_joined_room()
            room["ephemeral"]["events"].append(
                {"type": "m.typing", "content": {"user_ids": list(change.user_ids)}}
            )
            typing_news = True
        return typing_news, presence_events, upto

    async def _presence_events(
        self, user_id: str, joined_ids: list[str], since: int | None, upto: int
    ) -> list[JsonDict]:
        """m.presence of the user and everyone sharing a joined room, changed after the
        ephemeral position `since` and at most `upto`."""
        if not self._presence.enabled:
            return []
        audience = {user_id}
        for room_id in joined_ids:
            audience.update(await self._storage.rooms.get_joined_members(room_id))
        records = await self._presence.changes_since(sorted(audience), since, upto)
        return [
            {
                "type": "m.presence",
                "sender": r.user_id,
                "content": self._presence.event_content(r),
            }
            for r in records
        ]
