"""Room creation: the presets and the power levels a new room starts with are data;
create_room checks the request, builds the room's first events, decides every invite
on the state the room will have, and only then stores anything."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from backends import Storage
from backends.records import JsonDict, Membership, NewEvent, RoomRecord
from homeserver.clock import Clock
from homeserver.engine.event_sources import Signal
from homeserver.engine.events import MAX_EVENT_BYTES, event_size, new_room_id
from homeserver.engine.gatekeeper import Gatekeeper, raise_for
from homeserver.engine.power_levels import validate_power_levels
from homeserver.engine.rooms.core import RoomCore
from homeserver.engine.rooms.invites import RoomInvites
from homeserver.errors import InvalidParam, MatrixError
from homeserver.types import Requester
from plugins.api import InviteDecision, RoomCreated, RoomCreationCheck

SUPPORTED_ROOM_VERSIONS = ("10", "11")


@dataclass(frozen=True)
class Preset:
    """What a createRoom preset sets up."""

    join_rule: str
    # The power level needed to invite.
    invite_level: int
    # Whether the room gets m.room.guest_access "can_join".
    guest_access: bool
    # Whether the invitees get the creator's power level.
    invitees_are_admins: bool


PRESETS: Final[Mapping[str, Preset]] = {
    "private_chat": Preset(
        join_rule="invite", invite_level=0, guest_access=True, invitees_are_admins=False
    ),
    "trusted_private_chat": Preset(
        join_rule="invite", invite_level=0, guest_access=True, invitees_are_admins=True
    ),
    "public_chat": Preset(
        join_rule="public", invite_level=50, guest_access=False, invitees_are_admins=False
    ),
}

CREATOR_LEVEL = 100

# The m.room.power_levels content of a new room, before the creator (and, by preset,
# the invitees) are added to "users" and the preset's invite level is set.
DEFAULT_POWER_LEVELS: Final[JsonDict] = {
    "users": {},
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
    "invite": 0,
    "notifications": {"room": 50},
}

# Events a room's creation sets itself: initial_state may not contain them.
_RESERVED_INITIAL_STATE = ("m.room.create", "m.room.member", "m.room.power_levels")


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


def preset_name(req: CreateRoomRequest) -> str:
    """The request's preset; without one, visibility decides."""
    return req.preset or ("public_chat" if req.visibility == "public" else "private_chat")


def initial_power_levels(creator: str, preset: Preset, invitees: Sequence[str]) -> JsonDict:
    power = copy.deepcopy(DEFAULT_POWER_LEVELS)
    power["users"][creator] = CREATOR_LEVEL
    if preset.invitees_are_admins:
        for invitee in invitees:
            power["users"][invitee] = CREATOR_LEVEL
    power["invite"] = preset.invite_level
    return power


def create_content(creator: str, version: str, creation_content: JsonDict | None) -> JsonDict:
    content: JsonDict = dict(creation_content or {})
    content["room_version"] = version
    if version == "10":
        content["creator"] = creator
    return content


# Builds one state event of the new room: (type, content, state_key).
StateEvent = Callable[[str, JsonDict, str], NewEvent]


def with_initial_state(
    batch: list[NewEvent], initial_state: Sequence[tuple[str, str, JsonDict]], ev: StateEvent
) -> list[NewEvent]:
    """The batch with the request's initial_state added; each entry replaces what the
    preset set for the same (type, state_key)."""
    seen = {(e.type, e.state_key) for e in batch}
    for event_type, state_key, content in initial_state:
        if event_type in _RESERVED_INITIAL_STATE:
            raise InvalidParam(f"initial_state may not contain {event_type}")
        if (event_type, state_key) in seen:
            batch = [e for e in batch if (e.type, e.state_key) != (event_type, state_key)]
        batch.append(ev(event_type, content, state_key))
        seen.add((event_type, state_key))
    return batch


class RoomCreation:
    def __init__(
        self,
        core: RoomCore,
        invites: RoomInvites,
        storage: Storage,
        clock: Clock,
        gatekeeper: Gatekeeper,
        signal: Signal,
        *,
        server_name: str,
        default_room_version: str,
    ) -> None:
        self._core = core
        self._invites = invites
        self._storage = storage
        self._clock = clock
        self._gatekeeper = gatekeeper
        self._signal = signal
        self._server_name = server_name
        self._default_room_version = default_room_version

    async def create_room(
        self, requester: Requester, req: CreateRoomRequest, *, trusted: bool = False
    ) -> str:
        """Create a room. `trusted` (the server's own rooms, e.g. server notices) skips
        the spam-policy plugins and the invitees' invite blocking."""
        creator = requester.user_id
        version = self._room_version(req)
        name = preset_name(req)
        preset = PRESETS.get(name)
        if preset is None:
            raise InvalidParam(f"Unknown preset {name!r}")
        if not trusted:
            await self._check_policy(creator, name, req)
        for invitee in req.invite:
            await self._invites.check_invitee(invitee)
        room_id = new_room_id(self._server_name)
        batch = await self._first_events(requester, room_id, version, preset, req)
        # Every invite is decided before the room exists, on the state the room will
        # have: a refused invitee leaves no half-made room behind.
        shared = self._invites.initial_state(batch)
        decisions = [
            (
                invitee,
                InviteDecision.allow()
                if trusted
                else await self._invites.decide(creator, invitee, room_id, None, shared),
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
        async with self._core.hold(room_id):
            await self._core.append(batch)
        for invitee, decision in decisions:
            await self._invites.store(
                requester, room_id, invitee, None, req.is_direct, shared, decision
            )
        self._signal("on_room_created", RoomCreated(room_id=room_id, creator=creator))
        return room_id

    def _room_version(self, req: CreateRoomRequest) -> str:
        version = req.room_version or self._default_room_version
        if version not in SUPPORTED_ROOM_VERSIONS:
            raise MatrixError(
                400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version}"
            )
        return version

    async def _check_policy(self, creator: str, preset: str, req: CreateRoomRequest) -> None:
        raise_for(
            await self._gatekeeper.check_room_creation(
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

    async def _first_events(
        self,
        requester: Requester,
        room_id: str,
        version: str,
        preset: Preset,
        req: CreateRoomRequest,
    ) -> list[NewEvent]:
        """The room's first events, in order, each checked for size."""
        creator = requester.user_id
        power = initial_power_levels(creator, preset, req.invite)
        if req.power_level_content_override:
            power.update(req.power_level_content_override)
            validate_power_levels(power)

        def ev(event_type: str, content: JsonDict, state_key: str = "") -> NewEvent:
            return self._core.new_event(
                room_id, creator, event_type, content, state_key=state_key, requester=requester
            )

        member = await self._core.member_content(creator, Membership.JOIN)
        batch = [
            ev("m.room.create", create_content(creator, version, req.creation_content)),
            ev("m.room.member", member, creator),
            ev("m.room.power_levels", power),
            ev("m.room.join_rules", {"join_rule": preset.join_rule}),
            ev("m.room.history_visibility", {"history_visibility": "shared"}),
        ]
        if preset.guest_access:
            batch.append(ev("m.room.guest_access", {"guest_access": "can_join"}))
        batch = with_initial_state(batch, req.initial_state, ev)
        if req.name is not None:
            batch.append(ev("m.room.name", {"name": req.name}))
        if req.topic is not None:
            batch.append(ev("m.room.topic", {"topic": req.topic}))
        for event in batch:
            if event_size(event.content) > MAX_EVENT_BYTES:
                raise MatrixError(413, "M_TOO_LARGE", "Event too large")
        return batch
