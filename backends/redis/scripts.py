"""The Lua scripts of the Redis backend, loaded from `lua/*.lua` (package data).

Redis runs a script atomically: no other command runs between its first and last
call, so a script is this backend's transaction. Every multi-key write goes through
one, and so do multi-step reads that would otherwise need several round trips.

Each script's file opens with its KEYS/ARGV layout and its reply; the store method
that calls it builds exactly that layout and parses that reply, in one place.
`lua/prelude.lua` (the helpers, and the rules every script follows) is prepended to
each script as it is loaded.

A command that fails ends a script but keeps the writes it had made (Redis does not
roll scripts back), so a script whose writes must stay together (append_events) also
checks first that each key it writes holds its kind of value.
"""

from __future__ import annotations

import functools
from importlib import resources

import coredis
from coredis.commands.script import Script

# Scripts that only read: run with EVALSHA_RO (replicas may serve them).
READ_ONLY = frozenset(
    {
        "hgetall_each",
        "room_events",
        "current_state",
        "state_event",
        "account_data_since",
        "authenticate",
        "set_members_hgetall",
        "get_typing",
        "server_events",
    }
)


@functools.cache
def _read(name: str) -> str:
    return resources.files("backends.redis").joinpath("lua", f"{name}.lua").read_text("utf-8")


def source(name: str) -> str:
    """The full source of script `name`: the prelude, then `lua/<name>.lua`."""
    return _read("prelude") + "\n" + _read(name)


class Scripts:
    """The Lua scripts, bound to one client (EVALSHA, loading the script on NOSCRIPT)."""

    def __init__(self, client: coredis.Redis[str]) -> None:
        def bind(name: str) -> Script[str]:
            return Script(client, source(name), readonly=name in READ_ONLY)

        self.create_hash = bind("create_hash")
        self.create_user = bind("create_user")
        self.set_field_if_exists = bind("set_field_if_exists")
        self.add_device_with_token = bind("add_device_with_token")
        self.delete_devices = bind("delete_devices")
        self.append_events = bind("append_events")
        self.forget_room = bind("forget_room")
        self.backfill_joined = bind("backfill_joined")
        self.put_account_data = bind("put_account_data")
        self.create_filter = bind("create_filter")
        self.hgetall_each = bind("hgetall_each")
        self.room_events = bind("room_events")
        self.current_state = bind("current_state")
        self.state_event = bind("state_event")
        self.account_data_since = bind("account_data_since")

        self.authenticate = bind("authenticate")
        self.start_session = bind("start_session")
        self.touch_session = bind("touch_session")
        self.set_session_presence = bind("set_session_presence")
        self.end_session = bind("end_session")
        self.end_device_sessions = bind("end_device_sessions")
        self.take_expired_sessions = bind("take_expired_sessions")
        self.set_typing = bind("set_typing")
        self.clear_typing = bind("clear_typing")
        self.clear_session_typing = bind("clear_session_typing")
        self.take_expired_typing = bind("take_expired_typing")
        self.put_presence = bind("put_presence")
        self.set_members_hgetall = bind("set_members_hgetall")
        self.get_typing = bind("get_typing")

        self.take_token = bind("take_token")
        self.add_server_event = bind("add_server_event")
        self.server_events = bind("server_events")
