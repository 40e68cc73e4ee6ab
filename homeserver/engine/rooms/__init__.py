"""Rooms: creation, membership, invites, sending, and reading state and history, under
the auth rules. One service per concern, all over one shared core (`core.py`: the
per-room locks, event building and appending, power levels, membership checks).

`Rooms` builds them together; callers use the part that owns what they need, e.g.
`rooms.membership.join(...)`, `rooms.messages.send_event(...)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends import Storage
from homeserver.changefeed import ChangeFeed
from homeserver.clock import Clock
from homeserver.engine.accounts import Accounts
from homeserver.engine.event_sources import Signal
from homeserver.engine.gatekeeper import Gatekeeper
from homeserver.engine.rooms.core import RoomCore
from homeserver.engine.rooms.creation import (
    PRESETS,
    SUPPORTED_ROOM_VERSIONS,
    CreateRoomRequest,
    Preset,
    RoomCreation,
)
from homeserver.engine.rooms.history import MessagesPage, RoomHistory, ended_a_join
from homeserver.engine.rooms.invites import RoomInvites, invite_state_events
from homeserver.engine.rooms.membership import RoomMembership
from homeserver.engine.rooms.messages import RoomMessages

__all__ = [
    "PRESETS",
    "SUPPORTED_ROOM_VERSIONS",
    "CreateRoomRequest",
    "MessagesPage",
    "Preset",
    "RoomCore",
    "RoomCreation",
    "RoomHistory",
    "RoomInvites",
    "RoomMembership",
    "RoomMessages",
    "Rooms",
    "ended_a_join",
    "invite_state_events",
]


class Rooms:
    """The room services of one engine, built over one core (so one set of locks)."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        feed: ChangeFeed,
        accounts: Accounts,
        *,
        server_name: str,
        default_room_version: str,
        invite_state_types: Sequence[str],
        gatekeeper: Gatekeeper,
        signal: Signal,
    ) -> None:
        self.core = RoomCore(storage, clock, feed)
        self.invites = RoomInvites(
            self.core, storage, gatekeeper, accounts, invite_state_types=invite_state_types
        )
        self.creation = RoomCreation(
            self.core,
            self.invites,
            storage,
            clock,
            gatekeeper,
            signal,
            server_name=server_name,
            default_room_version=default_room_version,
        )
        self.membership = RoomMembership(self.core, storage, gatekeeper)
        self.messages = RoomMessages(self.core, storage, gatekeeper)
        self.history = RoomHistory(self.core, storage)
