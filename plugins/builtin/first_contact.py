"""First-contact policy: invites from strangers are shown without their text, or not
at all.

Config::

    [[plugins]]
    module = "plugins.builtin.first_contact:FirstContact"
    config = { action = "redact" }   # "redact" (default) | "drop"

An invite whose inviter shares no room with the invitee (neither is joined to a room
the other is joined to) is a first contact:

- `redact`: the invite is delivered without its reason and without the room avatar
  (`m.room.avatar` is left out of the shared state); the room's name and topic are
  still shown (pair with the content filter to check those).
- `drop`: the inviter is told it worked and the invitee never sees the invite.

Invites between users who already share a room are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins.api import InviteCheck, InviteDecision, InviteRedaction, PluginApi
from plugins.builtin._config import ConfigReader

FIRST_CONTACT_REDACTION = InviteRedaction(reason=True, state_types=frozenset({"m.room.avatar"}))


@dataclass(frozen=True)
class FirstContactConfig:
    drop: bool = False


class FirstContact:
    """Redacts or drops invites from users who share no room with the invitee (see the
    module docstring)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> FirstContactConfig:
        reader = ConfigReader(raw)
        config = FirstContactConfig(
            drop=reader.choice("action", ("redact", "drop"), "redact") == "drop"
        )
        reader.finish()
        return config

    def __init__(self, config: FirstContactConfig, api: PluginApi) -> None:
        self._config = config
        self._api = api
        api.register_spam_checks(check_invite=self.check_invite)

    def check_invite(self, invite: InviteCheck) -> InviteDecision:
        if invite.share_a_room:
            return InviteDecision.allow()
        if self._config.drop:
            return InviteDecision.drop()
        return InviteDecision.allow(redact=FIRST_CONTACT_REDACTION)
