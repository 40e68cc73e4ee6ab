"""Compatibility notices: server events with a text body also reach people on today's
clients as m.server_notice messages in a per-user server-notices room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from quart.testing import QuartClient

from backends.memory import open_memory
from homeserver.app import create_app
from homeserver.clock import TrioClock
from homeserver.config import Config
from homeserver.engine import Engine
from plugins.loader import PluginSpec
from tests.helpers import Api, User, make_config, q

ADMIN_PATH = "/_homeserver/admin/v1/server_events"
NOTICES_USER = "@server:test.local"


class World:
    def __init__(self, api: Api, engine: Engine) -> None:
        self.api = api
        self.engine = engine

    async def send(self, admin: User, body: dict[str, Any]) -> None:
        reply = await self.api.call("POST", ADMIN_PATH, token=admin, body=body)
        assert reply.status == 200, reply.body
        await trio.testing.wait_all_tasks_blocked()  # the notice worker runs

    async def notices_room(self, user: User) -> str | None:
        """The room the user is invited to by the notices user, if any."""
        invites = (await self.api.sync(user))["rooms"]["invite"]
        for room_id, room in invites.items():
            for event in room["invite_state"]["events"]:
                if event["type"] == "m.room.member" and event["sender"] == NOTICES_USER:
                    return str(room_id)
        return None

    async def notices(self, user: User, room_id: str) -> list[dict[str, Any]]:
        reply = await self.api.call("POST", f"rooms/{q(room_id)}/join", token=user)
        assert reply.status == 200, reply.body
        history = await self.api.call(
            "GET", f"rooms/{q(room_id)}/messages", token=user, query={"dir": "f", "limit": "50"}
        )
        return [e for e in history.body["chunk"] if e["type"] == "m.room.message"]


async def _world(config: Config) -> AsyncIterator[World]:
    async with open_memory("memory://") as storage:
        engine = Engine(config, storage, TrioClock())
        app = create_app(engine)
        async with app.test_app(), trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            client = app.test_client()
            assert isinstance(client, QuartClient)
            yield World(Api(client), engine)
            nursery.cancel_scope.cancel()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async for w in _world(make_config(admins=("@admin:test.local",))):
        yield w


async def test_a_user_targeted_event_with_a_body_becomes_a_notice(world: World) -> None:
    admin = await world.api.register("admin")
    alice = await world.api.register("alice")
    await world.send(
        admin,
        {
            "type": "org.example.x",
            "content": {"body": "Maintenance at 2"},
            "user_id": alice.user_id,
        },
    )
    room_id = await world.notices_room(alice)
    assert room_id is not None
    (notice,) = await world.notices(alice, room_id)
    assert notice["sender"] == NOTICES_USER
    assert notice["content"] == {"msgtype": "m.server_notice", "body": "Maintenance at 2"}
    tags = await world.api.call(
        "GET", f"user/{q(alice.user_id)}/rooms/{q(room_id)}/account_data/m.tag", token=alice
    )
    assert tags.body == {"tags": {"m.server_notice": {"order": 0.5}}}
    name = await world.api.call("GET", f"rooms/{q(room_id)}/state/m.room.name", token=alice)
    assert name.body == {"name": "Server Notices"}
    # Only the server speaks in it.
    denied = await world.api.call(
        "PUT", f"rooms/{q(room_id)}/send/m.room.message/t1", token=alice, body={"body": "hi"}
    )
    assert (denied.status, denied.errcode) == (403, "M_FORBIDDEN")
    # The next notice goes to the same room.
    await world.send(
        admin, {"type": "org.example.x", "content": {"body": "Done"}, "user_id": alice.user_id}
    )
    history = await world.api.call(
        "GET", f"rooms/{q(room_id)}/messages", token=alice, query={"dir": "f", "limit": "50"}
    )
    bodies = [e["content"]["body"] for e in history.body["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["Maintenance at 2", "Done"]


async def test_no_body_no_notice(world: World) -> None:
    admin = await world.api.register("admin")
    alice = await world.api.register("alice")
    await world.send(admin, {"type": "t", "content": {"state": "x"}, "user_id": alice.user_id})
    assert await world.notices_room(alice) is None


async def test_room_and_broadcast_targets_reach_each_user(world: World) -> None:
    admin = await world.api.register("admin")
    alice = await world.api.register("alice")
    bob = await world.api.register("bob")
    carol = await world.api.register("carol")
    room_id = await world.api.create_room(alice, preset="public_chat")
    assert (await world.api.call("POST", f"rooms/{q(room_id)}/join", token=bob)).status == 200
    await world.send(admin, {"type": "t", "content": {"body": "room"}, "room_id": room_id})
    assert await world.notices_room(alice) is not None
    assert await world.notices_room(bob) is not None
    assert await world.notices_room(carol) is None
    await world.send(admin, {"type": "t", "content": {"body": "everyone"}, "all_users": True})
    for user in (admin, carol):
        notices_room = await world.notices_room(user)
        assert notices_room is not None
        assert [n["content"]["body"] for n in await world.notices(user, notices_room)] == [
            "everyone"
        ]


async def test_leaving_the_notices_room_gets_a_new_one(world: World) -> None:
    admin = await world.api.register("admin")
    alice = await world.api.register("alice")
    await world.send(admin, {"type": "t", "content": {"body": "one"}, "user_id": alice.user_id})
    first = await world.notices_room(alice)
    assert first is not None
    assert (await world.api.call("POST", f"rooms/{q(first)}/leave", token=alice)).status == 200
    await world.send(admin, {"type": "t", "content": {"body": "two"}, "user_id": alice.user_id})
    second = await world.notices_room(alice)
    assert second is not None and second != first


async def test_the_notices_user_name_is_reserved_and_its_data_server_managed(
    world: World,
) -> None:
    taken = await world.api.call(
        "POST",
        "register",
        body={"username": "server", "password": "pw", "auth": {"type": "m.login.dummy"}},
    )
    assert (taken.status, taken.errcode) == (400, "M_USER_IN_USE")
    available = await world.api.call("GET", "register/available", query={"username": "server"})
    assert (available.status, available.errcode) == (400, "M_USER_IN_USE")
    alice = await world.api.register("alice")
    put = await world.api.call(
        "PUT",
        f"user/{q(alice.user_id)}/account_data/org.triohomeserver.server_notices_room",
        token=alice,
        body={"room_id": "!evil:test.local"},
    )
    assert put.status == 405


async def test_notices_pass_the_spam_policy_and_can_be_disabled() -> None:
    drop_strangers = PluginSpec("plugins.builtin.first_contact:FirstContact", {"action": "drop"})
    config = make_config(admins=("@admin:test.local",), plugins=(drop_strangers,))
    async for world in _world(config):
        admin = await world.api.register("admin")
        alice = await world.api.register("alice")
        await world.send(admin, {"type": "t", "content": {"body": "b"}, "user_id": alice.user_id})
        assert await world.notices_room(alice) is not None
    off = make_config(admins=("@admin:test.local",), server_notices=False)
    async for world in _world(off):
        admin = await world.api.register("admin")
        alice = await world.api.register("alice")
        await world.send(admin, {"type": "t", "content": {"body": "b"}, "user_id": alice.user_id})
        assert await world.notices_room(alice) is None
