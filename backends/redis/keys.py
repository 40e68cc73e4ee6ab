"""Every Redis key (and composite hash field) this backend uses, in one place.

All keys live under `<prefix>:`. Variable parts are escaped (`%` -> `%25`, `:` -> `%3A`)
so that a key with two variable parts can never collide with another one: user ids
contain `:` (`@alice:example.org`) and device ids are chosen by clients.

Layout (P = prefix, {x} = escaped variable part):

    P:stream_pos                    string  the stream counter shared by events, account
                                            data, typing, presence and server events
                                            (INCR; absent means 0)
    P:filter_id                     string  filter id counter (INCR)
    P:user:{user}                   hash    UserRecord fields (None fields absent)
    P:user_ids                      zset    every user id, score 0, so that ZRANGE BYLEX
                                            pages them in code-point order (it compares
                                            UTF-8 bytes); written with the user hash
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
    P:room_joined:{room}            zset    ids of the users whose membership is "join",
                                            score 0 (ZRANGE: code point order)
    P:user_joined:{user}            zset    ids of the rooms the user's membership of is
                                            "join", score 0
    P:joined_index                  string  present once every room_joined/user_joined
                                            zset is complete (`rooms.backfill_joined`)
    P:account_data:{user}           hash    account data field -> `[stream_pos, content]`
    P:account_data_pos:{user}       zset    account data field scored by stream position
    P:filters:{user}                hash    filter id -> definition JSON
    P:session:{session}             hash    SessionRecord fields (status_msg absent when
                                            None), plus the key names of its indexes:
                                            `user_sessions_key`, `active_key`
    P:user_sessions:{user}          set     the *key names* of the user's session hashes
    P:active_session:{user}:{device} string the key name of the device's active session
    P:session_deadlines             zset    session key names scored by expires_at_ms
    P:typing_entry:{room}:{user}    hash    room_id, user_id, session_id, expires_at_ms,
                                            and the key names `room_key`, `session_key`
    P:typing_room:{room}            set     ids of the users typing in the room
    P:session_typing:{session}      set     the *key names* of the session's typing entries
    P:typing_deadlines              zset    typing entry key names scored by expires_at_ms
    P:typing_pos                    hash    room id -> position of its last typing change
    P:presence                      hash    user id -> `[stream_pos, last_active_ts,
                                            presence, status_msg or null]`
    P:rate_limit:{key}              hash    tokens (a double, `%.17g`), updated_ms; expires
                                            a while after the bucket would be full again
    P:server_events                 hash    server event id -> `[stream_pos, body]`
    P:server_event_index:all        zset    ids of the events aimed at every user, and
    P:server_event_index:{kind}:{target}    of those aimed at one user or room (kind
                                            `user` or `room`), scored by stream position

A token hash also holds `active_session_key`, the key name of its device's active
session pointer, so that `authenticate` finds token and session in one script.

A state field is the JSON array `[type, state_key]` and an account data field is
`[room_id or null, type]`: unambiguous for any strings. Membership records are the
JSON array `[forgotten (0|1), stream_pos, membership, event_id]`; keeping the flag
first lets the Lua scripts flip it without a JSON parser.

The Lua scripts never build key names: callers pass every key they touch, and where a
script only learns what to touch from stored data (a device's tokens, a token's
session, due deadlines, a session's typing entries) the stored values are full key
names for the same reason.
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

    @property
    def user_ids(self) -> str:
        return f"{self.prefix}:user_ids"

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

    def room_joined(self, room_id: str) -> str:
        return self._key("room_joined", room_id)

    def user_joined(self, user_id: str) -> str:
        return self._key("user_joined", user_id)

    @property
    def joined_index(self) -> str:
        return self._key("joined_index")

    def room_members_pattern(self) -> str:
        """A SCAN pattern matching every room_members key under this prefix."""
        fixed = f"{self.prefix}:room_members:"
        return "".join(f"\\{c}" if c in "*?[]\\" else c for c in fixed) + "*"

    def room_of_members_key(self, key: str) -> str:
        """The room id of a room_members key (the inverse of `room_members`)."""
        part = key.removeprefix(f"{self.prefix}:room_members:")
        return part.replace("%3A", ":").replace("%25", "%")

    def account_data(self, user_id: str) -> str:
        return self._key("account_data", user_id)

    def account_data_pos(self, user_id: str) -> str:
        return self._key("account_data_pos", user_id)

    def filters(self, user_id: str) -> str:
        return self._key("filters", user_id)

    @property
    def session_deadlines(self) -> str:
        return f"{self.prefix}:session_deadlines"

    @property
    def typing_deadlines(self) -> str:
        return f"{self.prefix}:typing_deadlines"

    @property
    def typing_pos(self) -> str:
        return f"{self.prefix}:typing_pos"

    @property
    def presence(self) -> str:
        return f"{self.prefix}:presence"

    def session(self, session_id: str) -> str:
        return self._key("session", session_id)

    def user_sessions(self, user_id: str) -> str:
        return self._key("user_sessions", user_id)

    def active_session(self, user_id: str, device_id: str) -> str:
        return self._key("active_session", user_id, device_id)

    def rate_limit(self, key: str) -> str:
        return self._key("rate_limit", key)

    @property
    def server_events(self) -> str:
        return f"{self.prefix}:server_events"

    def server_event_index(self, target_kind: str, target: str | None) -> str:
        """The index of the events aimed at every user (target_kind "all", no target)
        or at one user or room. One escaped part for "all", two otherwise: no clash."""
        if target is None:
            return self._key("server_event_index", target_kind)
        return self._key("server_event_index", target_kind, target)

    def typing_entry(self, room_id: str, user_id: str) -> str:
        return self._key("typing_entry", room_id, user_id)

    def typing_room(self, room_id: str) -> str:
        return self._key("typing_room", room_id)

    def session_typing(self, session_id: str) -> str:
        return self._key("session_typing", session_id)
