"""Memberships from the read model: a membership change takes effect at once for
typing, presence and room events; a concurrent leave leaves no stale membership. On
every backend."""

from __future__ import annotations

import trio

from tests.helpers import Api, User, assert_error, q
from tests.readmodel.conftest import Counted


async def _typing(api: Api, user: User, room_id: str, typing: bool = True) -> int:
    reply = await api.call(
        "PUT",
        f"rooms/{q(room_id)}/typing/{q(user.user_id)}",
        token=user,
        body={"typing": typing, "timeout": 30000} if typing else {"typing": False},
    )
    return reply.status


async def _join(api: Api, user: User, room_id: str) -> None:
    reply = await api.call("POST", f"rooms/{q(room_id)}/join", token=user, body={})
    assert reply.status == 200, reply.body


async def _leave(api: Api, user: User, room_id: str) -> None:
    reply = await api.call("POST", f"rooms/{q(room_id)}/leave", token=user, body={})
    assert reply.status == 200, reply.body


async def test_typing_in_a_known_room_makes_no_storage_call(counted: Counted) -> None:
    """Membership and the room's members from the read model; typing itself is
    ephemeral and never written to the store."""
    alice = await counted.api.register("alice")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    assert await _typing(counted.api, alice, room_id) == 200
    for typing in (False, True, True, False):
        counted.reset()
        assert await _typing(counted.api, alice, room_id, typing=typing) == 200
        assert sum(counted.calls.values()) == 0, counted.calls


async def test_leave_and_join_take_effect_on_the_next_request(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    await _join(counted.api, bob, room_id)
    assert await _typing(counted.api, bob, room_id) == 200
    await _leave(counted.api, bob, room_id)
    reply = await counted.api.call(
        "PUT",
        f"rooms/{q(room_id)}/typing/{q(bob.user_id)}",
        token=bob,
        body={"typing": True, "timeout": 1000},
    )
    assert_error(reply, 403, "M_FORBIDDEN")
    joined = await counted.api.call("GET", "joined_rooms", token=bob)
    assert joined.body["joined_rooms"] == []
    await _join(counted.api, bob, room_id)
    assert await _typing(counted.api, bob, room_id) == 200
    joined = await counted.api.call("GET", "joined_rooms", token=bob)
    assert joined.body["joined_rooms"] == [room_id]
    members = await counted.api.call("GET", f"rooms/{q(room_id)}/joined_members", token=alice)
    assert sorted(members.body["joined"]) == sorted([alice.user_id, bob.user_id])


async def test_room_events_and_typing_stop_reaching_a_user_who_left(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    await _join(counted.api, bob, room_id)
    since = (await counted.api.sync(bob))["next_batch"]
    await _leave(counted.api, bob, room_id)
    body = await counted.api.sync(bob, since=since, timeout="0")
    assert room_id in body["rooms"]["leave"]
    since = body["next_batch"]
    assert await _typing(counted.api, alice, room_id) == 200
    await counted.api.send_text(alice, room_id, "after bob left", "t1")
    body = await counted.api.sync(bob, since=since, timeout="0")
    assert room_id not in body["rooms"]["join"], body["rooms"]
    assert room_id not in body["rooms"]["leave"], body["rooms"]
    # And start reaching them again once they are back.
    await _join(counted.api, bob, room_id)
    body = await counted.api.sync(bob, since=body["next_batch"], timeout="0")
    assert room_id in body["rooms"]["join"]
    assert await _typing(counted.api, alice, room_id, typing=False) == 200
    assert await _typing(counted.api, alice, room_id) == 200
    body = await counted.api.sync(bob, since=body["next_batch"], timeout="0")
    ephemeral = body["rooms"]["join"][room_id]["ephemeral"]["events"]
    assert {"type": "m.typing", "content": {"user_ids": [alice.user_id]}} in ephemeral


async def test_no_stale_membership_survives_a_concurrent_leave(counted: Counted) -> None:
    """Typing requests race a leave; afterwards the leave holds everywhere."""
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    for round_no in range(3):
        await _join(counted.api, bob, room_id)
        statuses: list[int] = []

        async def type_away(statuses: list[int]) -> None:
            for _ in range(5):
                statuses.append(await _typing(counted.api, bob, room_id))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(type_away, statuses)
            nursery.start_soon(_leave, counted.api, bob, room_id)
        assert set(statuses) <= {200, 403}, (round_no, statuses)
        assert await _typing(counted.api, bob, room_id) == 403
        joined = await counted.api.call("GET", "joined_rooms", token=bob)
        assert joined.body["joined_rooms"] == []
        members = await counted.api.call("GET", f"rooms/{q(room_id)}/joined_members", token=alice)
        assert list(members.body["joined"]) == [alice.user_id], members.body


async def test_an_evicted_room_is_read_again_and_answers_the_same(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    await _join(counted.api, bob, room_id)
    assert await _typing(counted.api, bob, room_id) == 200
    counted.engine.read_model.clear()
    counted.reset()
    assert await _typing(counted.api, bob, room_id, typing=False) == 200
    assert counted.calls["rooms.get_room_members"] == 1, counted.calls
    members = await counted.api.call("GET", f"rooms/{q(room_id)}/joined_members", token=alice)
    assert sorted(members.body["joined"]) == sorted([alice.user_id, bob.user_id])


async def test_presence_stops_and_starts_reaching_a_user_with_the_shared_room(
    counted: Counted,
) -> None:
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    await _join(counted.api, bob, room_id)
    path = f"presence/{q(alice.user_id)}/status"

    async def alice_is(presence: str) -> None:
        reply = await counted.api.call("PUT", path, token=alice, body={"presence": presence})
        assert reply.status == 200, reply.body

    def senders(body: dict[str, object]) -> list[str]:
        presence = body["presence"]
        assert isinstance(presence, dict)
        return [e["sender"] for e in presence["events"]]

    since = (await counted.api.sync(bob))["next_batch"]
    await alice_is("unavailable")
    body = await counted.api.sync(bob, since=since, timeout="0")
    assert alice.user_id in senders(body)
    await _leave(counted.api, bob, room_id)
    since = (await counted.api.sync(bob, since=body["next_batch"], timeout="0"))["next_batch"]
    await alice_is("online")
    body = await counted.api.sync(bob, since=since, timeout="0")
    assert alice.user_id not in senders(body)
    await _join(counted.api, bob, room_id)
    since = (await counted.api.sync(bob, since=body["next_batch"], timeout="0"))["next_batch"]
    await alice_is("unavailable")
    body = await counted.api.sync(bob, since=since, timeout="0")
    assert alice.user_id in senders(body)
