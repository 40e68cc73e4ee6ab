"""Invite policy pieces: what state an invitee is shown, whether the invitee refuses
invites from this inviter, and redacting an invite before delivery."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Sequence

from homeserver.types import JsonDict, server_name_of
from plugins.api import InviteRedaction

INVITE_PERMISSION_CONFIG = "m.invite_permission_config"


def effective_types(operator_types: Sequence[str], room_policy: JsonDict | None) -> list[str]:
    """The operator's list is the upper bound; a room's policy event may narrow it."""
    allowed = list(operator_types)
    if room_policy is not None:
        narrowed = room_policy.get("types")
        if isinstance(narrowed, list):
            allowed = [t for t in allowed if t in narrowed]
    return allowed


def invite_blocked(permission_config: JsonDict | None, inviter: str) -> bool:
    """Whether the invitee's m.invite_permission_config refuses this inviter.

    `{"block_all": true}` refuses everyone. `{"default_action": "block", "allow_users":
    [...], "allow_servers": [globs]}` refuses everyone but those listed."""
    if not permission_config:
        return False
    if permission_config.get("block_all") is True:
        return True
    if permission_config.get("default_action") != "block":
        return False
    users = permission_config.get("allow_users")
    if isinstance(users, list) and inviter in users:
        return False
    servers = permission_config.get("allow_servers")
    if isinstance(servers, list):
        server = server_name_of(inviter)
        if any(isinstance(p, str) and fnmatch.fnmatchcase(server, p) for p in servers):
            return False
    return True


def redact_state(shared: Sequence[JsonDict], redaction: InviteRedaction) -> list[JsonDict]:
    """The shared stripped state without the redacted types and content fields."""
    out = []
    for event in shared:
        if event.get("type") in redaction.state_types:
            continue
        fields = {key for etype, key in redaction.state_fields if etype == event.get("type")}
        if fields:
            event = copy.deepcopy(event)
            for key in fields:
                event.get("content", {}).pop(key, None)
        out.append(event)
    return out
