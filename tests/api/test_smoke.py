"""The everyday flow through the API: register, room, invite, join, talk, sync, logout."""

from __future__ import annotations

from tests.helpers import Api, q


async def test_everyday_flow(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await api.create_room(alice, name="Lunch", topic="Where to eat")
    invite = await api.call(
        "POST",
        f"rooms/{q(room_id)}/invite",
        token=alice,
        body={"user_id": bob.user_id, "reason": "you like food"},
    )
    assert invite.status == 200, invite.body

    bob_sync = await api.sync(bob)
    invited = bob_sync["rooms"]["invite"][room_id]["invite_state"]["events"]
    names = [e["content"].get("name") for e in invited if e["type"] == "m.room.name"]
    assert names == ["Lunch"]
    member = [e for e in invited if e["type"] == "m.room.member"]
    assert member[0]["content"] == {"membership": "invite", "reason": "you like food"}
    assert member[0]["sender"] == alice.user_id

    joined = await api.call("POST", f"rooms/{q(room_id)}/join", token=bob)
    assert joined.status == 200, joined.body
    event_id = await api.send_text(bob, room_id, "hello", "t1")

    alice_sync = await api.sync(alice)
    timeline = alice_sync["rooms"]["join"][room_id]["timeline"]["events"]
    assert timeline[-1]["event_id"] == event_id
    assert timeline[-1]["content"]["body"] == "hello"
    assert timeline[-1]["sender"] == bob.user_id

    out = await api.call("POST", "logout", token=bob)
    assert out.status == 200
    after = await api.call("GET", "account/whoami", token=bob)
    assert after.status == 401 and after.errcode == "M_UNKNOWN_TOKEN"
