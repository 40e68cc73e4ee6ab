"""The Lua scripts of the Redis backend, loaded from `lua/*.lua` (package data).

Redis runs a script atomically: no other command runs between its first and last
call, so a script is this backend's transaction. Every multi-key write goes through
one, and so do multi-step reads that would otherwise need several round trips.

Each script's file opens with its KEYS/ARGV layout and its reply; its typed wrapper
(a `base.ScriptCall` subclass next to the store that calls it, named by the script,
e.g. `rooms.AppendEventsCall`) builds exactly that layout from named parameters and
parses that reply, in one place.
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


# Every script of `lua/` (but the prelude).
NAMES = (
    "create_hash",
    "create_user",
    "set_field_if_exists",
    "add_device_with_token",
    "delete_devices",
    "append_events",
    "forget_room",
    "backfill_joined",
    "put_account_data",
    "create_filter",
    "hgetall_each",
    "room_events",
    "current_state",
    "state_event",
    "account_data_since",
    "authenticate",
    "start_session",
    "touch_session",
    "set_session_presence",
    "end_session",
    "end_device_sessions",
    "take_expired_sessions",
    "set_typing",
    "clear_typing",
    "clear_session_typing",
    "take_expired_typing",
    "put_presence",
    "set_members_hgetall",
    "get_typing",
    "take_token",
    "add_server_event",
    "server_events",
)


class Scripts:
    """The Lua scripts, bound to one client (EVALSHA, loading the script on NOSCRIPT),
    by name: `scripts["append_events"]`."""

    def __init__(self, client: coredis.Redis[str]) -> None:
        self._bound = {
            name: Script(client, source(name), readonly=name in READ_ONLY) for name in NAMES
        }

    def __getitem__(self, name: str) -> Script[str]:
        return self._bound[name]
