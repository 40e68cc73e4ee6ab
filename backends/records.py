"""The storage records: the values the storage interface takes and returns.

All of them are frozen dataclasses (or constants): the stores take and return these,
never driver rows or mutable dicts they keep a reference to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]


class Membership:
    JOIN = "join"
    INVITE = "invite"
    LEAVE = "leave"
    BAN = "ban"
    KNOCK = "knock"
    ALL = frozenset({"join", "invite", "leave", "ban", "knock"})


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    password_hash: str | None
    created_ts: int
    displayname: str | None = None
    avatar_url: str | None = None
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    user_id: str
    device_id: str
    display_name: str | None
    created_ts: int
    last_seen_ts: int | None = None


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    user_id: str
    device_id: str
    created_ts: int


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room_id: str
    creator: str
    room_version: str
    created_ts: int


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended; the store assigns its stream position."""

    event_id: str
    room_id: str
    sender: str
    type: str
    content: JsonDict
    origin_server_ts: int
    state_key: str | None = None
    # Kept for the sender's own device: clients match their local echo by it.
    txn_id: str | None = None
    device_id: str | None = None
    # Server-side unsigned data that travels with the event (e.g. invite_room_state).
    unsigned: JsonDict = field(default_factory=dict)
    redacts: str | None = None


@dataclass(frozen=True, slots=True)
class ClientTxn:
    """A client transaction: what makes a retried request recognisable as a retry.

    Scoped to the device that sent it (clients pick `txn_key`s per device)."""

    user_id: str
    device_id: str
    txn_key: str


@dataclass(frozen=True, slots=True)
class Event:
    """A stored room event with its position in the server-wide stream."""

    stream_pos: int
    event_id: str
    room_id: str
    sender: str
    type: str
    content: JsonDict
    origin_server_ts: int
    state_key: str | None = None
    txn_id: str | None = None
    device_id: str | None = None
    unsigned: JsonDict = field(default_factory=dict)
    redacts: str | None = None
    # The content of the state event this one replaced, if any.
    prev_content: JsonDict | None = None

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @classmethod
    def from_new(cls, new: NewEvent, stream_pos: int, prev_content: JsonDict | None) -> Event:
        return cls(
            stream_pos=stream_pos,
            event_id=new.event_id,
            room_id=new.room_id,
            sender=new.sender,
            type=new.type,
            content=new.content,
            origin_server_ts=new.origin_server_ts,
            state_key=new.state_key,
            txn_id=new.txn_id,
            device_id=new.device_id,
            unsigned=new.unsigned,
            redacts=new.redacts,
            prev_content=prev_content,
        )


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    """A user's current membership in a room and the event that set it."""

    room_id: str
    user_id: str
    membership: str
    event_id: str
    stream_pos: int
    forgotten: bool = False


@dataclass(frozen=True, slots=True)
class AccountDataRecord:
    user_id: str
    room_id: str | None
    type: str
    content: JsonDict
    stream_pos: int


class Presence:
    ONLINE = "online"
    UNAVAILABLE = "unavailable"
    OFFLINE = "offline"
    ALL = ("online", "unavailable", "offline")
    # Strength order: a user's presence is the strongest over their live sessions.
    RANK = {"offline": 0, "unavailable": 1, "online": 2}


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session: a group of requests from one device."""

    session_id: str
    user_id: str
    device_id: str
    presence: str
    status_msg: str | None
    created_ts: int
    last_active_ts: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """A user's aggregated presence as last published, at its stream position."""

    user_id: str
    presence: str
    status_msg: str | None
    last_active_ts: int
    stream_pos: int = 0


@dataclass(frozen=True, slots=True)
class TypingChange:
    """The typing state of a room after a change, at its stream position."""

    room_id: str
    user_ids: tuple[str, ...]
    stream_pos: int


class ServerEventTarget:
    USER = "user"
    ALL_USERS = "all"
    ROOM = "room"
    ALL = ("user", "all", "room")


@dataclass(frozen=True, slots=True)
class NewServerEvent:
    """An event sent by the server itself (sender: the server name), not a room event.

    target_kind "user": target is a user id; "room": a room id (delivered to its joined
    members); "all": every local user (target None)."""

    event_id: str
    sender: str
    type: str
    content: JsonDict
    origin_server_ts: int
    target_kind: str
    target: str | None


@dataclass(frozen=True, slots=True)
class ServerEvent:
    stream_pos: int
    event_id: str
    sender: str
    type: str
    content: JsonDict
    origin_server_ts: int
    target_kind: str
    target: str | None
