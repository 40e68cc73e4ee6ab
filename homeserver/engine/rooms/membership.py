"""Membership: join, leave, kick, ban, unban and forget under the auth rules, and a
profile change carried into the member events of the user's joined rooms."""

from __future__ import annotations

from backends import Storage
from backends.records import JsonDict, Membership
from homeserver.engine.gatekeeper import Gatekeeper, raise_for
from homeserver.engine.rooms.core import RoomCore
from homeserver.errors import Forbidden, InvalidParam, MatrixError, NotFoundError
from homeserver.types import Requester, is_user_id
from plugins.api import JoinCheck

PROFILE_FIELDS = ("displayname", "avatar_url")


class RoomMembership:
    def __init__(self, core: RoomCore, storage: Storage, gatekeeper: Gatekeeper) -> None:
        self._core = core
        self._storage = storage
        self._gatekeeper = gatekeeper

    async def join(self, requester: Requester, room_id: str, reason: str | None = None) -> None:
        user_id = requester.user_id
        # Checked before the plugins run (outside the room lock), again under it.
        await self._authorize_join(room_id, user_id)
        raise_for(await self._gatekeeper.check_join(JoinCheck(user_id=user_id, room_id=room_id)))
        async with self._core.hold(room_id):
            await self._authorize_join(room_id, user_id)
            content = await self._core.member_content(user_id, Membership.JOIN)
            if reason is not None:
                content["reason"] = reason
            await self._core.append_member(requester, room_id, user_id, user_id, content)

    async def _authorize_join(self, room_id: str, user_id: str) -> None:
        if await self._storage.rooms.get_room(room_id) is None:
            raise NotFoundError("Unknown room")
        current = await self._core.membership_of(room_id, user_id)
        if current == Membership.BAN:
            raise Forbidden("You are banned from this room")
        if current not in (Membership.JOIN, Membership.INVITE):
            rules = await self._storage.rooms.get_state_event(room_id, "m.room.join_rules", "")
            join_rule = rules.content.get("join_rule") if rules else "invite"
            if join_rule != "public":
                raise Forbidden("You are not invited to this room")

    async def leave(self, requester: Requester, room_id: str, reason: str | None = None) -> None:
        """Leave a room, or reject an invite or withdraw a knock."""
        user_id = requester.user_id
        async with self._core.hold(room_id):
            current = await self._core.membership_of(room_id, user_id)
            if current not in (Membership.JOIN, Membership.INVITE, Membership.KNOCK):
                if await self._storage.rooms.get_room(room_id) is None:
                    raise NotFoundError("Unknown room")
                raise Forbidden("You are not in this room")
            content: JsonDict = {"membership": Membership.LEAVE}
            if reason is not None:
                content["reason"] = reason
            await self._core.append_member(requester, room_id, user_id, user_id, content)

    async def kick(
        self, requester: Requester, room_id: str, target: str, reason: str | None
    ) -> None:
        await self._moderate(requester, room_id, target, reason, "kick")

    async def ban(
        self, requester: Requester, room_id: str, target: str, reason: str | None
    ) -> None:
        await self._moderate(requester, room_id, target, reason, "ban")

    async def unban(
        self, requester: Requester, room_id: str, target: str, reason: str | None
    ) -> None:
        await self._moderate(requester, room_id, target, reason, "unban")

    async def _moderate(
        self, requester: Requester, room_id: str, target: str, reason: str | None, action: str
    ) -> None:
        if not is_user_id(target):
            raise InvalidParam(f"Not a valid user id: {target!r}")
        async with self._core.hold(room_id):
            room = await self._core.require_joined(room_id, requester.user_id)
            power = await self._core.power_levels(room)
            current = await self._core.membership_of(room_id, target)
            if action == "kick":
                if current not in (Membership.JOIN, Membership.INVITE, Membership.KNOCK):
                    raise Forbidden(f"{target} is not in the room")
                needed, membership = power.level("kick"), Membership.LEAVE
            elif action == "ban":
                needed, membership = power.level("ban"), Membership.BAN
            else:
                if current != Membership.BAN:
                    raise Forbidden(f"{target} is not banned")
                # The auth rules: lifting a ban is a leave sent for someone else, which
                # needs the kick level on top of the ban level.
                needed = max(power.level("ban"), power.level("kick"))
                membership = Membership.LEAVE
            power.require(requester.user_id, needed, f"{action} users")
            # Kicking oneself is a plain leave; anything else (banning oneself included)
            # needs a target below the sender, as the auth rules say.
            leaving = action == "kick" and target == requester.user_id
            if not leaving and power.user_level(target) >= power.user_level(requester.user_id):
                raise Forbidden(f"You cannot {action} a user with an equal or higher power level")
            content: JsonDict = {"membership": membership}
            if reason is not None:
                content["reason"] = reason
            await self._core.append_member(requester, room_id, requester.user_id, target, content)

    async def forget(self, requester: Requester, room_id: str) -> None:
        current = await self._core.membership_of(room_id, requester.user_id)
        if current is None:
            raise NotFoundError("You have no membership in this room")
        if current in (Membership.JOIN, Membership.INVITE):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self._storage.rooms.forget_room(requester.user_id, room_id)

    async def set_profile(self, requester: Requester, field: str, value: str | None) -> None:
        if field not in PROFILE_FIELDS:
            raise InvalidParam(f"Unknown profile field {field}")
        await self._storage.users.set_profile_field(
            requester.user_id, "displayname" if field == "displayname" else "avatar_url", value
        )
        # Clients read display names from member events: refresh them in joined rooms.
        for room_id in await self._core.joined_rooms(requester.user_id):
            async with self._core.hold(room_id):
                if await self._core.membership_of(room_id, requester.user_id) != Membership.JOIN:
                    continue
                content = await self._core.member_content(requester.user_id, Membership.JOIN)
                await self._core.append_member(
                    requester, room_id, requester.user_id, requester.user_id, content
                )
