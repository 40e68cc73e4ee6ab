"""Every Redis key (and composite hash field) this backend uses, in one place.

All keys live under `<prefix>:`. Variable parts are escaped (`%` -> `%25`, `:` -> `%3A`)
so that a key with two variable parts can never collide with another one: user ids
contain `:` (`@alice:example.org`) and device ids are chosen by clients.

Layout (P = prefix, {x} = escaped variable part):

    P:stream_pos                    string  the stream counter shared by events and
                                            account data (INCR; absent means 0)
    P:filter_id                     string  filter id counter (INCR)
    P:user:{user}                   hash    UserRecord fields (None fields absent)
    P:user_devices:{user}           set     device ids of the user
    P:device:{user}:{device}        hash    DeviceRecord fields (None fields absent)
    P:device_tokens:{user}:{device} set     the *key names* of the device's tokens
    P:token:{token}                 hash    AccessToken fields
    P:txns:{user}:{device}          hash    txn key -> event id
    P:room:{room}                   hash    RoomRecord fields
    P:room_latest                   hash    room id -> position of its newest event
    P:events                        hash    event id -> `[stream_pos, prev_content, body]`
    P:room_events:{room}            zset    event id scored by stream position
    P:room_state:{room}             hash    state field -> event id
    P:room_state_content:{room}     hash    state field -> content JSON of that event
    P:room_members:{room}           hash    user id -> membership record
    P:user_rooms:{user}             hash    room id -> membership record (same text)
    P:account_data:{user}           hash    account data field -> `[stream_pos, content]`
    P:account_data_pos:{user}       zset    account data field scored by stream position
    P:filters:{user}                hash    filter id -> definition JSON

A state field is the JSON array `[type, state_key]` and an account data field is
`[room_id or null, type]`: unambiguous for any strings. Membership records are the
JSON array `[forgotten (0|1), stream_pos, membership, event_id]`; keeping the flag
first lets the Lua scripts flip it without a JSON parser.

The Lua scripts never build key names: callers pass every key they touch (the
device's token set holds full token key names for the same reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


def _part(value: str) -> str:
    return value.replace("%", "%25").replace(":", "%3A")


def state_field(type: str, state_key: str) -> str:
    """The hash field of a room's current state entry for (type, state_key)."""
    return json.dumps([type, state_key], separators=(",", ":"))


def account_data_field(room_id: str | None, type: str) -> str:
    """The hash field of one account data entry of a user."""
    return json.dumps([room_id, type], separators=(",", ":"))


def parse_account_data_field(field: str) -> tuple[str | None, str]:
    room_id, type = json.loads(field)
    return room_id, type


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str

    def _key(self, kind: str, *parts: str) -> str:
        return ":".join((self.prefix, kind, *(_part(p) for p in parts)))

    @property
    def stream_pos(self) -> str:
        return f"{self.prefix}:stream_pos"

    @property
    def filter_id(self) -> str:
        return f"{self.prefix}:filter_id"

    @property
    def room_latest(self) -> str:
        return f"{self.prefix}:room_latest"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    def user(self, user_id: str) -> str:
        return self._key("user", user_id)

    def user_devices(self, user_id: str) -> str:
        return self._key("user_devices", user_id)

    def device(self, user_id: str, device_id: str) -> str:
        return self._key("device", user_id, device_id)

    def device_tokens(self, user_id: str, device_id: str) -> str:
        return self._key("device_tokens", user_id, device_id)

    def token(self, token: str) -> str:
        return self._key("token", token)

    def txns(self, user_id: str, device_id: str) -> str:
        return self._key("txns", user_id, device_id)

    def room(self, room_id: str) -> str:
        return self._key("room", room_id)

    def room_events(self, room_id: str) -> str:
        return self._key("room_events", room_id)

    def room_state(self, room_id: str) -> str:
        return self._key("room_state", room_id)

    def room_state_content(self, room_id: str) -> str:
        return self._key("room_state_content", room_id)

    def room_members(self, room_id: str) -> str:
        return self._key("room_members", room_id)

    def user_rooms(self, user_id: str) -> str:
        return self._key("user_rooms", user_id)

    def account_data(self, user_id: str) -> str:
        return self._key("account_data", user_id)

    def account_data_pos(self, user_id: str) -> str:
        return self._key("account_data_pos", user_id)

    def filters(self, user_id: str) -> str:
        return self._key("filters", user_id)
