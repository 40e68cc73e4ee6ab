"""Sending in the engine: messages and state events, their checks, and transaction ids
making a retried send return the first event's id (per device, room and type)."""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

from backends.records import JsonDict
from homeserver.errors import BadJson, Forbidden, InvalidParam, MatrixError
from tests.engine.conftest import Client, Harness, MakeHarness
from tests.engine.rooms_helpers import create, scripted, state

TEXT: JsonDict = {"msgtype": "m.text", "body": "hi"}


async def send(
    h: Harness,
    client: Client,
    room_id: str,
    content: JsonDict = TEXT,
    event_type: str = "m.room.message",
    **kw: Any,
) -> str:
    return await h.engine.rooms.messages.send_event(
        h.bare(client), room_id, event_type, content, **kw
    )


async def stream_pos(h: Harness) -> int:
    return await h.storage.rooms.current_stream_pos()


async def test_a_message_is_stored_as_sent(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await h.room(alice)
    event_id = await send(h, alice, room_id, txn_id="t1")
    event = await h.storage.rooms.get_event(event_id)
    assert event is not None
    assert (event.room_id, event.sender, event.type, event.content) == (
        room_id,
        alice.user_id,
        "m.room.message",
        TEXT,
    )
    assert (event.state_key, event.txn_id, event.device_id) == (None, "t1", alice.device_id)


async def test_a_retried_transaction_returns_the_first_event(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    alice_phone = await h.client("alice", "PHONE")
    room_id = await h.room(alice, bob)
    first = await send(h, alice, room_id, txn_id="t1")
    pos = await stream_pos(h)
    assert await send(h, alice, room_id, {"body": "changed"}, txn_id="t1") == first
    assert await stream_pos(h) == pos
    # Another device, user, room, event type or txn id is another transaction.
    other_room = await h.room(alice)
    others = [
        await send(h, alice_phone, room_id, txn_id="t1"),
        await send(h, bob, room_id, txn_id="t1"),
        await send(h, alice, other_room, txn_id="t1"),
        await send(h, alice, room_id, event_type="org.example.other", txn_id="t1"),
        await send(h, alice, room_id, txn_id="t2"),
    ]
    assert len({first, *others}) == 6
    # Without a txn id every send is new.
    assert await send(h, alice, room_id) != await send(h, alice, room_id)


async def test_a_retry_after_the_sender_left_still_gets_the_first_event(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    """With no plugin checking messages, a send makes no read before its append; a
    retry that the room now refuses is still answered from the store's record."""
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await h.room(alice, bob)
    first = await send(h, bob, room_id, txn_id="t1")
    await h.engine.rooms.membership.leave(h.bare(bob), room_id)
    assert await send(h, bob, room_id, txn_id="t1") == first
    # A new transaction is refused as before.
    with pytest.raises(Forbidden):
        await send(h, bob, room_id, txn_id="t2")


async def test_a_dropped_message_is_answered_the_same_on_retry(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(plugins=scripted(check_event="drop"))
    alice = await h.client("alice")
    room_id = await h.room(alice)
    pos = await stream_pos(h)
    dropped = await send(h, alice, room_id, txn_id="t1")
    assert await send(h, alice, room_id, txn_id="t1") == dropped
    assert await h.storage.rooms.get_event(dropped) is None
    assert await stream_pos(h) == pos
    # State events do not go through the event check.
    await send(h, alice, room_id, {"topic": "T"}, "m.room.topic", state_key="")
    assert await state(h, room_id, "m.room.topic") == {"topic": "T"}


async def test_a_denied_message_raises(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(plugins=scripted(check_event="deny"))
    alice = await h.client("alice")
    room_id = await h.room(alice)
    pos = await stream_pos(h)
    with pytest.raises(MatrixError) as info:
        await send(h, alice, room_id, txn_id="t1")
    assert info.value.errcode == "M_FORBIDDEN"
    assert await stream_pos(h) == pos
    # The server's own messages (server notices) skip the plugins.
    event_id = await send(h, alice, room_id, trusted=True)
    assert await h.storage.rooms.get_event(event_id) is not None


async def test_sending_needs_membership_and_the_level(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    room_id = await create(
        h,
        alice,
        preset="public_chat",
        power_level_content_override={"events": {"org.example.loud": 100}},
    )
    await h.engine.rooms.membership.join(h.bare(bob), room_id)
    with pytest.raises(Forbidden):
        await send(h, carol, room_id)
    with pytest.raises(Forbidden):
        await send(h, bob, room_id, event_type="org.example.loud")
    await send(h, alice, room_id, event_type="org.example.loud")
    await send(h, bob, room_id)
    await h.engine.rooms.membership.leave(h.bare(bob), room_id)
    with pytest.raises(Forbidden):
        await send(h, bob, room_id)
    with pytest.raises(Forbidden):
        await send(h, alice, "!unknown:test.local")


async def test_type_and_size_limits(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await h.room(alice)
    for event_type in ("", "x" * 256):
        with pytest.raises(InvalidParam):
            await send(h, alice, room_id, event_type=event_type)
    await send(h, alice, room_id, event_type="x" * 255)
    with pytest.raises(MatrixError) as info:
        await send(h, alice, room_id, {"body": "x" * 70_000})
    assert (info.value.status, info.value.errcode) == (413, "M_TOO_LARGE")


async def test_state_events_and_what_they_may_not_do(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await h.room(alice, bob)
    await send(h, alice, room_id, {"name": "N"}, "m.room.name", state_key="")
    await send(h, alice, room_id, {"x": 1}, "org.example.mine", state_key=alice.user_id)
    assert await state(h, room_id, "m.room.name") == {"name": "N"}
    assert await state(h, room_id, "org.example.mine", alice.user_id) == {"x": 1}
    # state_default (50) keeps plain members out.
    with pytest.raises(Forbidden):
        await send(h, bob, room_id, {"topic": "T"}, "m.room.topic", state_key="")
    refused: list[tuple[str, str]] = [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("org.example.theirs", bob.user_id),
    ]
    for event_type, state_key in refused:
        with pytest.raises(Forbidden):
            await send(h, alice, room_id, {}, event_type, state_key=state_key)
    with pytest.raises(BadJson):
        await send(h, alice, room_id, {"join_rule": 1}, "m.room.join_rules", state_key="")


async def test_power_level_changes_are_checked(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await h.room(alice, bob)
    power = await state(h, room_id, "m.room.power_levels")
    assert power is not None
    with pytest.raises(BadJson):
        await send(h, alice, room_id, {**power, "ban": "50"}, "m.room.power_levels", state_key="")
    # Nobody raises anyone above their own level.
    raised = {**power, "users": {**power["users"], bob.user_id: 101}}
    with pytest.raises(Forbidden):
        await send(h, alice, room_id, raised, "m.room.power_levels", state_key="")
    moderated = {**power, "users": {**power["users"], bob.user_id: 50}}
    await send(h, alice, room_id, moderated, "m.room.power_levels", state_key="")
    await send(h, bob, room_id, {"topic": "T"}, "m.room.topic", state_key="")
    assert await state(h, room_id, "m.room.topic") == {"topic": "T"}
