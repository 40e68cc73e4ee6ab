"""Invites: whether an invite may be made (auth rules, the invitee's invite permission
config, the spam-policy plugins), storing it with the slice of room state shared with
the invitee, and rendering that state into the invitee's /sync invite_state."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

from backends import Storage
from backends.records import Event, JsonDict, Membership, NewEvent, RoomRecord
from homeserver.engine.accounts import Accounts
from homeserver.engine.events import INVITE_REASON_HIDDEN, INVITE_ROOM_STATE, stripped_state
from homeserver.engine.gatekeeper import Gatekeeper, raise_for
from homeserver.engine.rooms.core import RoomCore
from homeserver.errors import Forbidden, InvalidParam, MatrixError, NotFoundError
from homeserver.namespace import INVITE_STATE_POLICY
from homeserver.types import Requester, is_user_id, server_name_of
from plugins.api import InviteCheck, InviteDecision, InviteRedaction, Verdict

INVITE_PERMISSION_CONFIG = "m.invite_permission_config"


# -- policy pieces ---------------------------------------------------------------------


def effective_types(operator_types: Sequence[str], room_policy: JsonDict | None) -> list[str]:
    """The operator's list is the upper bound; a room's policy event may narrow it."""
    allowed = list(operator_types)
    if room_policy is not None:
        narrowed = room_policy.get("types")
        if isinstance(narrowed, list):
            allowed = [t for t in allowed if t in narrowed]
    return allowed


def invite_blocked(permission_config: JsonDict | None, inviter: str) -> bool:
    """Whether the invitee's m.invite_permission_config refuses this inviter.

    `{"block_all": true}` refuses everyone. `{"default_action": "block", "allow_users":
    [...], "allow_servers": [globs]}` refuses everyone but those listed."""
    if not permission_config:
        return False
    if permission_config.get("block_all") is True:
        return True
    if permission_config.get("default_action") != "block":
        return False
    users = permission_config.get("allow_users")
    if isinstance(users, list) and inviter in users:
        return False
    servers = permission_config.get("allow_servers")
    if isinstance(servers, list):
        server = server_name_of(inviter)
        if any(isinstance(p, str) and fnmatch.fnmatchcase(server, p) for p in servers):
            return False
    return True


def redact_state(shared: Sequence[JsonDict], redaction: InviteRedaction) -> list[JsonDict]:
    """The shared stripped state without the redacted types and content fields."""
    out = []
    for event in shared:
        if event.get("type") in redaction.state_types:
            continue
        fields = {key for etype, key in redaction.state_fields if etype == event.get("type")}
        if fields:
            event = copy.deepcopy(event)
            for key in fields:
                event.get("content", {}).pop(key, None)
        out.append(event)
    return out


def invite_unsigned(shared: list[JsonDict], decision: InviteDecision) -> JsonDict:
    """The server-only unsigned data stored with an invite: the state shared with the
    invitee (as the plugins redacted it) and whether its reason is hidden from them."""
    unsigned: JsonDict = {INVITE_ROOM_STATE: redact_state(shared, decision.redaction)}
    if decision.redaction.reason:
        unsigned[INVITE_REASON_HIDDEN] = True
    return unsigned


def invite_state_events(invite: Event | None) -> list[JsonDict]:
    """An invitee's /sync invite_state events: the state shared with them when the
    invite was stored, then the invite itself (without its reason if a spam policy hid
    it from them)."""
    events: list[JsonDict] = []
    if invite is not None:
        shared = invite.unsigned.get(INVITE_ROOM_STATE)
        if isinstance(shared, list):
            events.extend(s for s in shared if isinstance(s, dict))
        member = stripped_state(invite)
        if invite.unsigned.get(INVITE_REASON_HIDDEN):
            member["content"] = {k: v for k, v in member["content"].items() if k != "reason"}
        events.append(member)
    return events


# -- the service -----------------------------------------------------------------------


class RoomInvites:
    def __init__(
        self,
        core: RoomCore,
        storage: Storage,
        gatekeeper: Gatekeeper,
        accounts: Accounts,
        *,
        invite_state_types: Sequence[str],
    ) -> None:
        self._core = core
        self._storage = storage
        self._gatekeeper = gatekeeper
        self._accounts = accounts
        self.invite_state_types = tuple(invite_state_types)

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
        await self.check_invitee(invitee)
        # Checked before the plugins run (outside the room lock), again under it.
        room = await self._core.require_joined(room_id, inviter)
        await self._authorize(room, inviter, invitee)
        shared = await self.invite_state(room_id)
        decision = await self.decide(inviter, invitee, room_id, reason, shared)
        await self.store(requester, room_id, invitee, reason, is_direct, shared, decision)

    async def check_invitee(self, user_id: str) -> None:
        """The invitee is a well-formed, local, existing user."""
        if not is_user_id(user_id):
            raise InvalidParam(f"Not a valid user id: {user_id!r}")
        if not self._accounts.is_local(user_id):
            raise Forbidden("This server does not federate: only local users can be invited")
        if await self._storage.users.get_user(user_id) is None:
            raise NotFoundError(f"Unknown user {user_id}")

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

    def initial_state(self, batch: Sequence[NewEvent]) -> list[JsonDict]:
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

    async def decide(
        self,
        inviter: str,
        invitee: str,
        room_id: str,
        reason: str | None,
        shared: list[JsonDict],
    ) -> InviteDecision:
        """The invitee's permission config, then the plugins. Raises when refused."""
        await self._refuse_if_blocked(inviter, invitee)
        decision = await self._gatekeeper.check_invite(
            InviteCheck(
                inviter=inviter,
                invitee=invitee,
                room_id=room_id,
                reason=reason,
                # Copies: a plugin that changes what it is shown changes nothing else.
                shared_state=tuple(copy.deepcopy(shared)),
                share_a_room=await self._core.share_a_room(inviter, invitee),
            )
        )
        raise_for(decision)
        return decision

    async def store(
        self,
        requester: Requester,
        room_id: str,
        invitee: str,
        reason: str | None,
        is_direct: bool,
        shared: list[JsonDict],
        decision: InviteDecision,
    ) -> None:
        """Store an invite the decision allowed (nothing if it dropped it), after
        checking the auth rules again under the room lock."""
        if decision.verdict is Verdict.DROP:
            return
        inviter = requester.user_id
        unsigned = invite_unsigned(shared, decision)
        async with self._core.hold(room_id):
            room = await self._core.require_joined(room_id, inviter)
            await self._authorize(room, inviter, invitee)
            content: JsonDict = {"membership": Membership.INVITE}
            if reason is not None:
                content["reason"] = reason
            if is_direct:
                content["is_direct"] = True
            await self._core.append_member(
                requester, room_id, inviter, invitee, content, unsigned=unsigned
            )

    async def _refuse_if_blocked(self, inviter: str, invitee: str) -> None:
        """403 M_INVITE_BLOCKED if the invitee's invite permission config refuses it."""
        permission = await self._storage.account_data.get_account_data(
            invitee, None, INVITE_PERMISSION_CONFIG
        )
        if invite_blocked(permission, inviter):
            raise MatrixError(403, "M_INVITE_BLOCKED", f"{invitee} does not accept this invite")

    async def _authorize(self, room: RoomRecord, inviter: str, invitee: str) -> None:
        target = await self._core.membership_of(room.room_id, invitee)
        if target == Membership.BAN:
            raise Forbidden(f"{invitee} is banned from the room")
        if target == Membership.JOIN:
            raise Forbidden(f"{invitee} is already in the room")
        power = await self._core.power_levels(room)
        power.require(inviter, power.level("invite"), "invite users")
