"""How records are stored in Redis values, and back.

Flat records (users, devices, tokens, rooms) are hashes with one field per attribute;
a None attribute is an absent field. Events, membership records and account data are
JSON text that the Lua scripts assemble from pieces made here, so the stream position
(known only inside the script) can be spliced in without decoding JSON in Lua:

    event            [stream_pos, prev_content or null, body]   body: the other fields
    membership       [forgotten 0|1, stream_pos, membership, event_id]
    account data     [stream_pos, content]
    presence         [stream_pos, last_active_ts, presence, status_msg or null]
    server event     [stream_pos, body]                         body: the other fields

Sessions are hashes like the flat records; a script's HGETALL reply arrives as a flat
field/value list (`hash_from_flat`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from backends.errors import StorageError
from backends.records import (
    AccessToken,
    DeviceRecord,
    Event,
    JsonDict,
    MembershipRecord,
    NewEvent,
    NewServerEvent,
    PresenceRecord,
    RoomRecord,
    ServerEvent,
    SessionRecord,
    UserRecord,
)

_encoder = json.JSONEncoder(separators=(",", ":"))
_decode = json.loads


def dumps(value: Any) -> str:
    """Compact JSON. ASCII-only (the default), so lone surrogates survive the trip."""
    return _encoder.encode(value)


# Redis scores are doubles and LIMIT counts 64-bit: bounds and limits from callers are
# clamped to a range both hold exactly, far beyond any real stream position.
_CLAMP = 2**60


def clamp(value: int) -> int:
    """`value` limited to +-2**60, for score bounds and LIMIT counts."""
    return max(-_CLAMP, min(value, _CLAMP))


def _pairs(fields: Mapping[str, str | None]) -> list[str]:
    out: list[str] = []
    for name, value in fields.items():
        if value is not None:
            out += (name, value)
    return out


def _opt_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _corrupt(what: str, exc: Exception) -> StorageError:
    return StorageError(f"unreadable {what} in Redis: {exc!r}")


# Users, devices, tokens, rooms (hashes) ---------------------------------------------


def user_fields(user: UserRecord) -> list[str]:
    return _pairs(
        {
            "user_id": user.user_id,
            "password_hash": user.password_hash,
            "created_ts": str(user.created_ts),
            "displayname": user.displayname,
            "avatar_url": user.avatar_url,
            "is_admin": "1" if user.is_admin else "0",
        }
    )


def user_from_hash(h: Mapping[str, str]) -> UserRecord:
    try:
        return UserRecord(
            user_id=h["user_id"],
            password_hash=h.get("password_hash"),
            created_ts=int(h["created_ts"]),
            displayname=h.get("displayname"),
            avatar_url=h.get("avatar_url"),
            is_admin=h.get("is_admin") == "1",
        )
    except (KeyError, ValueError) as exc:
        raise _corrupt("user", exc) from exc


def device_fields(device: DeviceRecord) -> list[str]:
    return _pairs(
        {
            "user_id": device.user_id,
            "device_id": device.device_id,
            "display_name": device.display_name,
            "created_ts": str(device.created_ts),
            "last_seen_ts": None if device.last_seen_ts is None else str(device.last_seen_ts),
        }
    )


def device_from_hash(h: Mapping[str, str]) -> DeviceRecord:
    try:
        return DeviceRecord(
            user_id=h["user_id"],
            device_id=h["device_id"],
            display_name=h.get("display_name"),
            created_ts=int(h["created_ts"]),
            last_seen_ts=_opt_int(h.get("last_seen_ts")),
        )
    except (KeyError, ValueError) as exc:
        raise _corrupt("device", exc) from exc


def token_fields(token: AccessToken) -> list[str]:
    return [
        "token", token.token,
        "user_id", token.user_id,
        "device_id", token.device_id,
        "created_ts", str(token.created_ts),
    ]  # fmt: skip


def token_from_hash(h: Mapping[str, str]) -> AccessToken:
    try:
        return AccessToken(
            token=h["token"],
            user_id=h["user_id"],
            device_id=h["device_id"],
            created_ts=int(h["created_ts"]),
        )
    except (KeyError, ValueError) as exc:
        raise _corrupt("access token", exc) from exc


def room_fields(room: RoomRecord) -> list[str]:
    return [
        "room_id", room.room_id,
        "creator", room.creator,
        "room_version", room.room_version,
        "created_ts", str(room.created_ts),
    ]  # fmt: skip


def room_from_hash(h: Mapping[str, str]) -> RoomRecord:
    try:
        return RoomRecord(
            room_id=h["room_id"],
            creator=h["creator"],
            room_version=h["room_version"],
            created_ts=int(h["created_ts"]),
        )
    except (KeyError, ValueError) as exc:
        raise _corrupt("room", exc) from exc


# Events ------------------------------------------------------------------------------


def event_body(new: NewEvent) -> str:
    """The JSON of every field of the event except stream_pos and prev_content."""
    return dumps(
        {
            "event_id": new.event_id,
            "room_id": new.room_id,
            "sender": new.sender,
            "type": new.type,
            "content": new.content,
            "origin_server_ts": new.origin_server_ts,
            "state_key": new.state_key,
            "txn_id": new.txn_id,
            "device_id": new.device_id,
            "unsigned": new.unsigned,
            "redacts": new.redacts,
        }
    )


def event_from_parts(stream_pos: int, prev_content: str, body: str) -> Event:
    """The event as `append_events` stored it (same decoding as `event_from_stored`)."""
    return event_from_stored(f"[{stream_pos},{prev_content},{body}]")


def event_from_stored(text: str) -> Event:
    try:
        stream_pos, prev_content, body = _decode(text)
        return Event(stream_pos=stream_pos, prev_content=prev_content, **body)
    except (TypeError, ValueError) as exc:
        raise _corrupt("event", exc) from exc


def events_from_stored(texts: object) -> list[Event]:
    """Decode a script's list of stored events, skipping missing entries."""
    if not isinstance(texts, list | tuple):
        raise StorageError(f"unexpected reply from Redis: {texts!r}")
    return [event_from_stored(t) for t in texts if isinstance(t, str)]


# Memberships --------------------------------------------------------------------------


def membership_tail(membership: str, event_id: str) -> str:
    """What follows `[forgotten,stream_pos,` in a membership record."""
    return dumps([membership, event_id])[1:]


def membership_from_stored(room_id: str, user_id: str, text: str) -> MembershipRecord:
    try:
        forgotten, stream_pos, membership, event_id = _decode(text)
    except (TypeError, ValueError) as exc:
        raise _corrupt("membership", exc) from exc
    return MembershipRecord(
        room_id=room_id,
        user_id=user_id,
        membership=membership,
        event_id=event_id,
        stream_pos=stream_pos,
        forgotten=forgotten == 1,
    )


# Account data and filters ------------------------------------------------------------


def account_data_from_stored(text: str) -> tuple[int, JsonDict]:
    try:
        stream_pos, content = _decode(text)
    except (TypeError, ValueError) as exc:
        raise _corrupt("account data", exc) from exc
    return stream_pos, content


def json_from_stored(text: str, what: str) -> JsonDict:
    try:
        value = _decode(text)
    except ValueError as exc:
        raise _corrupt(what, exc) from exc
    if not isinstance(value, dict):
        raise StorageError(f"unreadable {what} in Redis: not an object")
    return value


# Sessions and presence ----------------------------------------------------------------


def hash_from_flat(flat: object) -> dict[str, str]:
    """A hash from a script's HGETALL reply (a flat field/value list)."""
    if (
        not isinstance(flat, list | tuple)
        or len(flat) % 2
        or not all(isinstance(item, str) for item in flat)
    ):
        raise StorageError(f"unexpected reply from Redis: {flat!r}")
    return dict(zip(flat[::2], flat[1::2], strict=True))


def session_fields(session: SessionRecord, *, user_sessions_key: str, active_key: str) -> list[str]:
    """The session's hash, with the key names of its indexes (for the scripts)."""
    return _pairs(
        {
            "session_id": session.session_id,
            "user_id": session.user_id,
            "device_id": session.device_id,
            "presence": session.presence,
            "status_msg": session.status_msg,
            "created_ts": str(session.created_ts),
            "last_active_ts": str(session.last_active_ts),
            "expires_at_ms": str(session.expires_at_ms),
            "user_sessions_key": user_sessions_key,
            "active_key": active_key,
        }
    )


def session_from_hash(h: Mapping[str, str]) -> SessionRecord:
    try:
        return SessionRecord(
            session_id=h["session_id"],
            user_id=h["user_id"],
            device_id=h["device_id"],
            presence=h["presence"],
            status_msg=h.get("status_msg"),
            created_ts=int(h["created_ts"]),
            last_active_ts=int(h["last_active_ts"]),
            expires_at_ms=int(h["expires_at_ms"]),
        )
    except (KeyError, ValueError) as exc:
        raise _corrupt("session", exc) from exc


def session_from_flat(flat: object) -> SessionRecord | None:
    """The session of a script's HGETALL reply, None for an empty one (no session)."""
    h = hash_from_flat(flat)
    return session_from_hash(h) if h else None


def sessions_from_flats(flats: object) -> list[SessionRecord]:
    """The sessions of a script's list of HGETALL replies."""
    if not isinstance(flats, list | tuple):
        raise StorageError(f"unexpected reply from Redis: {flats!r}")
    return [s for s in (session_from_flat(f) for f in flats) if s is not None]


def presence_tail(presence: str, status_msg: str | None, last_active_ts: int) -> str:
    """What follows `[stream_pos,` in a stored presence record."""
    return dumps([last_active_ts, presence, status_msg])[1:]


def presence_from_stored(user_id: str, text: str) -> PresenceRecord:
    try:
        stream_pos, last_active_ts, presence, status_msg = _decode(text)
    except (TypeError, ValueError) as exc:
        raise _corrupt("presence", exc) from exc
    return PresenceRecord(
        user_id=user_id,
        presence=presence,
        status_msg=status_msg,
        last_active_ts=last_active_ts,
        stream_pos=stream_pos,
    )


# Server events ------------------------------------------------------------------------


def server_event_body(new: NewServerEvent) -> str:
    """The JSON of every field of the server event except stream_pos."""
    return dumps(
        {
            "event_id": new.event_id,
            "sender": new.sender,
            "type": new.type,
            "content": new.content,
            "origin_server_ts": new.origin_server_ts,
            "target_kind": new.target_kind,
            "target": new.target,
        }
    )


def server_event_from_stored(text: str) -> ServerEvent:
    try:
        stream_pos, body = _decode(text)
        return ServerEvent(stream_pos=stream_pos, **body)
    except (TypeError, ValueError) as exc:
        raise _corrupt("server event", exc) from exc


def server_events_from_stored(texts: object) -> list[ServerEvent]:
    """Decode a script's list of stored server events, skipping missing entries."""
    if not isinstance(texts, list | tuple):
        raise StorageError(f"unexpected reply from Redis: {texts!r}")
    return [server_event_from_stored(t) for t in texts if isinstance(t, str)]
