"""Event ids, the client format of events, and stripped state."""

from __future__ import annotations

import json
import secrets
from typing import Any

from backends.records import Event, JsonDict

MAX_EVENT_BYTES = 65536
# Unsigned keys of a stored invite: the stripped state shared with the invitee, and
# whether a spam policy hid the invite's reason from them (engine/rooms/invites.py).
INVITE_ROOM_STATE = "invite_room_state"
INVITE_REASON_HIDDEN = "invite_reason_hidden"
# Unsigned data the server keeps with an event but shows only where it belongs: the
# state shared with an invitee goes to that invitee's invite_state, not to timelines.
SERVER_ONLY_UNSIGNED = frozenset({INVITE_ROOM_STATE, INVITE_REASON_HIDDEN})


def new_event_id() -> str:
    # Room versions >= 4 use "$" + 43 url-safe base64 characters (256 bits).
    return "$" + secrets.token_urlsafe(32)


def new_room_id(server_name: str) -> str:
    return f"!{secrets.token_urlsafe(18)}:{server_name}"


def event_size(content: JsonDict, *extra: Any) -> int:
    return len(json.dumps([content, *extra], separators=(",", ":"), ensure_ascii=False).encode())


def client_event(
    event: Event, *, now_ms: int, device_id: str | None = None, include_room_id: bool = True
) -> JsonDict:
    """The client-server API format of a stored event.

    `device_id` is the requesting device: its own events carry `unsigned.transaction_id`.
    """
    out: JsonDict = {
        "event_id": event.event_id,
        "sender": event.sender,
        "type": event.type,
        "content": event.content,
        "origin_server_ts": event.origin_server_ts,
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if event.state_key is not None:
        out["state_key"] = event.state_key
    if event.redacts is not None:
        out["redacts"] = event.redacts
    unsigned: JsonDict = {"age": max(0, now_ms - event.origin_server_ts)}
    if event.prev_content is not None:
        unsigned["prev_content"] = event.prev_content
    if event.txn_id is not None and device_id is not None and event.device_id == device_id:
        unsigned["transaction_id"] = event.txn_id
    for key, value in event.unsigned.items():
        if key not in SERVER_ONLY_UNSIGNED:
            unsigned.setdefault(key, value)
    out["unsigned"] = unsigned
    return out


def stripped_state(event: Event) -> JsonDict:
    """The stripped form shared with invitees: type, state_key, sender, content."""
    return {
        "type": event.type,
        "state_key": event.state_key or "",
        "sender": event.sender,
        "content": event.content,
    }
