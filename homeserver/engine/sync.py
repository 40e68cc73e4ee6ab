"""/sync: initial and incremental, with long-polling.

A sync token is "s<P>_<E>": the client has seen everything up to durable stream
position P and ephemeral position E (`sync_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from backends import Storage
from backends.records import Event, JsonDict, Membership, MembershipRecord, ServerEventTarget
from homeserver.clock import Clock
from homeserver.engine.events import client_event
from homeserver.engine.filters import SyncFilter
from homeserver.engine.notifier import Notifier
from homeserver.engine.presence import PresenceService
from homeserver.engine.rooms import ended_a_join, invite_state_events
from homeserver.engine.server_events import ServerEvents, server_event_json
from homeserver.engine.sync_ephemeral import EphemeralNews, empty_joined_room
from homeserver.engine.sync_tokens import (
    SyncToken,
    parse_stream_token,
    parse_sync_token,
    stream_token,
    sync_token,
)
from homeserver.engine.typing_state import TypingService
from homeserver.readmodel.positions import Watermark
from homeserver.types import Requester

__all__ = [
    "Sync",
    "SyncRequest",
    "SyncToken",
    "parse_stream_token",
    "parse_sync_token",
    "stream_token",
    "sync_token",
]

_HERO_LIMIT = 5
# Server events a new device's initial sync shows (the most recent ones).
INITIAL_SERVER_EVENTS = 20
# Events read per step when scanning a room's recent history.
_SCAN_PAGE = 100


@dataclass(frozen=True)
class SyncRequest:
    since: SyncToken | None
    timeout_ms: int
    full_state: bool
    filter: SyncFilter


class Sync:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        notifier: Notifier,
        presence: PresenceService,
        server_events: ServerEvents,
        typing: TypingService,
        watermark: Watermark,
    ) -> None:
        self._typing_service = typing
        self._watermark = watermark
        self._news = EphemeralNews(storage, presence, typing)
        self._storage = storage
        self._clock = clock
        self._notifier = notifier
        self._presence = presence
        self._server_events = server_events

    async def sync(self, requester: Requester, req: SyncRequest) -> JsonDict:
        deadline = trio.current_time() + req.timeout_ms / 1000
        response: JsonDict | None = None
        while True:
            # Take the waiter before reading, so a change during the read still wakes us.
            waiter = self._notifier.waiter(requester.user_id)
            since = req.since
            if since is None or req.full_state:
                return (await self._build(requester, req))[0]
            user_id = requester.user_id
            if not self._notifier.durable_quiet(user_id, since.pos):
                response, has_news = await self._build(requester, req)
            elif not self._notifier.ephemeral_quiet(user_id, since.ephemeral):
                # Only ephemeral news (typing): from memory, the durable position kept.
                response, has_news = await self._build_ephemeral(requester, req, since)
            else:
                # Nothing changed for this user since `since`: no storage needed.
                response, has_news = response or self._nothing_new(since), False
            if has_news:
                return response
            if trio.current_time() >= deadline:
                return response
            with trio.move_on_at(deadline):
                await waiter.wait()

    async def _build_ephemeral(
        self, requester: Requester, req: SyncRequest, since: SyncToken
    ) -> tuple[JsonDict, bool]:
        """An incremental response with the ephemeral news only (typing, presence),
        from memory. Its durable position is `since`'s: whatever durable change is
        stored but not yet notified is still ahead of it, for the next /sync."""
        joined_ids = [
            room_id
            for room_id in await self._storage.rooms.get_joined_rooms(requester.user_id)
            if req.filter.wants_room(room_id)
        ]
        join: JsonDict = {}
        typing_news, presence_events, upto = await self._news.collect(
            join, requester.user_id, joined_ids, since.ephemeral
        )
        response = self._nothing_new(SyncToken(since.pos, upto))
        response["rooms"]["join"] = join
        response["presence"] = {"events": presence_events}
        return response, typing_news or bool(presence_events)

    @staticmethod
    def _nothing_new(since: SyncToken) -> JsonDict:
        """The answer of an incremental sync that found nothing after `since`."""
        return {
            "next_batch": sync_token(since),
            "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
            "account_data": {"events": []},
            "presence": {"events": []},
            "server_events": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }

    async def _build(self, requester: Requester, req: SyncRequest) -> tuple[JsonDict, bool]:
        user_id = requester.user_id
        # Every position up to the watermark is stored and returned to its writer.
        safe = self._watermark.safe()
        now_pos = safe if safe is not None else await self._storage.rooms.current_stream_pos()
        since = req.since.pos if req.since is not None else None
        since_ephemeral = req.since.ephemeral if req.since is not None else None
        if since is not None and since > now_pos:
            # A token from the future (e.g. a store that lost data): treat as "now".
            since = now_pos
        join: JsonDict = {}
        invite: JsonDict = {}
        leave: JsonDict = {}
        memberships = [
            m
            for m in await self._storage.rooms.get_user_memberships(user_id)
            if not m.forgotten and req.filter.wants_room(m.room_id)
        ]
        joined = [m for m in memberships if m.membership == Membership.JOIN]
        latest = await self._storage.rooms.get_latest_positions([m.room_id for m in joined])
        for m in joined:
            newly_joined = since is None or (
                m.stream_pos > since and not await self._was_joined_at(m, since)
            )
            changed = latest.get(m.room_id, 0) > (since or 0)
            if newly_joined or req.full_state or changed:
                join[m.room_id] = await self._joined_room(
                    requester, m, since, now_pos, req, newly_joined=newly_joined
                )
        for m in memberships:
            if m.stream_pos > now_pos:
                continue
            fresh = since is None or m.stream_pos > since
            if m.membership == Membership.INVITE and fresh:
                invite[m.room_id] = await self._invited_room(m)
            elif m.membership in (Membership.LEAVE, Membership.BAN) and (
                (since is not None and fresh) or (since is None and req.filter.include_leave)
            ):
                leave[m.room_id] = await self._left_room(requester, m, since, req)
        account_data = await self._storage.account_data.get_account_data_since(user_id, since or 0)
        global_data = [
            {"type": r.type, "content": r.content}
            for r in account_data
            if r.room_id is None and r.stream_pos <= now_pos
        ]
        for record in account_data:
            if record.room_id is None or record.stream_pos > now_pos:
                continue
            room = join.get(record.room_id)
            if room is None and record.room_id in {m.room_id for m in joined}:
                room = join[record.room_id] = self._empty_joined_room()
            if room is not None:
                room["account_data"]["events"].append(
                    {"type": record.type, "content": record.content}
                )
        joined_ids = [m.room_id for m in joined]
        typing_news, presence_events, ephemeral_pos = await self._news.collect(
            join, user_id, joined_ids, since_ephemeral
        )
        server_events = await self._deliver_server_events(join, user_id, joined_ids, since, now_pos)
        response: JsonDict = {
            "next_batch": sync_token(SyncToken(now_pos, ephemeral_pos)),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": {}},
            "account_data": {"events": global_data},
            "presence": {"events": presence_events},
            "server_events": {"events": server_events},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }
        has_news = bool(
            join
            or invite
            or leave
            or global_data
            or typing_news
            or presence_events
            or server_events
        )
        return response, has_news

    async def _deliver_server_events(
        self,
        join: JsonDict,
        user_id: str,
        joined_ids: list[str],
        since: int | None,
        now_pos: int,
    ) -> list[JsonDict]:
        """Server events since `since`: room-targeted ones go into the room's ephemeral
        events, the rest are returned for the top-level list. Each device gets each
        event once, by its own `since`; a new device (initial sync) gets the most
        recent INITIAL_SERVER_EVENTS."""
        mark = self._watermark
        if since is not None and since >= mark.certain_from and mark.last_server_event <= since:
            return []  # none stored since `since` (nor in flight below now_pos)
        events = await self._server_events.for_sync(
            user_id, joined_ids, after=since or 0, upto=now_pos
        )
        if since is None:
            events = events[-INITIAL_SERVER_EVENTS:]
        top: list[JsonDict] = []
        for event in events:
            if event.target_kind == ServerEventTarget.ROOM and event.target is not None:
                room = join.get(event.target)
                if room is None:
                    room = join[event.target] = self._empty_joined_room()
                room["ephemeral"]["events"].append(server_event_json(event))
            else:
                top.append(server_event_json(event))
        return top

    _empty_joined_room = staticmethod(empty_joined_room)

    async def _was_joined_at(self, membership: MembershipRecord, since: int) -> bool:
        """Whether a user whose join is newer than `since` was already joined at `since`
        (a new display name, or a repeated join), rather than newly joined."""
        latest = await self._storage.rooms.get_event(membership.event_id)
        if latest is None or not ended_a_join(latest):
            return False
        # The join was replaced by a join: look for the user's first membership change
        # after `since`, which says what it was at `since`.
        after = since
        while True:
            events = await self._storage.rooms.get_room_events(
                membership.room_id,
                after=after,
                before=membership.stream_pos + 1,
                limit=_SCAN_PAGE,
                newest_first=False,
            )
            for event in events:
                if event.type == "m.room.member" and event.state_key == membership.user_id:
                    return ended_a_join(event)
            if len(events) < _SCAN_PAGE:
                return False
            after = events[-1].stream_pos

    def _format(self, requester: Requester, events: list[Event]) -> list[JsonDict]:
        now = self._clock.now_ms()
        return [
            client_event(e, now_ms=now, device_id=requester.device_id, include_room_id=False)
            for e in events
        ]

    async def _timeline(
        self, room_id: str, after: int | None, upto: int, limit: int
    ) -> tuple[list[Event], bool]:
        events = await self._storage.rooms.get_room_events(
            room_id, after=after, before=upto + 1, limit=limit + 1, newest_first=True
        )
        limited = len(events) > limit
        events = events[:limit]
        events.reverse()
        return events, limited

    async def _joined_room(
        self,
        requester: Requester,
        membership: MembershipRecord,
        since: int | None,
        now_pos: int,
        req: SyncRequest,
        *,
        newly_joined: bool,
    ) -> JsonDict:
        room_id = membership.room_id
        limit = req.filter.timeline_limit
        # full_state gives all the state but the timeline still starts at `since`.
        after = None if newly_joined else since
        timeline, limited = await self._timeline(room_id, after, now_pos, limit)
        start = timeline[0].stream_pos if timeline else now_pos + 1
        current = [
            e
            for e in await self._storage.rooms.get_current_state(room_id)
            if e.stream_pos <= now_pos
        ]
        if newly_joined or req.full_state:
            state = [e for e in current if e.stream_pos < start]
        elif limited:
            state = [e for e in current if since is not None and since < e.stream_pos < start]
        else:
            state = []
        room = self._empty_joined_room()
        prev_batch = (timeline[0].stream_pos - 1) if timeline else now_pos
        room["timeline"] = {
            "events": self._format(requester, timeline),
            "limited": limited,
            "prev_batch": stream_token(max(prev_batch, 0)),
        }
        room["state"] = {"events": self._format(requester, state)}
        members = [e for e in current if e.type == "m.room.member"]
        joined = [e for e in members if e.content.get("membership") == Membership.JOIN]
        invited = [e for e in members if e.content.get("membership") == Membership.INVITE]
        name = next((e for e in current if e.type == "m.room.name" and e.state_key == ""), None)
        summary: JsonDict = {
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }
        if name is None or not name.content.get("name"):
            heroes = [
                e.state_key
                for e in joined + invited
                if e.state_key and e.state_key != requester.user_id
            ]
            summary["m.heroes"] = heroes[:_HERO_LIMIT]
        room["summary"] = summary
        return room

    async def _invited_room(self, membership: MembershipRecord) -> JsonDict:
        event = await self._storage.rooms.get_event(membership.event_id)
        return {"invite_state": {"events": invite_state_events(event)}}

    async def _left_room(
        self,
        requester: Requester,
        membership: MembershipRecord,
        since: int | None,
        req: SyncRequest,
    ) -> JsonDict:
        event = await self._storage.rooms.get_event(membership.event_id)
        if ended_a_join(event):
            timeline, limited = await self._timeline(
                membership.room_id, since, membership.stream_pos, req.filter.timeline_limit
            )
        else:
            # A rejected or withdrawn invite (or a ban of a non-member): the user never
            # saw the room, so they get their own membership change and nothing else.
            timeline, limited = ([event] if event is not None else []), False
        prev_batch = (timeline[0].stream_pos - 1) if timeline else membership.stream_pos
        return {
            "timeline": {
                "events": self._format(requester, timeline),
                "limited": limited,
                "prev_batch": stream_token(max(prev_batch, 0)),
            },
            "state": {"events": []},
            "account_data": {"events": []},
        }
