"""Block list: users, servers and rooms the server refuses to act for.

Config (every key optional)::

    [[plugins]]
    module = "plugins.builtin.blocklist:BlockList"
    [plugins.config]
    users = ["@spammer:example.org"]          # exact user ids
    servers = ["evil.example", "*.spam.example"]  # globs on the server name
    rooms = ["!abcdef:example.org"]           # exact room ids
    action = "deny"          # "deny" (default) or "drop" (invites and messages only)
    errcode = "M_FORBIDDEN"  # the errcode of a deny (default M_FORBIDDEN)
    message = "..."          # the error message of a deny

A user is blocked when listed in `users` or when the server part of their id matches
one of `servers` (fnmatch globs: `*`, `?`, `[...]`; matched case-insensitively).

- check_invite: refused when the inviter is blocked or the room is blocked.
- check_room_creation: refused when the creator is blocked.
- check_join: refused when the user is blocked or the room is blocked.
- check_event (messages): refused when the sender is blocked.

A refusal is a 403 with `errcode`, or with `action = "drop"`, for invites and
messages, a silent drop: the sender is told it worked, and nobody receives it (room
creation and joins have no drop; they are denied).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from plugins.api import (
    Decision,
    EventCheck,
    EventDecision,
    InviteCheck,
    InviteDecision,
    JoinCheck,
    PluginApi,
    RoomCreationCheck,
    Verdict,
)
from plugins.builtin._config import ConfigReader
from plugins.builtin._decisions import event_deny, invite_deny

DEFAULT_MESSAGE = "Refused by the server's block list"


@dataclass(frozen=True)
class BlockListConfig:
    users: frozenset[str] = frozenset()
    # Lower-cased globs on the server name.
    servers: tuple[str, ...] = ()
    rooms: frozenset[str] = frozenset()
    drop: bool = False
    errcode: str = "M_FORBIDDEN"
    message: str = DEFAULT_MESSAGE


class BlockList:
    """Refuses blocked users (exact ids or server globs) and rooms (see the module
    docstring)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> BlockListConfig:
        reader = ConfigReader(raw)
        users = reader.string_list("users")
        for index, user in enumerate(users):
            if not user.startswith("@") or ":" not in user:
                raise reader.error(f"users[{index}]", f"not a user id: {user!r}")
        servers = reader.string_list("servers")
        rooms = reader.string_list("rooms")
        for index, room in enumerate(rooms):
            if not room.startswith("!"):
                raise reader.error(f"rooms[{index}]", f"not a room id: {room!r}")
        config = BlockListConfig(
            users=frozenset(users),
            servers=tuple(s.lower() for s in servers),
            rooms=frozenset(rooms),
            drop=reader.choice("action", ("deny", "drop"), "deny") == "drop",
            errcode=reader.errcode("errcode", "M_FORBIDDEN"),
            message=reader.string("message", DEFAULT_MESSAGE),
        )
        reader.finish()
        return config

    def __init__(self, config: BlockListConfig, api: PluginApi) -> None:
        self._config = config
        self._api = api
        api.register_spam_checks(
            check_invite=self.check_invite,
            check_room_creation=self.check_room_creation,
            check_join=self.check_join,
            check_event=self.check_event,
        )

    def user_blocked(self, user_id: str) -> bool:
        if user_id in self._config.users:
            return True
        server = user_id.partition(":")[2].lower()
        return any(fnmatch.fnmatchcase(server, glob) for glob in self._config.servers)

    def room_blocked(self, room_id: str) -> bool:
        return room_id in self._config.rooms

    def _deny(self) -> Decision:
        return Decision.deny(self._config.errcode, self._config.message)

    def check_invite(self, invite: InviteCheck) -> InviteDecision:
        if not (self.user_blocked(invite.inviter) or self.room_blocked(invite.room_id)):
            return InviteDecision.allow()
        if self._config.drop:
            return InviteDecision.drop()
        return invite_deny(self._config.errcode, self._config.message)

    def check_room_creation(self, creation: RoomCreationCheck) -> Decision:
        return self._deny() if self.user_blocked(creation.creator) else Decision.allow()

    def check_join(self, join: JoinCheck) -> Decision:
        if self.user_blocked(join.user_id) or self.room_blocked(join.room_id):
            return self._deny()
        return Decision.allow()

    def check_event(self, event: EventCheck) -> EventDecision:
        if not self.user_blocked(event.sender):
            return EventDecision(Verdict.ALLOW)
        if self._config.drop:
            return EventDecision.drop()
        return event_deny(self._config.errcode, self._config.message)
