"""Typing notifications: per session, capped in time, ended with their session."""

from __future__ import annotations

from collections.abc import Sequence

from backends import Storage
from backends.records import Membership, TypingChange
from homeserver.clock import Clock
from homeserver.engine.deadlines import DeadlineLoop
from homeserver.engine.notifier import Notifier
from homeserver.errors import Forbidden
from homeserver.types import Requester


class TypingService:
    def __init__(
        self, storage: Storage, clock: Clock, notifier: Notifier, *, timeout_cap_ms: int
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._notifier = notifier
        self.timeout_cap_ms = timeout_cap_ms
        self.expiry = DeadlineLoop(
            "typing-expiry",
            clock,
            storage.typing.take_expired_typing,
            storage.typing.next_typing_deadline,
            self.publish,
        )

    async def publish(self, changes: Sequence[TypingChange]) -> None:
        """Wake the joined members of every room whose typing set changed."""
        if not changes:
            return
        users: set[str] = set()
        for room_id in {c.room_id for c in changes}:
            users.update(await self._storage.rooms.get_joined_members(room_id))
        self._notifier.notify(users, max(c.stream_pos for c in changes))

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
            change = await self._storage.typing.set_typing(room_id, user_id, owner, expires)
            self.expiry.deadline_set(expires)
        else:
            change = await self._storage.typing.clear_typing(room_id, user_id)
        if change is not None:
            await self.publish([change])

    async def end_session(self, session_id: str) -> None:
        changes = await self._storage.typing.clear_session_typing(session_id)
        if changes:
            await self.publish(changes)
