"""Server-generated events in Redis.

Stored like room events: one hash by id, and a sorted set of ids scored by stream
position per target (a user, a room, or everyone); reading one user's events reads the
user's, everyone's and each room's set in one script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from backends.errors import Conflict
from backends.records import NewServerEvent, ServerEvent, ServerEventTarget
from backends.redis import codec
from backends.redis.base import RedisStore, ScriptCall, idempotent, once, unexpected_reply
from backends.redis.keys import Keys


@dataclass(frozen=True, slots=True)
class AddServerEventCall(ScriptCall[ServerEvent]):
    """`lua/add_server_event.lua`: store a server event at a new stream position, in
    the index of its target."""

    script: ClassVar[str] = "add_server_event"

    event_id: str
    body: str

    @classmethod
    def build(cls, k: Keys, event: NewServerEvent) -> AddServerEventCall:
        if event.target_kind == ServerEventTarget.ALL_USERS:
            index = k.server_event_index(event.target_kind, None)
        elif event.target is None:
            raise ValueError(f"server event aimed at a {event.target_kind} without a target")
        else:
            index = k.server_event_index(event.target_kind, event.target)
        body = codec.server_event_body(event)
        return cls(
            [k.stream_pos, k.server_events, index], [event.event_id, body], event.event_id, body
        )

    def parse(self, reply: object) -> ServerEvent:
        """The stored event, or Conflict if its id exists."""
        if isinstance(reply, bool) or not isinstance(reply, int):
            raise unexpected_reply(reply)
        if reply == 0:
            raise Conflict(f"server event {self.event_id} exists")
        return codec.server_event_from_stored(f"[{reply},{self.body}]")


@dataclass(frozen=True, slots=True)
class ServerEventsCall(ScriptCall[list[ServerEvent]]):
    """`lua/server_events.lua`: the oldest (at most `limit`) server events after
    `after` up to `upto` aimed at everyone, a user, or any of some rooms."""

    script: ClassVar[str] = "server_events"

    @classmethod
    def build(
        cls,
        k: Keys,
        user_id: str,
        room_ids: Sequence[str],
        *,
        after: int,
        upto: int,
        limit: int,
    ) -> ServerEventsCall:
        indexes = [
            k.server_event_index(ServerEventTarget.ALL_USERS, None),
            k.server_event_index(ServerEventTarget.USER, user_id),
            *(k.server_event_index(ServerEventTarget.ROOM, r) for r in dict.fromkeys(room_ids)),
        ]
        return cls(
            [k.server_events, *indexes],
            [f"({codec.clamp(after)}", str(codec.clamp(upto)), str(codec.clamp(limit))],
        )

    def parse(self, reply: object) -> list[ServerEvent]:
        """The events in stream order."""
        return codec.server_events_from_stored(reply)


class RedisServerEventStore(RedisStore):
    @once
    async def add_server_event(self, event: NewServerEvent) -> ServerEvent:
        """Not retried: a repeat after a lost reply would report Conflict for the
        event this call stored."""
        call = AddServerEventCall.build(self._k, event)
        return await self._ctx.run(call)

    @idempotent
    async def get_server_events(
        self, user_id: str, room_ids: Sequence[str], *, after: int, upto: int, limit: int
    ) -> list[ServerEvent]:
        if limit <= 0 or upto <= after:
            return []
        call = ServerEventsCall.build(
            self._k, user_id, room_ids, after=after, upto=upto, limit=limit
        )
        return await self._ctx.run(call)
