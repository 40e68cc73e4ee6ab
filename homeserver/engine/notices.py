"""Compatibility notices: server events with a human-readable `content.body` are also
posted, for people on today's clients, as a message (`msgtype` `m.server_notice`) from
the notices user (`@server:<domain>`) into a per-user server-notices room tagged
`m.server_notice`, as the spec's server notices describe.

Posting runs in the background (a queue worked by `run`), so the admin request that
sent a broadcast is not held up by thousands of rooms.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from backends import Conflict, Storage
from backends.records import JsonDict, Membership, ServerEventTarget, UserRecord
from homeserver.changefeed import ChangeFeed
from homeserver.clock import Clock
from homeserver.engine.rooms import CreateRoomRequest, Rooms
from homeserver.locks import KeyedLock
from homeserver.namespace import NAMESPACE
from homeserver.types import Requester

log = logging.getLogger("homeserver.notices")

NOTICES_ROOM = f"{NAMESPACE}.server_notices_room"
SERVER_NOTICE_TAG = "m.server_notice"
QUEUE_SIZE = 10_000
PAGE = 500


class ServerNotices:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        rooms: Rooms,
        feed: ChangeFeed,
        *,
        server_name: str,
        localpart: str,
        enabled: bool,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._rooms = rooms
        self._feed = feed
        self.enabled = enabled
        self.user_id = f"@{localpart}:{server_name}"
        self._requester = Requester(self.user_id, "SERVER")
        self._locks = KeyedLock()
        self._queue_in, self._queue_out = trio.open_memory_channel[tuple[str, str | None, str]](
            QUEUE_SIZE
        )

    def enqueue(self, target_kind: str, target: str | None, content: JsonDict) -> None:
        """Queue a notice for a server event's recipients if it has a text body."""
        body = content.get("body")
        if not self.enabled or not isinstance(body, str) or not body:
            return
        try:
            self._queue_in.send_nowait((target_kind, target, body))
        except trio.WouldBlock:
            log.warning("server notice queue full: a notice was not posted")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for target_kind, target, body in self._queue_out:
            try:
                for user_id in await self._recipients(target_kind, target):
                    await self.post(user_id, body)
            except Exception:
                log.exception("posting a server notice failed")

    async def _recipients(self, target_kind: str, target: str | None) -> list[str]:
        if target_kind == ServerEventTarget.USER and target is not None:
            return [target]
        if target_kind == ServerEventTarget.ROOM and target is not None:
            return await self._storage.rooms.get_joined_members(target)
        users: list[str] = []
        after: str | None = None
        while page := await self._storage.users.list_user_ids(after=after, limit=PAGE):
            users.extend(u for u in page if u != self.user_id)
            after = page[-1]
        return users

    async def post(self, user_id: str, body: str) -> str:
        """Post one notice to the user's server-notices room; returns its event id."""
        async with self._locks.hold(user_id):
            room_id = await self._room_for(user_id)
        return await self._rooms.messages.send_event(
            self._requester,
            room_id,
            "m.room.message",
            {"msgtype": "m.server_notice", "body": body},
            trusted=True,
        )

    async def _room_for(self, user_id: str) -> str:
        record = await self._storage.account_data.get_account_data(user_id, None, NOTICES_ROOM)
        room_id = record.get("room_id") if record else None
        if isinstance(room_id, str):
            membership = await self._storage.rooms.get_membership(room_id, user_id)
            if membership is not None and membership.membership in (
                Membership.JOIN,
                Membership.INVITE,
            ):
                return room_id
        await self._ensure_notices_user()
        room_id = await self._rooms.creation.create_room(
            self._requester,
            CreateRoomRequest(
                preset="private_chat",
                name="Server Notices",
                topic="Notices from the server",
                invite=(user_id,),
                # Only the server speaks here.
                power_level_content_override={"events_default": 100, "invite": 100},
            ),
            trusted=True,
        )
        await self._storage.account_data.put_account_data(
            user_id, room_id, "m.tag", {"tags": {SERVER_NOTICE_TAG: {"order": 0.5}}}
        )
        pos = await self._storage.account_data.put_account_data(
            user_id, None, NOTICES_ROOM, {"room_id": room_id}
        )
        # The tag above is older: this position covers both.
        self._feed.publish(
            stream="durable",
            pos=pos,
            kind="account_data",
            user_ids=(user_id,),
            payload={"type": NOTICES_ROOM},
        )
        return room_id

    async def _ensure_notices_user(self) -> None:
        if await self._storage.users.get_user(self.user_id) is not None:
            return
        with contextlib.suppress(Conflict):  # created concurrently: fine
            await self._storage.users.create_user(
                UserRecord(
                    user_id=self.user_id,
                    password_hash=None,
                    created_ts=self._clock.now_ms(),
                    displayname="Server Notices",
                )
            )
