"""Helpers shared by the room API tests (test_room_creation, test_membership,
test_invites_api, test_messages, test_room_history)."""

from __future__ import annotations

import re
from typing import Any

from tests.helpers import Api, Reply, User, q

SERVER = "test.local"
EVENT_ID_RE = re.compile(r"^\$[A-Za-z0-9_-]{43}$")
ROOM_ID_RE = re.compile(r"^![A-Za-z0-9_-]{16,}:test\.local$")


def room_path(room_id: str, *parts: str) -> str:
    return "/".join(("rooms", q(room_id), *parts))


async def post(api: Api, user: User, room_id: str, action: str, body: Any = None) -> Reply:
    return await api.call("POST", room_path(room_id, action), token=user, body=body)


async def join(api: Api, user: User, room_id: str) -> None:
    reply = await post(api, user, room_id, "join", {})
    assert reply.status == 200, reply.body
    assert reply.body == {"room_id": room_id}


async def invite(api: Api, inviter: User, room_id: str, invitee: User) -> None:
    reply = await post(api, inviter, room_id, "invite", {"user_id": invitee.user_id})
    assert reply.status == 200, reply.body
    assert reply.body == {}


async def put_state(
    api: Api, user: User, room_id: str, event_type: str, content: Any, state_key: str = ""
) -> Reply:
    path = room_path(room_id, "state", q(event_type))
    if state_key:
        path += "/" + q(state_key)
    return await api.call("PUT", path, token=user, body=content)


async def get_state(
    api: Api, user: User, room_id: str, event_type: str, state_key: str = ""
) -> Reply:
    path = room_path(room_id, "state", q(event_type))
    if state_key:
        path += "/" + q(state_key)
    return await api.call("GET", path, token=user)


async def state_content(api: Api, user: User, room_id: str, event_type: str, key: str = "") -> Any:
    reply = await get_state(api, user, room_id, event_type, key)
    assert reply.status == 200, reply.body
    return reply.body


async def send(
    api: Api,
    user: User,
    room_id: str,
    content: Any,
    txn_id: str,
    event_type: str = "m.room.message",
) -> Reply:
    return await api.call(
        "PUT", room_path(room_id, "send", q(event_type), q(txn_id)), token=user, body=content
    )


async def messages(api: Api, user: User, room_id: str, **query: str) -> Reply:
    return await api.call("GET", room_path(room_id, "messages"), token=user, query=query)


async def login(api: Api, user: User) -> User:
    """A second device (and access token) for the same user."""
    reply = await api.call(
        "POST",
        "login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body["device_id"] != user.device_id
    return User(user.user_id, reply.body["access_token"], reply.body["device_id"], user.password)


async def all_messages(api: Api, user: User, room_id: str) -> list[dict[str, Any]]:
    """The whole visible history, oldest first."""
    reply = await messages(api, user, room_id, dir="f", limit="1000")
    assert reply.status == 200, reply.body
    events: list[dict[str, Any]] = reply.body["chunk"]
    return events


async def texts(api: Api, user: User, room_id: str) -> list[str]:
    return [
        e["content"]["body"]
        for e in await all_messages(api, user, room_id)
        if e["type"] == "m.room.message"
    ]


async def make_moderated_room(api: Api, admin: User, *members: User) -> str:
    room_id = await api.create_room(admin, preset="public_chat")
    for member in members:
        await join(api, member, room_id)
    return room_id


async def set_levels(api: Api, admin: User, room_id: str, users: dict[str, int]) -> None:
    power = await state_content(api, admin, room_id, "m.room.power_levels")
    power["users"].update(users)
    reply = await put_state(api, admin, room_id, "m.room.power_levels", power)
    assert reply.status == 200, reply.body
