"""Small builders for the records the conformance tests store."""

from __future__ import annotations

import itertools
from typing import Any

from backends import Storage
from backends.records import (
    AccessToken,
    DeviceRecord,
    Event,
    JsonDict,
    NewEvent,
    NewServerEvent,
    RoomRecord,
    ServerEvent,
    ServerEventTarget,
    SessionRecord,
    UserRecord,
)

SERVER = "example.org"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
CAROL = f"@carol:{SERVER}"
ROOM = f"!room:{SERVER}"
OTHER_ROOM = f"!other:{SERVER}"

_ids = itertools.count(1)


def event_id() -> str:
    return f"$event{next(_ids)}:{SERVER}"


def user(user_id: str = ALICE, **fields: Any) -> UserRecord:
    values: dict[str, Any] = {"password_hash": "hash", "created_ts": 1_000} | fields
    return UserRecord(user_id=user_id, **values)


def device(
    user_id: str = ALICE, device_id: str = "DEV", display_name: str | None = None
) -> DeviceRecord:
    return DeviceRecord(
        user_id=user_id, device_id=device_id, display_name=display_name, created_ts=2_000
    )


def token(value: str, user_id: str = ALICE, device_id: str = "DEV") -> AccessToken:
    return AccessToken(token=value, user_id=user_id, device_id=device_id, created_ts=3_000)


def room(room_id: str = ROOM, creator: str = ALICE) -> RoomRecord:
    return RoomRecord(room_id=room_id, creator=creator, room_version="10", created_ts=4_000)


def message(room_id: str = ROOM, body: str = "hello", **fields: Any) -> NewEvent:
    values: dict[str, Any] = {
        "event_id": event_id(),
        "sender": ALICE,
        "origin_server_ts": 5_000,
    } | fields
    return NewEvent(
        room_id=room_id,
        type="m.room.message",
        content={"msgtype": "m.text", "body": body},
        **values,
    )


def state(room_id: str, type: str, state_key: str, content: JsonDict, **fields: Any) -> NewEvent:
    values: dict[str, Any] = {
        "event_id": event_id(),
        "sender": ALICE,
        "origin_server_ts": 6_000,
    } | fields
    return NewEvent(room_id=room_id, type=type, state_key=state_key, content=content, **values)


def member(room_id: str, user_id: str, membership: str = "join") -> NewEvent:
    return state(room_id, "m.room.member", user_id, {"membership": membership}, sender=user_id)


async def make_room(storage: Storage, room_id: str = ROOM) -> str:
    await storage.rooms.create_room(room(room_id))
    return room_id


async def append_one(storage: Storage, event: NewEvent) -> Event:
    [stored] = await storage.rooms.append_events([event])
    return stored


async def messages(storage: Storage, room_id: str, count: int) -> list[Event]:
    """Append `count` messages one call each; returns them in order."""
    return [await append_one(storage, message(room_id, body=f"m{i}")) for i in range(count)]


def session(
    session_id: str,
    user_id: str = ALICE,
    device_id: str = "DEV",
    *,
    created_ts: int = 10_000,
    expires_at_ms: int = 100_000,
    presence: str = "online",
    status_msg: str | None = None,
) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        user_id=user_id,
        device_id=device_id,
        presence=presence,
        status_msg=status_msg,
        created_ts=created_ts,
        last_active_ts=created_ts,
        expires_at_ms=expires_at_ms,
    )


async def login(
    storage: Storage, token_value: str, user_id: str = ALICE, device_id: str = "DEV"
) -> AccessToken:
    """A device with a fresh access token (the user is created if need be)."""
    if await storage.users.get_user(user_id) is None:
        await storage.users.create_user(user(user_id))
    access = token(token_value, user_id, device_id)
    await storage.devices.add_device_with_token(device(user_id, device_id), access)
    return access


def server_event(
    target_kind: str = ServerEventTarget.USER, target: str | None = ALICE, **fields: Any
) -> NewServerEvent:
    """A server-generated event (sender: the server name), aimed at ALICE by default."""
    values: dict[str, Any] = {
        "event_id": event_id(),
        "sender": SERVER,
        "type": "m.server_notice",
        "content": {"body": "notice"},
        "origin_server_ts": 7_000,
    } | fields
    return NewServerEvent(target_kind=target_kind, target=target, **values)


def as_stored(new: NewServerEvent, stream_pos: int) -> ServerEvent:
    """The ServerEvent a store should return for `new` at `stream_pos`."""
    return ServerEvent(
        stream_pos=stream_pos,
        event_id=new.event_id,
        sender=new.sender,
        type=new.type,
        content=new.content,
        origin_server_ts=new.origin_server_ts,
        target_kind=new.target_kind,
        target=new.target,
    )
