"""Server-generated events in Redis.

Stored like room events: one hash by id, and a sorted set of ids scored by stream
position per target (a user, a room, or everyone); reading one user's events reads the
user's, everyone's and each room's set in one script.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.errors import Conflict, StorageError
from backends.records import NewServerEvent, ServerEvent, ServerEventTarget
from backends.redis import codec
from backends.redis.base import RedisStore, idempotent, once


class RedisServerEventStore(RedisStore):
    @once
    async def add_server_event(self, event: NewServerEvent) -> ServerEvent:
        """Not retried: a repeat after a lost reply would report Conflict for the
        event this call stored."""
        if event.target_kind == ServerEventTarget.ALL_USERS:
            index = self._k.server_event_index(event.target_kind, None)
        elif event.target is None:
            raise ValueError(f"server event aimed at a {event.target_kind} without a target")
        else:
            index = self._k.server_event_index(event.target_kind, event.target)
        body = codec.server_event_body(event)
        pos = await self._ctx.run(
            self._scripts.add_server_event,
            [self._k.stream_pos, self._k.server_events, index],
            [event.event_id, body],
        )
        if not isinstance(pos, int):
            raise StorageError(f"unexpected reply from Redis: {pos!r}")
        if pos == 0:
            raise Conflict(f"server event {event.event_id} exists")
        return codec.server_event_from_stored(f"[{pos},{body}]")

    @idempotent
    async def get_server_events(
        self, user_id: str, room_ids: Sequence[str], *, after: int, upto: int, limit: int
    ) -> list[ServerEvent]:
        if limit <= 0 or upto <= after:
            return []
        k = self._k
        indexes = [
            k.server_event_index(ServerEventTarget.ALL_USERS, None),
            k.server_event_index(ServerEventTarget.USER, user_id),
            *(k.server_event_index(ServerEventTarget.ROOM, r) for r in dict.fromkeys(room_ids)),
        ]
        reply = await self._ctx.run(
            self._scripts.server_events,
            [k.server_events, *indexes],
            [f"({codec.clamp(after)}", str(codec.clamp(upto)), str(codec.clamp(limit))],
        )
        return codec.server_events_from_stored(reply)
