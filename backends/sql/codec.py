"""Rows to `backends.records` values and back. Every value built here is fresh, so
callers never share state with the database layer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row

from backends.errors import StorageError
from backends.records import (
    AccessToken,
    AccountDataRecord,
    DeviceRecord,
    Event,
    JsonDict,
    MembershipRecord,
    PresenceRecord,
    RoomRecord,
    ServerEvent,
    SessionRecord,
    UserRecord,
)

# Global account data is stored under this room key (room ids start with '!').
GLOBAL_ROOM_KEY = ""


def dump_json(value: JsonDict) -> str:
    """Compact JSON text; ASCII escapes keep NULs and lone surrogates storable."""
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StorageError(f"value cannot be stored as JSON: {exc}") from exc


def load_json(text: str) -> JsonDict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored JSON is not an object")
    return value


def room_key(room_id: str | None) -> str:
    return GLOBAL_ROOM_KEY if room_id is None else room_id


def room_id_of(key: str) -> str | None:
    return None if key == GLOBAL_ROOM_KEY else key


def user_from_row(row: Row[Any]) -> UserRecord:
    return UserRecord(
        user_id=row.user_id,
        password_hash=row.password_hash,
        created_ts=row.created_ts,
        displayname=row.displayname,
        avatar_url=row.avatar_url,
        is_admin=bool(row.is_admin),
    )


def device_from_row(row: Row[Any]) -> DeviceRecord:
    return DeviceRecord(
        user_id=row.user_id,
        device_id=row.device_id,
        display_name=row.display_name,
        created_ts=row.created_ts,
        last_seen_ts=row.last_seen_ts,
    )


def token_from_row(row: Row[Any]) -> AccessToken:
    return AccessToken(
        token=row.token, user_id=row.user_id, device_id=row.device_id, created_ts=row.created_ts
    )


def room_from_row(row: Row[Any]) -> RoomRecord:
    return RoomRecord(
        room_id=row.room_id,
        creator=row.creator,
        room_version=row.room_version,
        created_ts=row.created_ts,
    )


def event_from_row(row: Row[Any]) -> Event:
    return event_from_mapping(row._mapping)


def event_from_mapping(row: Mapping[Any, Any]) -> Event:
    """An event from a row of the events table (or the dict inserted as one)."""
    prev_content = row["prev_content"]
    return Event(
        stream_pos=row["stream_pos"],
        event_id=row["event_id"],
        room_id=row["room_id"],
        sender=row["sender"],
        type=row["type"],
        content=load_json(row["content"]),
        origin_server_ts=row["origin_server_ts"],
        state_key=row["state_key"],
        txn_id=row["txn_id"],
        device_id=row["device_id"],
        unsigned=load_json(row["unsigned"]),
        redacts=row["redacts"],
        prev_content=None if prev_content is None else load_json(prev_content),
    )


def membership_from_row(row: Row[Any]) -> MembershipRecord:
    return MembershipRecord(
        room_id=row.room_id,
        user_id=row.user_id,
        membership=row.membership,
        event_id=row.event_id,
        stream_pos=row.stream_pos,
        forgotten=bool(row.forgotten),
    )


def account_data_from_row(row: Row[Any]) -> AccountDataRecord:
    return AccountDataRecord(
        user_id=row.user_id,
        room_id=room_id_of(row.room_key),
        type=row.type,
        content=load_json(row.content),
        stream_pos=row.stream_pos,
    )


def session_from_mapping(row: Mapping[Any, Any], prefix: str = "") -> SessionRecord:
    """A session from a row of the sessions table, its columns named `prefix + name`."""
    return SessionRecord(
        session_id=row[prefix + "session_id"],
        user_id=row[prefix + "user_id"],
        device_id=row[prefix + "device_id"],
        presence=row[prefix + "presence"],
        status_msg=row[prefix + "status_msg"],
        created_ts=row[prefix + "created_ts"],
        last_active_ts=row[prefix + "last_active_ts"],
        expires_at_ms=row[prefix + "expires_at_ms"],
    )


def session_from_row(row: Row[Any]) -> SessionRecord:
    return session_from_mapping(row._mapping)


def presence_from_row(row: Row[Any]) -> PresenceRecord:
    return PresenceRecord(
        user_id=row.user_id,
        presence=row.presence,
        status_msg=row.status_msg,
        last_active_ts=row.last_active_ts,
        stream_pos=row.stream_pos,
    )


def server_event_from_mapping(row: Mapping[Any, Any]) -> ServerEvent:
    """A server event from a row of the server_events table (or the dict inserted)."""
    return ServerEvent(
        stream_pos=row["stream_pos"],
        event_id=row["event_id"],
        sender=row["sender"],
        type=row["type"],
        content=load_json(row["content"]),
        origin_server_ts=row["origin_server_ts"],
        target_kind=row["target_kind"],
        target=row["target"],
    )
