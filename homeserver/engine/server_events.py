"""Server-generated events: events whose sender is the server's name, not a user.

They are stored in the stream like other events and delivered by /sync where today's
clients tolerate a non-user sender: user-targeted and broadcast events in the
top-level `server_events.events`, room-targeted ones in the room's ephemeral events.
Never in timelines, state, invite state or to-device messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends import Storage
from backends.records import JsonDict, NewServerEvent, ServerEvent, ServerEventTarget
from homeserver.changefeed import ChangeFeed
from homeserver.clock import Clock
from homeserver.engine.events import MAX_EVENT_BYTES, event_size, new_event_id
from homeserver.engine.notices import ServerNotices
from homeserver.errors import InvalidParam, MatrixError, NotFoundError
from homeserver.types import is_room_id, is_user_id

# A bound on one /sync's server events; far above what a server sends a user between
# two syncs (they are notices, not chat).
SYNC_LIMIT = 10_000


def server_event_json(event: ServerEvent) -> JsonDict:
    """The wire format: type, content, sender (the server name), event_id and an
    integer origin_server_ts."""
    return {
        "type": event.type,
        "content": event.content,
        "sender": event.sender,
        "event_id": event.event_id,
        "origin_server_ts": event.origin_server_ts,
    }


class ServerEvents:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        feed: ChangeFeed,
        *,
        server_name: str,
        notices: ServerNotices | None = None,
    ) -> None:
        self._notices = notices
        self._storage = storage
        self._clock = clock
        self._feed = feed
        self.server_name = server_name

    async def send(
        self, target_kind: str, target: str | None, event_type: str, content: JsonDict
    ) -> ServerEvent:
        """Store a server event for a user, a room (its joined members) or all local
        users, and wake the /sync of everyone it is for."""
        if not isinstance(event_type, str) or not 0 < len(event_type) <= 255:
            raise InvalidParam("'type' must be a string of 1 to 255 characters")
        if event_size(content, event_type) > MAX_EVENT_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "Event too large")
        recipients: Sequence[str] | None
        if target_kind == ServerEventTarget.USER:
            if not is_user_id(target) or await self._storage.users.get_user(str(target)) is None:
                raise NotFoundError(f"Unknown user {target}")
            recipients = [str(target)]
        elif target_kind == ServerEventTarget.ROOM:
            if not is_room_id(target) or await self._storage.rooms.get_room(str(target)) is None:
                raise NotFoundError(f"Unknown room {target}")
            recipients = await self._storage.rooms.get_joined_members(str(target))
        elif target_kind == ServerEventTarget.ALL_USERS:
            target, recipients = None, None
        else:
            raise InvalidParam(f"Unknown target kind {target_kind!r}")
        event = await self._storage.server_events.add_server_event(
            NewServerEvent(
                event_id=new_event_id(),
                sender=self.server_name,
                type=event_type,
                content=content,
                origin_server_ts=self._clock.now_ms(),
                target_kind=target_kind,
                target=target,
            )
        )
        self._feed.publish(
            stream="durable",
            pos=event.stream_pos,
            kind="server_event",
            room_id=target if target_kind == ServerEventTarget.ROOM else None,
            user_ids=recipients or (),
            everyone=recipients is None,
        )
        if self._notices is not None:
            self._notices.enqueue(target_kind, target, content)
        return event

    async def for_sync(
        self, user_id: str, joined_room_ids: Sequence[str], *, after: int, upto: int
    ) -> list[ServerEvent]:
        return await self._storage.server_events.get_server_events(
            user_id, joined_room_ids, after=after, upto=upto, limit=SYNC_LIMIT
        )
