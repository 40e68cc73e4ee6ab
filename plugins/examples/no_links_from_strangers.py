"""Refuse invites that carry a link from users who share no room with the invitee."""

from __future__ import annotations

import re
from typing import Any

from plugins.api import InviteCheck, InviteDecision, PluginApi, PluginConfigError

LINK = re.compile(r"https?://|www\.", re.IGNORECASE)


class NoLinksFromStrangers:
    def __init__(self, action: str, api: PluginApi) -> None:
        self.action = action
        self.log = api.log
        api.register_spam_checks(check_invite=self.check_invite)

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> str:
        for key in raw.keys() - {"action"}:
            raise PluginConfigError(key, "unknown key")
        action = raw.get("action", "drop")
        if action not in ("drop", "deny"):
            raise PluginConfigError("action", f"must be 'drop' or 'deny', not {action!r}")
        return str(action)

    async def check_invite(self, invite: InviteCheck) -> InviteDecision:
        name = invite.shared("m.room.name", "name")
        topic = invite.shared("m.room.topic", "topic")
        has_link = any(text and LINK.search(text) for text in (invite.reason, name, topic))
        if invite.share_a_room or not has_link:
            return InviteDecision.allow()
        self.log.info("link in an invite from %s to %s", invite.inviter, invite.invitee)
        if self.action == "deny":
            return InviteDecision.deny("M_FORBIDDEN", "No links from strangers")
        return InviteDecision.drop()
