"""Per-user account data (global and per room) and the default push rules."""

from __future__ import annotations

from backends import Storage
from backends.records import JsonDict
from homeserver.changefeed import ChangeFeed
from homeserver.errors import MatrixError, NotFoundError
from homeserver.types import localpart_of

# Types the server manages itself; clients may not overwrite them through account data.
_SERVER_MANAGED = frozenset(
    {"m.fully_read", "m.push_rules", "org.triohomeserver.server_notices_room"}
)


class AccountData:
    def __init__(self, storage: Storage, feed: ChangeFeed) -> None:
        self._storage = storage
        self._feed = feed

    async def put(self, user_id: str, room_id: str | None, type: str, content: JsonDict) -> None:
        if not type or len(type) > 255:
            raise MatrixError(400, "M_INVALID_PARAM", "Account data type must be 1-255 characters")
        if type in _SERVER_MANAGED:
            raise MatrixError(405, "M_BAD_JSON", f"Cannot set {type} through the account data API")
        pos = await self._storage.account_data.put_account_data(user_id, room_id, type, content)
        self._feed.publish(
            stream="durable",
            pos=pos,
            kind="account_data",
            room_id=room_id,
            user_ids=(user_id,),
            payload={"type": type},
        )

    async def get(self, user_id: str, room_id: str | None, type: str) -> JsonDict:
        content = await self._storage.account_data.get_account_data(user_id, room_id, type)
        if content is None:
            raise NotFoundError("Account data not found")
        return content


def _rule(rule_id: str, actions: list[object], **extra: object) -> JsonDict:
    return {"rule_id": rule_id, "default": True, "enabled": True, "actions": actions, **extra}


def _event_match(key: str, pattern: str) -> JsonDict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def default_push_rules(user_id: str) -> JsonDict:
    """The spec's predefined push rules (v1.x), as a new user has them."""
    notify = ["notify"]
    sound = {"set_tweak": "sound", "value": "default"}
    highlight = {"set_tweak": "highlight"}
    no_highlight = {"set_tweak": "highlight", "value": False}
    override = [
        _rule(".m.rule.master", [], conditions=[], enabled=False),
        _rule(
            ".m.rule.suppress_notices", [], conditions=[_event_match("content.msgtype", "m.notice")]
        ),
        _rule(
            ".m.rule.invite_for_me",
            [*notify, sound, no_highlight],
            conditions=[
                _event_match("type", "m.room.member"),
                _event_match("content.membership", "invite"),
                _event_match("state_key", user_id),
            ],
        ),
        _rule(".m.rule.member_event", [], conditions=[_event_match("type", "m.room.member")]),
        _rule(
            ".m.rule.is_user_mention",
            [*notify, highlight, sound],
            conditions=[
                {
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": user_id,
                },
            ],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [*notify, highlight],
            conditions=[
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
        ),
        _rule(
            ".m.rule.tombstone",
            [*notify, highlight],
            conditions=[
                _event_match("type", "m.room.tombstone"),
                _event_match("state_key", ""),
            ],
        ),
        _rule(".m.rule.reaction", [], conditions=[_event_match("type", "m.reaction")]),
        _rule(
            ".m.rule.server_acl",
            [],
            conditions=[
                _event_match("type", "m.room.server_acl"),
                _event_match("state_key", ""),
            ],
        ),
    ]
    content = [
        _rule(
            ".m.rule.contains_user_name", [*notify, sound, highlight], pattern=localpart_of(user_id)
        ),
    ]
    underride = [
        _rule(
            ".m.rule.call",
            [*notify, {"set_tweak": "sound", "value": "ring"}, no_highlight],
            conditions=[_event_match("type", "m.call.invite")],
        ),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [*notify, sound, no_highlight],
            conditions=[
                {"kind": "room_member_count", "is": "2"},
                _event_match("type", "m.room.encrypted"),
            ],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [*notify, sound, no_highlight],
            conditions=[
                {"kind": "room_member_count", "is": "2"},
                _event_match("type", "m.room.message"),
            ],
        ),
        _rule(
            ".m.rule.message",
            [*notify, no_highlight],
            conditions=[_event_match("type", "m.room.message")],
        ),
        _rule(
            ".m.rule.encrypted",
            [*notify, no_highlight],
            conditions=[_event_match("type", "m.room.encrypted")],
        ),
    ]
    return {
        "global": {
            "override": override,
            "content": content,
            "room": [],
            "sender": [],
            "underride": underride,
        }
    }
