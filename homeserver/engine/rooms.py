"""Rooms: creation, membership, sending, state and history, under the auth rules.

Every change to a room runs under that room's lock, so the auth check and the append
it allows see the same state (within this process).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backends import DuplicateTransaction, Storage
from homeserver.clock import Clock
from homeserver.engine.accounts import Accounts
from homeserver.engine.events import (
    MAX_EVENT_BYTES,
    client_event,
    event_size,
    new_event_id,
    new_room_id,
    stripped_state,
)
from homeserver.engine.invites import (
    INVITE_PERMISSION_CONFIG,
    effective_types,
    invite_blocked,
    redact_state,
)
from homeserver.engine.locks import KeyedLock
from homeserver.engine.notifier import Notifier
from homeserver.engine.policy import PolicyHost, raise_for
from homeserver.engine.power_levels import PowerLevels, validate_power_levels
from homeserver.errors import BadJson, Forbidden, InvalidParam, MatrixError, NotFoundError
from homeserver.namespace import INVITE_STATE_POLICY
from homeserver.types import (
    ClientTxn,
    Event,
    JsonDict,
    Membership,
    NewEvent,
    Requester,
    RoomRecord,
    is_user_id,
)
from plugins.api import (
    EventCheck,
    InviteCheck,
    InviteDecision,
    JoinCheck,
    RoomCreated,
    RoomCreationCheck,
    Verdict,
)

SUPPORTED_ROOM_VERSIONS = ("10", "11")
PRESETS = ("private_chat", "trusted_private_chat", "public_chat")


@dataclass(frozen=True)
class CreateRoomRequest:
    preset: str | None = None
    visibility: str = "private"
    name: str | None = None
    topic: str | None = None
    invite: tuple[str, ...] = ()
    initial_state: tuple[tuple[str, str, JsonDict], ...] = ()
    room_version: str | None = None
    is_direct: bool = False
    creation_content: JsonDict | None = None
    power_level_content_override: JsonDict | None = None


@dataclass(frozen=True)
class MessagesPage:
    chunk: list[Event]
    start: int
    end: int | None
    state: list[Event]


def _event_type_ok(event_type: str) -> None:
    if not event_type or len(event_type) > 255:
        raise InvalidParam("Event type must be 1 to 255 characters")


class Rooms:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        notifier: Notifier,
        accounts: Accounts,
        *,
        server_name: str,
        default_room_version: str,
        invite_state_types: Sequence[str],
        policy: PolicyHost,
    ) -> None:
        self._storage = storage
        self._policy = policy
        self._clock = clock
        self._notifier = notifier
        self._accounts = accounts
        self.server_name = server_name
        self.default_room_version = default_room_version
        self.invite_state_types = tuple(invite_state_types)
        self._locks = KeyedLock()

    # -- helpers ----------------------------------------------------------------------

    def _new(
        self,
        room_id: str,
        sender: str,
        event_type: str,
        content: JsonDict,
        *,
        state_key: str | None = None,
        requester: Requester | None = None,
        txn_id: str | None = None,
        unsigned: JsonDict | None = None,
    ) -> NewEvent:
        return NewEvent(
            event_id=new_event_id(),
            room_id=room_id,
            sender=sender,
            type=event_type,
            content=content,
            origin_server_ts=self._clock.now_ms(),
            state_key=state_key,
            txn_id=txn_id,
            device_id=requester.device_id if requester else None,
            unsigned=unsigned or {},
        )

    async def _append(
        self, events: Sequence[NewEvent], *, txn: ClientTxn | None = None
    ) -> list[Event]:
        stored = await self._storage.rooms.append_events(events, txn=txn)
        await self._notify_rooms(stored)
        return stored

    async def _append_member(
        self,
        requester: Requester,
        room_id: str,
        sender: str,
        target: str,
        content: JsonDict,
        *,
        unsigned: JsonDict | None = None,
    ) -> None:
        """Append one m.room.member event (the caller holds the room lock)."""
        await self._append(
            [
                self._new(
                    room_id,
                    sender,
                    "m.room.member",
                    content,
                    state_key=target,
                    requester=requester,
                    unsigned=unsigned,
                )
            ]
        )

    async def _notify_rooms(self, events: Sequence[Event]) -> None:
        users: set[str] = set()
        for room_id in {e.room_id for e in events}:
            for member in await self._storage.rooms.get_room_members(room_id):
                if member.membership in (Membership.JOIN, Membership.INVITE):
                    users.add(member.user_id)
        # The target of a leave/kick/ban must learn about it too.
        users.update(e.state_key for e in events if e.type == "m.room.member" and e.state_key)
        self._notifier.notify(users)

    async def _room(self, room_id: str) -> RoomRecord:
        room = await self._storage.rooms.get_room(room_id)
        if room is None:
            raise NotFoundError("Unknown room")
        return room

    async def _power_levels(self, room: RoomRecord) -> PowerLevels:
        event = await self._storage.rooms.get_state_event(room.room_id, "m.room.power_levels", "")
        return PowerLevels.of(event.content if event else None, room.creator)

    async def membership_of(self, room_id: str, user_id: str) -> str | None:
        record = await self._storage.rooms.get_membership(room_id, user_id)
        return None if record is None else record.membership

    async def require_joined(self, room_id: str, user_id: str) -> RoomRecord:
        room = await self._storage.rooms.get_room(room_id)
        if room is None or await self.membership_of(room_id, user_id) != Membership.JOIN:
            raise Forbidden(f"User {user_id} is not in room {room_id}")
        return room

    async def _member_content(self, user_id: str, membership: str) -> JsonDict:
        content: JsonDict = {"membership": membership}
        if membership == Membership.JOIN:
            user = await self._storage.users.get_user(user_id)
            if user is not None:
                if user.displayname is not None:
                    content["displayname"] = user.displayname
                if user.avatar_url is not None:
                    content["avatar_url"] = user.avatar_url
        return content

    # -- creation ---------------------------------------------------------------------

    async def create_room(
        self, requester: Requester, req: CreateRoomRequest, *, trusted: bool = False
    ) -> str:
        """Create a room. `trusted` (the server's own rooms, e.g. server notices) skips
        the spam-policy plugins and the invitees' invite blocking."""
        creator = requester.user_id
        version = req.room_version or self.default_room_version
        if version not in SUPPORTED_ROOM_VERSIONS:
            raise MatrixError(
                400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version}"
            )
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        if not trusted:
            raise_for(
                await self._policy.check_room_creation(
                    RoomCreationCheck(
                        creator=creator,
                        preset=preset,
                        name=req.name,
                        topic=req.topic,
                        invitees=req.invite,
                        is_direct=req.is_direct,
                    )
                )
            )
        for invitee in req.invite:
            await self._check_invitee(invitee)
        room_id = new_room_id(self.server_name)
        create_content: JsonDict = dict(req.creation_content or {})
        create_content["room_version"] = version
        if version == "10":
            create_content["creator"] = creator
        power: JsonDict = {
            "users": {creator: 100},
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 50 if preset == "public_chat" else 0,
            "notifications": {"room": 50},
        }
        if preset == "trusted_private_chat":
            for invitee in req.invite:
                power["users"][invitee] = 100
        if req.power_level_content_override:
            power.update(req.power_level_content_override)
            validate_power_levels(power)

        def ev(event_type: str, content: JsonDict, state_key: str = "") -> NewEvent:
            return self._new(
                room_id, creator, event_type, content, state_key=state_key, requester=requester
            )

        batch = [
            ev("m.room.create", create_content),
            ev("m.room.member", await self._member_content(creator, Membership.JOIN), creator),
            ev("m.room.power_levels", power),
            ev(
                "m.room.join_rules",
                {"join_rule": "public" if preset == "public_chat" else "invite"},
            ),
            ev("m.room.history_visibility", {"history_visibility": "shared"}),
        ]
        if preset != "public_chat":
            batch.append(ev("m.room.guest_access", {"guest_access": "can_join"}))
        seen = {(e.type, e.state_key) for e in batch}
        for event_type, state_key, content in req.initial_state:
            if event_type in ("m.room.create", "m.room.member", "m.room.power_levels"):
                raise InvalidParam(f"initial_state may not contain {event_type}")
            if (event_type, state_key) in seen:
                batch = [e for e in batch if (e.type, e.state_key) != (event_type, state_key)]
            batch.append(ev(event_type, content, state_key))
            seen.add((event_type, state_key))
        if req.name is not None:
            batch.append(ev("m.room.name", {"name": req.name}))
        if req.topic is not None:
            batch.append(ev("m.room.topic", {"topic": req.topic}))
        for event in batch:
            if event_size(event.content) > MAX_EVENT_BYTES:
                raise MatrixError(413, "M_TOO_LARGE", "Event too large")
        # Every invite is decided before the room exists, on the state the room will
        # have: a refused invitee leaves no half-made room behind.
        shared = self._initial_invite_state(batch)
        decisions = [
            (
                invitee,
                InviteDecision.allow()
                if trusted
                else await self._decide_invite(creator, invitee, room_id, None, shared),
            )
            for invitee in req.invite
        ]
        # Only now that the request has passed every check: a refused request must not
        # leave an empty room behind.
        await self._storage.rooms.create_room(
            RoomRecord(
                room_id=room_id,
                creator=creator,
                room_version=version,
                created_ts=self._clock.now_ms(),
            )
        )
        async with self._locks.hold(room_id):
            await self._append(batch)
        for invitee, decision in decisions:
            await self._store_invite(
                requester, room_id, invitee, None, req.is_direct, shared, decision
            )
        self._policy.signal("on_room_created", RoomCreated(room_id=room_id, creator=creator))
        return room_id

    def _initial_invite_state(self, batch: Sequence[NewEvent]) -> list[JsonDict]:
        """invite_state() for a room about to be created from `batch`."""
        policy = next(
            (e.content for e in batch if e.type == INVITE_STATE_POLICY and e.state_key == ""),
            None,
        )
        types = effective_types(self.invite_state_types, policy)
        return [
            {"type": e.type, "state_key": "", "sender": e.sender, "content": e.content}
            for e in batch
            if e.type in types and e.state_key == ""
        ]

    # -- membership -------------------------------------------------------------------

    async def _check_invitee(self, user_id: str) -> None:
        if not is_user_id(user_id):
            raise InvalidParam(f"Not a valid user id: {user_id!r}")
        if not self._accounts.is_local(user_id):
            raise Forbidden("This server does not federate: only local users can be invited")
        if await self._storage.users.get_user(user_id) is None:
            raise NotFoundError(f"Unknown user {user_id}")

    async def _refuse_if_blocked(self, inviter: str, invitee: str) -> None:
        """403 M_INVITE_BLOCKED if the invitee's invite permission config refuses it."""
        permission = await self._storage.account_data.get_account_data(
            invitee, None, INVITE_PERMISSION_CONFIG
        )
        if invite_blocked(permission, inviter):
            raise MatrixError(403, "M_INVITE_BLOCKED", f"{invitee} does not accept this invite")

    async def invite_state(self, room_id: str) -> list[JsonDict]:
        """The stripped state shared with an invitee now: the operator's types, narrowed
        by the room's invite_state_policy event if it has one."""
        state = await self._storage.rooms.get_current_state(room_id)
        policy = next(
            (e.content for e in state if e.type == INVITE_STATE_POLICY and e.state_key == ""),
            None,
        )
        types = effective_types(self.invite_state_types, policy)
        return [stripped_state(e) for e in state if e.type in types and e.state_key == ""]

    async def _authorize_invite(self, room: RoomRecord, inviter: str, invitee: str) -> None:
        target = await self.membership_of(room.room_id, invitee)
        if target == Membership.BAN:
            raise Forbidden(f"{invitee} is banned from the room")
        if target == Membership.JOIN:
            raise Forbidden(f"{invitee} is already in the room")
        power = await self._power_levels(room)
        power.require(inviter, power.level("invite"), "invite users")

    async def invite(
        self,
        requester: Requester,
        room_id: str,
        invitee: str,
        *,
        reason: str | None,
        is_direct: bool = False,
    ) -> None:
        """Invite a user, with a reason and the room's shared state. The invitee's own
        invite permission config and then the spam-policy plugins may refuse it
        (M_INVITE_BLOCKED / the plugin's errcode), drop it (the inviter sees success,
        nothing is stored) or redact what the invitee is shown."""
        inviter = requester.user_id
        await self._check_invitee(invitee)
        # Checked before the plugins run (outside the room lock), again under it.
        await self._authorize_invite(await self.require_joined(room_id, inviter), inviter, invitee)
        shared = await self.invite_state(room_id)
        decision = await self._decide_invite(inviter, invitee, room_id, reason, shared)
        await self._store_invite(requester, room_id, invitee, reason, is_direct, shared, decision)

    async def _decide_invite(
        self,
        inviter: str,
        invitee: str,
        room_id: str,
        reason: str | None,
        shared: list[JsonDict],
    ) -> InviteDecision:
        """The invitee's permission config, then the plugins. Raises when refused."""
        await self._refuse_if_blocked(inviter, invitee)
        decision = await self._policy.check_invite(
            InviteCheck(
                inviter=inviter,
                invitee=invitee,
                room_id=room_id,
                reason=reason,
                # Copies: a plugin that changes what it is shown changes nothing else.
                shared_state=tuple(copy.deepcopy(shared)),
                share_a_room=await self._policy.share_a_room(inviter, invitee),
            )
        )
        raise_for(decision)
        return decision

    async def _store_invite(
        self,
        requester: Requester,
        room_id: str,
        invitee: str,
        reason: str | None,
        is_direct: bool,
        shared: list[JsonDict],
        decision: InviteDecision,
    ) -> None:
        if decision.verdict is Verdict.DROP:
            return
        inviter = requester.user_id
        unsigned: JsonDict = {"invite_room_state": redact_state(shared, decision.redaction)}
        if decision.redaction.reason:
            unsigned["invite_reason_hidden"] = True
        async with self._locks.hold(room_id):
            room = await self.require_joined(room_id, inviter)
            await self._authorize_invite(room, inviter, invitee)
            content: JsonDict = {"membership": Membership.INVITE}
            if reason is not None:
                content["reason"] = reason
            if is_direct:
                content["is_direct"] = True
            await self._append_member(
                requester, room_id, inviter, invitee, content, unsigned=unsigned
            )

    async def _authorize_join(self, room_id: str, user_id: str) -> None:
        if await self._storage.rooms.get_room(room_id) is None:
            raise NotFoundError("Unknown room")
        current = await self.membership_of(room_id, user_id)
        if current == Membership.BAN:
            raise Forbidden("You are banned from this room")
        if current not in (Membership.JOIN, Membership.INVITE):
            rules = await self._storage.rooms.get_state_event(room_id, "m.room.join_rules", "")
            join_rule = rules.content.get("join_rule") if rules else "invite"
            if join_rule != "public":
                raise Forbidden("You are not invited to this room")

    async def join(self, requester: Requester, room_id: str, reason: str | None = None) -> None:
        user_id = requester.user_id
        # Checked before the plugins run (outside the room lock), again under it.
        await self._authorize_join(room_id, user_id)
        raise_for(await self._policy.check_join(JoinCheck(user_id=user_id, room_id=room_id)))
        async with self._locks.hold(room_id):
            await self._authorize_join(room_id, user_id)
            content = await self._member_content(user_id, Membership.JOIN)
            if reason is not None:
                content["reason"] = reason
            await self._append_member(requester, room_id, user_id, user_id, content)

    async def leave(self, requester: Requester, room_id: str, reason: str | None = None) -> None:
        user_id = requester.user_id
        async with self._locks.hold(room_id):
            current = await self.membership_of(room_id, user_id)
            if current not in (Membership.JOIN, Membership.INVITE, Membership.KNOCK):
                if await self._storage.rooms.get_room(room_id) is None:
                    raise NotFoundError("Unknown room")
                raise Forbidden("You are not in this room")
            content: JsonDict = {"membership": Membership.LEAVE}
            if reason is not None:
                content["reason"] = reason
            await self._append_member(requester, room_id, user_id, user_id, content)

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
        async with self._locks.hold(room_id):
            room = await self.require_joined(room_id, requester.user_id)
            power = await self._power_levels(room)
            current = await self.membership_of(room_id, target)
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
            await self._append_member(requester, room_id, requester.user_id, target, content)

    async def forget(self, requester: Requester, room_id: str) -> None:
        current = await self.membership_of(room_id, requester.user_id)
        if current is None:
            raise NotFoundError("You have no membership in this room")
        if current in (Membership.JOIN, Membership.INVITE):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self._storage.rooms.forget_room(requester.user_id, room_id)

    async def joined_rooms(self, user_id: str) -> list[str]:
        return [
            m.room_id
            for m in await self._storage.rooms.get_user_memberships(user_id)
            if m.membership == Membership.JOIN
        ]

    # -- sending ----------------------------------------------------------------------

    async def send_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: JsonDict,
        *,
        txn_id: str | None = None,
        state_key: str | None = None,
        trusted: bool = False,
    ) -> str:
        """Send a message (state_key None) or a state event; returns the event id.

        With a txn_id, a retry of the same request returns the first event's id: the
        event and the transaction's record are stored in one atomic write, so a retry
        after any failure (a crash, a store error, a lost reply) finds either both or
        neither.
        """
        _event_type_ok(event_type)
        if event_size(content, event_type, state_key) > MAX_EVENT_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "Event too large")
        txn = (
            ClientTxn(requester.user_id, requester.device_id, f"{room_id}/{event_type}/{txn_id}")
            if txn_id is not None
            else None
        )
        if state_key is None and not trusted:
            dropped = await self._check_message(requester, room_id, event_type, content, txn)
            if dropped is not None:
                return dropped
        async with self._locks.hold(room_id):
            if txn is not None:
                # The cheap answer for a retry; the append below is what guarantees it.
                existing = await self._storage.txns.get_txn_event(
                    txn.user_id, txn.device_id, txn.txn_key
                )
                if existing is not None:
                    return existing
            room = await self.require_joined(room_id, requester.user_id)
            power = await self._power_levels(room)
            power.require(
                requester.user_id,
                power.event_level(event_type, state_key is not None),
                f"send {event_type} events",
            )
            if state_key is not None:
                await self._check_state_event(
                    requester, room, power, event_type, state_key, content
                )
            new = self._new(
                room_id,
                requester.user_id,
                event_type,
                content,
                state_key=state_key,
                requester=requester,
                txn_id=txn_id,
            )
            try:
                (event,) = await self._append([new], txn=txn)
            except DuplicateTransaction as exc:
                # Recorded since the check above, by another process sharing the store
                # or by a concurrent request whose plugins dropped the message.
                return exc.event_id
            return event.event_id

    async def _check_message(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: JsonDict,
        txn: ClientTxn | None,
    ) -> str | None:
        """Ask the plugins about a message (outside the room lock). Raises on deny;
        on drop returns the event id the sender is told (nothing is stored or sent, and
        a retry of the transaction gets the same id); None to go on and send."""
        if txn is not None:
            existing = await self._storage.txns.get_txn_event(
                txn.user_id, txn.device_id, txn.txn_key
            )
            if existing is not None:
                return existing
        await self.require_joined(room_id, requester.user_id)
        decision = await self._policy.check_event(
            EventCheck(
                sender=requester.user_id,
                room_id=room_id,
                type=event_type,
                content=copy.deepcopy(content),
            )
        )
        raise_for(decision)
        if decision.verdict is not Verdict.DROP:
            return None
        event_id = new_event_id()
        if txn is not None:
            # The record is the only write: nothing to keep atomic with it.
            await self._storage.txns.put_txn_event(
                txn.user_id, txn.device_id, txn.txn_key, event_id
            )
        return event_id

    async def _check_state_event(
        self,
        requester: Requester,
        room: RoomRecord,
        power: PowerLevels,
        event_type: str,
        state_key: str,
        content: JsonDict,
    ) -> None:
        if event_type == "m.room.create":
            raise Forbidden("The room's create event cannot be replaced")
        if event_type == "m.room.member":
            raise Forbidden("Use the membership endpoints (join, invite, leave, kick, ban)")
        if state_key.startswith("@") and state_key != requester.user_id:
            raise Forbidden("State keys that are user ids belong to that user")
        if event_type == "m.room.power_levels":
            validate_power_levels(content)
            power.check_change(requester.user_id, content)
        if event_type == "m.room.join_rules" and not isinstance(content.get("join_rule"), str):
            raise BadJson("m.room.join_rules needs a string 'join_rule'")

    # -- reading ----------------------------------------------------------------------

    async def _read_cap(self, room_id: str, user_id: str) -> int | None:
        """How far the user may read: None for all (joined), else up to their leave.

        Only a leave or ban that ended a join opens the history up to it: a rejected
        invite, or a ban of someone who never joined, must not.
        """
        record = await self._storage.rooms.get_membership(room_id, user_id)
        if record is None or record.forgotten:
            raise Forbidden(f"User {user_id} is not in room {room_id}")
        if record.membership == Membership.JOIN:
            return None
        if record.membership in (Membership.LEAVE, Membership.BAN) and ended_a_join(
            await self._storage.rooms.get_event(record.event_id)
        ):
            return record.stream_pos
        raise Forbidden(f"User {user_id} is not in room {room_id}")

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> Event:
        cap = await self._read_cap(room_id, requester.user_id)
        event = await self._storage.rooms.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or (cap is not None and event.stream_pos > cap)
        ):
            raise NotFoundError("Event not found")
        return event

    async def get_state(self, requester: Requester, room_id: str) -> list[Event]:
        await self.require_joined(room_id, requester.user_id)
        return await self._storage.rooms.get_current_state(room_id)

    async def get_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str
    ) -> Event:
        await self.require_joined(room_id, requester.user_id)
        event = await self._storage.rooms.get_state_event(room_id, event_type, state_key)
        if event is None:
            raise NotFoundError("Event not found")
        return event

    async def members(
        self,
        requester: Requester,
        room_id: str,
        *,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[Event]:
        await self.require_joined(room_id, requester.user_id)
        out = []
        for event in await self._storage.rooms.get_current_state(room_id):
            if event.type != "m.room.member":
                continue
            value = event.content.get("membership")
            if membership is not None and value != membership:
                continue
            if not_membership is not None and value == not_membership:
                continue
            out.append(event)
        return out

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, JsonDict]:
        events = await self.members(requester, room_id, membership=Membership.JOIN)
        out: dict[str, JsonDict] = {}
        for event in events:
            profile: JsonDict = {}
            for src, dst in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                if isinstance(event.content.get(src), str):
                    profile[dst] = event.content[src]
            out[event.state_key or ""] = profile
        return out

    async def messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        from_pos: int | None,
        to_pos: int | None,
        backwards: bool,
        limit: int,
    ) -> MessagesPage:
        """One page of history. Tokens are positions: token P is the point just after
        the event at stream position P."""
        cap = await self._read_cap(room_id, requester.user_id)
        if from_pos is None:
            from_pos = (await self._storage.rooms.current_stream_pos()) if backwards else 0
        if cap is not None:
            from_pos = min(from_pos, cap)
        if backwards:
            events = await self._storage.rooms.get_room_events(
                room_id, after=to_pos, before=from_pos + 1, limit=limit, newest_first=True
            )
            end = events[-1].stream_pos - 1 if len(events) == limit and events else None
        else:
            upper = to_pos + 1 if to_pos is not None else None
            if cap is not None:
                upper = min(upper, cap + 1) if upper is not None else cap + 1
            events = await self._storage.rooms.get_room_events(
                room_id, after=from_pos, before=upper, limit=limit, newest_first=False
            )
            end = events[-1].stream_pos if len(events) == limit and events else None
        return MessagesPage(chunk=events, start=from_pos, end=end, state=[])

    # -- profile propagation ----------------------------------------------------------

    async def set_profile(self, requester: Requester, field: str, value: str | None) -> None:
        if field not in ("displayname", "avatar_url"):
            raise InvalidParam(f"Unknown profile field {field}")
        await self._storage.users.set_profile_field(
            requester.user_id, "displayname" if field == "displayname" else "avatar_url", value
        )
        # Clients read display names from member events: refresh them in joined rooms.
        for room_id in await self.joined_rooms(requester.user_id):
            async with self._locks.hold(room_id):
                if await self.membership_of(room_id, requester.user_id) != Membership.JOIN:
                    continue
                content = await self._member_content(requester.user_id, Membership.JOIN)
                await self._append_member(
                    requester, room_id, requester.user_id, requester.user_id, content
                )

    def format(self, event: Event, requester: Requester | None, **kw: Any) -> JsonDict:
        return client_event(
            event,
            now_ms=self._clock.now_ms(),
            device_id=requester.device_id if requester else None,
            **kw,
        )


def ended_a_join(membership_event: Event | None) -> bool:
    """Whether this membership event replaced a join: its target was in the room until
    then (a leave after an invite or a knock, or a ban after a leave, was not).

    Conservative: a user who joined, left and was banned later reads no history.
    """
    if membership_event is None or membership_event.prev_content is None:
        return False
    return membership_event.prev_content.get("membership") == Membership.JOIN
