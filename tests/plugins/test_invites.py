"""Invites through HTTP, with no plugin: the reason and the stripped room state shared
with the invitee, the operator's and the room's say in what is shared, rejecting an
invite, and the invitee refusing invites (m.invite_permission_config)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from quart.testing import QuartClient

from backends.memory import open_memory
from homeserver.app import create_app
from homeserver.engine import Engine
from homeserver.namespace import INVITE_STATE_POLICY
from tests.helpers import Api, Reply, User, assert_error, make_config, q

STRIPPED_KEYS = {"type", "state_key", "sender", "content"}
DEFAULT_TYPES = {
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.encryption",
}


@dataclass
class Server:
    api: Api
    alice: User
    bob: User
    carol: User

    async def invite(
        self, inviter: User, room_id: str, invitee: User, reason: str | None = None
    ) -> Reply:
        body: dict[str, Any] = {"user_id": invitee.user_id}
        if reason is not None:
            body["reason"] = reason
        return await self.api.call("POST", f"rooms/{q(room_id)}/invite", token=inviter, body=body)

    async def put_state(
        self, user: User, room_id: str, event_type: str, content: dict[str, Any]
    ) -> Reply:
        return await self.api.call(
            "PUT", f"rooms/{q(room_id)}/state/{q(event_type)}", token=user, body=content
        )

    async def set_permissions(self, user: User, content: dict[str, Any]) -> None:
        reply = await self.api.call(
            "PUT",
            f"user/{q(user.user_id)}/account_data/m.invite_permission_config",
            token=user,
            body=content,
        )
        assert reply.status == 200, reply.body

    async def invite_state(self, user: User, room_id: str) -> list[dict[str, Any]]:
        """The invite_state events of the room in the user's initial sync."""
        invites = (await self.api.sync(user))["rooms"]["invite"]
        assert room_id in invites, invites
        events: list[dict[str, Any]] = invites[room_id]["invite_state"]["events"]
        return events


@asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[Server]:
    async with open_memory("memory://") as storage:
        app = create_app(Engine(make_config(**overrides), storage))
        async with app.test_app():
            client = app.test_client()
            assert isinstance(client, QuartClient)
            api = Api(client)
            alice, bob, carol = [await api.register(n) for n in ("alice", "bob", "carol")]
            yield Server(api, alice, bob, carol)


def by_type(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {e["type"]: e for e in events if e["type"] != "m.room.member"}
    assert len(out) == len([e for e in events if e["type"] != "m.room.member"]), events
    return out


async def full_room(s: Server) -> str:
    """A private room of alice's with every default-shared state type set, and more."""
    return await s.api.create_room(
        s.alice,
        name="Book club",
        topic="This month: Dune",
        initial_state=[
            {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://x/y"}},
            {"type": "m.room.canonical_alias", "state_key": "", "content": {}},
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            },
            {"type": "org.example.private", "state_key": "", "content": {"secret": 1}},
        ],
    )


# -- what the invitee is shown -----------------------------------------------------------


async def test_an_invite_with_a_reason_shares_the_default_state_and_the_member_event() -> None:
    async with serve() as s:
        room_id = await full_room(s)
        reply = await s.invite(s.alice, room_id, s.bob, reason="You'd like it")
        assert reply.status == 200, reply.body
        assert reply.body == {}

        events = await s.invite_state(s.bob, room_id)
        assert all(set(e) == STRIPPED_KEYS for e in events), events
        shared = by_type(events)
        assert set(shared) == DEFAULT_TYPES
        assert shared["m.room.name"] == {
            "type": "m.room.name",
            "state_key": "",
            "sender": s.alice.user_id,
            "content": {"name": "Book club"},
        }
        assert shared["m.room.topic"]["content"] == {"topic": "This month: Dune"}
        assert shared["m.room.avatar"]["content"] == {"url": "mxc://x/y"}
        assert shared["m.room.join_rules"]["content"] == {"join_rule": "invite"}
        assert shared["m.room.encryption"]["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
        # The invite itself, last, with its reason; no other member event.
        assert events[-1] == {
            "type": "m.room.member",
            "state_key": s.bob.user_id,
            "sender": s.alice.user_id,
            "content": {"membership": "invite", "reason": "You'd like it"},
        }
        assert [e for e in events if e["type"] == "m.room.member"] == [events[-1]]


async def test_create_room_invites_share_the_state_too() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(
            s.alice,
            name="Just us",
            topic="Plans",
            invite=[s.bob.user_id, s.carol.user_id],
            is_direct=True,
        )
        for user in (s.bob, s.carol):
            events = await s.invite_state(user, room_id)
            shared = by_type(events)
            assert set(shared) == {
                "m.room.create",
                "m.room.name",
                "m.room.topic",
                "m.room.join_rules",
            }
            assert shared["m.room.name"]["content"] == {"name": "Just us"}
            assert events[-1]["state_key"] == user.user_id
            assert events[-1]["content"] == {"membership": "invite", "is_direct": True}


async def test_the_shared_state_is_taken_when_the_invite_is_sent() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(s.alice, name="Before")
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        assert (await s.put_state(s.alice, room_id, "m.room.name", {"name": "After"})).status == 200
        shared = by_type(await s.invite_state(s.bob, room_id))
        assert shared["m.room.name"]["content"] == {"name": "Before"}


async def test_the_room_members_do_not_see_the_shared_state() -> None:
    async with serve() as s:
        room_id = await full_room(s)
        assert (await s.invite(s.alice, room_id, s.bob, reason="hi")).status == 200
        body = await s.api.sync(s.alice)
        (invite,) = [
            e
            for e in body["rooms"]["join"][room_id]["timeline"]["events"]
            if e["type"] == "m.room.member" and e["state_key"] == s.bob.user_id
        ]
        assert invite["content"] == {"membership": "invite", "reason": "hi"}
        assert "invite_room_state" not in invite["unsigned"]


async def test_a_custom_list_of_shared_types() -> None:
    async with serve(invite_state_types=("m.room.name", "m.room.power_levels")) as s:
        room_id = await full_room(s)
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        shared = by_type(await s.invite_state(s.bob, room_id))
        assert set(shared) == {"m.room.name", "m.room.power_levels"}
        assert shared["m.room.power_levels"]["content"]["users"] == {s.alice.user_id: 100}


async def test_an_empty_list_shares_only_the_invite() -> None:
    async with serve(invite_state_types=()) as s:
        room_id = await full_room(s)
        assert (await s.invite(s.alice, room_id, s.bob, reason="r")).status == 200
        events = await s.invite_state(s.bob, room_id)
        assert [e["type"] for e in events] == ["m.room.member"]


# -- the room's invite-state policy ------------------------------------------------------


async def test_the_room_policy_narrows_what_is_shared_within_the_operators_list() -> None:
    async with serve() as s:
        room_id = await full_room(s)
        # m.room.power_levels and the room's own type are not in the operator's list:
        # the room cannot add them.
        policy = {"types": ["m.room.name", "m.room.power_levels", "org.example.private"]}
        reply = await s.put_state(s.alice, room_id, INVITE_STATE_POLICY, policy)
        assert reply.status == 200, reply.body
        assert (await s.invite(s.alice, room_id, s.bob, reason="r")).status == 200
        events = await s.invite_state(s.bob, room_id)
        assert [e["type"] for e in events] == ["m.room.name", "m.room.member"]
        assert events[-1]["content"] == {"membership": "invite", "reason": "r"}


async def test_a_room_policy_with_no_types_shares_only_the_invite() -> None:
    async with serve() as s:
        room_id = await full_room(s)
        assert (
            await s.put_state(s.alice, room_id, INVITE_STATE_POLICY, {"types": []})
        ).status == 200
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        assert [e["type"] for e in await s.invite_state(s.bob, room_id)] == ["m.room.member"]


async def test_a_room_policy_cannot_widen_a_custom_operator_list() -> None:
    async with serve(invite_state_types=("m.room.name",)) as s:
        room_id = await full_room(s)
        policy = {"types": ["m.room.name", "m.room.topic"]}
        assert (await s.put_state(s.alice, room_id, INVITE_STATE_POLICY, policy)).status == 200
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        assert set(by_type(await s.invite_state(s.bob, room_id))) == {"m.room.name"}


async def test_setting_the_room_policy_needs_state_power() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(s.alice, preset="public_chat", name="Open")
        assert (await s.api.call("POST", f"rooms/{q(room_id)}/join", token=s.carol)).status == 200
        reply = await s.put_state(s.carol, room_id, INVITE_STATE_POLICY, {"types": []})
        assert_error(reply, 403, "M_FORBIDDEN")
        # Unchanged: the room shares the operator's list.
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        shared = by_type(await s.invite_state(s.bob, room_id))
        assert {"m.room.name", "m.room.create", "m.room.join_rules"} <= set(shared)


# -- rejecting an invite -----------------------------------------------------------------


async def test_the_invitee_rejects_and_the_invite_leaves_their_sync() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(s.alice, name="Nope")
        assert (await s.invite(s.alice, room_id, s.bob, reason="please")).status == 200
        first = await s.api.sync(s.bob)
        assert room_id in first["rooms"]["invite"]

        reply = await s.api.call("POST", f"rooms/{q(room_id)}/leave", token=s.bob, body={})
        assert reply.status == 200, reply.body

        later = await s.api.sync(s.bob, since=first["next_batch"])
        assert later["rooms"]["invite"] == {}
        left = later["rooms"]["leave"][room_id]["timeline"]["events"]
        assert [(e["type"], e["state_key"], e["content"]["membership"]) for e in left] == [
            ("m.room.member", s.bob.user_id, "leave")
        ]
        assert (await s.api.sync(s.bob))["rooms"]["invite"] == {}
        # The room sees the rejection; bob cannot join an invite-only room any more.
        state = await s.api.call(
            "GET", f"rooms/{q(room_id)}/state/m.room.member/{q(s.bob.user_id)}", token=s.alice
        )
        assert state.body == {"membership": "leave"}
        join = await s.api.call("POST", f"rooms/{q(room_id)}/join", token=s.bob, body={})
        assert_error(join, 403, "M_FORBIDDEN")


# -- the invitee refusing invites --------------------------------------------------------


async def test_block_all_refuses_every_invite_with_m_invite_blocked() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(s.alice, name="Hello")
        await s.set_permissions(s.bob, {"block_all": True})
        reply = await s.invite(s.alice, room_id, s.bob, reason="hi")
        assert_error(reply, 403, "M_INVITE_BLOCKED")
        assert (await s.api.sync(s.bob))["rooms"]["invite"] == {}
        state = await s.api.call(
            "GET", f"rooms/{q(room_id)}/state/m.room.member/{q(s.bob.user_id)}", token=s.alice
        )
        assert state.status == 404

        # Lifting the block lets invites through again.
        await s.set_permissions(s.bob, {})
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        assert room_id in (await s.api.sync(s.bob))["rooms"]["invite"]


async def test_block_all_refuses_create_room_invites_before_the_room_exists() -> None:
    async with serve() as s:
        await s.set_permissions(s.bob, {"block_all": True})
        reply = await s.api.call(
            "POST", "createRoom", token=s.alice, body={"invite": [s.bob.user_id]}
        )
        assert_error(reply, 403, "M_INVITE_BLOCKED")
        rooms = await s.api.call("GET", "joined_rooms", token=s.alice)
        assert rooms.body == {"joined_rooms": []}


async def test_default_block_allows_only_the_listed_users() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(s.alice, preset="public_chat", name="Open")
        assert (await s.api.call("POST", f"rooms/{q(room_id)}/join", token=s.carol)).status == 200
        await s.set_permissions(
            s.bob, {"default_action": "block", "allow_users": [s.carol.user_id]}
        )
        assert_error(await s.invite(s.alice, room_id, s.bob), 403, "M_INVITE_BLOCKED")
        # carol needs the power to invite in this public room: alice gives it.
        levels = await s.api.call(
            "GET", f"rooms/{q(room_id)}/state/m.room.power_levels", token=s.alice
        )
        content = dict(levels.body, invite=0)
        assert (await s.put_state(s.alice, room_id, "m.room.power_levels", content)).status == 200
        assert (await s.invite(s.carol, room_id, s.bob, reason="from carol")).status == 200
        events = await s.invite_state(s.bob, room_id)
        assert events[-1]["sender"] == s.carol.user_id
        assert events[-1]["content"]["reason"] == "from carol"


async def test_default_block_allows_the_listed_servers_by_glob() -> None:
    async with serve(server_name="chat.example") as s:
        room_id = await s.api.create_room(s.alice)
        await s.set_permissions(s.bob, {"default_action": "block", "allow_servers": ["*.other"]})
        assert_error(await s.invite(s.alice, room_id, s.bob), 403, "M_INVITE_BLOCKED")
        await s.set_permissions(s.bob, {"default_action": "block", "allow_servers": ["*.example"]})
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        assert s.alice.user_id.endswith(":chat.example")


async def test_a_permission_config_that_does_not_block_lets_invites_through() -> None:
    async with serve() as s:
        room_id = await s.api.create_room(s.alice)
        await s.set_permissions(s.bob, {"default_action": "allow", "allow_users": []})
        assert (await s.invite(s.alice, room_id, s.bob)).status == 200
        await s.set_permissions(s.carol, {"block_all": False})
        assert (await s.invite(s.alice, room_id, s.carol)).status == 200
