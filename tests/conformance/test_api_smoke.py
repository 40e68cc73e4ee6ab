"""The everyday API flow on every backend: register, login, room, invite, join,
message, sync (initial, incremental, long-poll), account data, typing, presence, logout."""

from __future__ import annotations

from typing import Any

import trio
from quart.testing import QuartClient

from backends import Storage
from homeserver.app import create_app
from homeserver.clock import TrioClock
from homeserver.engine import Engine
from tests.helpers import Api, make_config, q


async def test_everyday_flow_over_http(storage: Storage) -> None:
    engine = Engine(make_config(), storage, TrioClock())
    app = create_app(engine)
    async with app.test_app(), trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        client = app.test_client()
        assert isinstance(client, QuartClient)
        api = Api(client)
        alice = await api.register("alice")
        bob = await api.register("bob")
        login = await api.call(
            "POST",
            "login",
            body={"type": "m.login.password", "user": "bob", "password": bob.password},
        )
        assert login.status == 200, login.body
        bob.access_token = login.body["access_token"]

        room_id = await api.create_room(alice, name="Backends", topic="all four")
        reply = await api.call(
            "POST",
            f"rooms/{q(room_id)}/invite",
            token=alice,
            body={"user_id": bob.user_id, "reason": "benchmarks"},
        )
        assert reply.status == 200, reply.body
        first = await api.sync(bob)
        invite = first["rooms"]["invite"][room_id]["invite_state"]["events"]
        assert {
            "type": "m.room.name",
            "state_key": "",
            "sender": alice.user_id,
            "content": {"name": "Backends"},
        } in invite
        assert any(e["content"].get("reason") == "benchmarks" for e in invite)

        assert (await api.call("POST", f"rooms/{q(room_id)}/join", token=bob)).status == 200
        since = (await api.sync(alice))["next_batch"]
        result: dict[str, Any] = {}

        async def wait() -> None:
            result["sync"] = await api.sync(alice, since=since, timeout="30000")

        async with trio.open_nursery() as waiters:
            waiters.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            event_id = await api.send_text(bob, room_id, "hello from every backend", "t1")
        timeline = result["sync"]["rooms"]["join"][room_id]["timeline"]["events"]
        assert [e["event_id"] for e in timeline] == [event_id]
        assert timeline[0]["content"]["body"] == "hello from every backend"

        again = await api.send_text(bob, room_id, "hello from every backend", "t1")
        assert again == event_id  # idempotent per device and txnId

        put = await api.call(
            "PUT",
            f"user/{q(alice.user_id)}/account_data/org.example.settings",
            token=alice,
            body={"theme": "dark"},
        )
        assert put.status == 200
        typing = await api.call(
            "PUT",
            f"rooms/{q(room_id)}/typing/{q(bob.user_id)}",
            token=bob,
            body={"typing": True, "timeout": 10000},
        )
        assert typing.status == 200
        later = await api.sync(alice, since=result["sync"]["next_batch"])
        assert later["account_data"]["events"] == [
            {"type": "org.example.settings", "content": {"theme": "dark"}}
        ]
        ephemeral = later["rooms"]["join"][room_id]["ephemeral"]["events"]
        assert {"type": "m.typing", "content": {"user_ids": [bob.user_id]}} in ephemeral
        presence = {
            e["sender"]: e["content"]["presence"]
            for e in (await api.sync(alice))["presence"]["events"]
        }
        assert presence == {alice.user_id: "online", bob.user_id: "online"}

        history = await api.call(
            "GET", f"rooms/{q(room_id)}/messages", token=alice, query={"dir": "b", "limit": "50"}
        )
        assert history.body["chunk"][0]["event_id"] == event_id  # newest first

        assert (await api.call("POST", "logout", token=bob)).status == 200
        gone = await api.call("GET", "account/whoami", token=bob)
        assert (gone.status, gone.errcode) == (401, "M_UNKNOWN_TOKEN")
        after = await api.sync(alice, since=later["next_batch"])
        ephemeral = after["rooms"]["join"][room_id]["ephemeral"]["events"]
        assert {"type": "m.typing", "content": {"user_ids": []}} in ephemeral
        nursery.cancel_scope.cancel()
