"""The change feed: every change /sync reports reaches the notifier through it, each
origin's changes are numbered without holes, invalidations from another process drop
what they affect from the read model, a gap makes everything re-read, and a consumer
that fails stops nobody. The feed's own rules first, then the engine over every
backend (a write to `Counted.store` is one the read model does not see: as if another
process had made it)."""

from __future__ import annotations

import pytest
import trio

from backends.records import AccessToken, DeviceRecord, NewEvent
from homeserver.changefeed import (
    MAX_PAYLOAD_BYTES,
    Change,
    FeedConsumer,
    InProcessFeed,
    Stream,
    small,
)
from homeserver.engine.events import new_event_id
from homeserver.engine.sync import parse_stream_token
from tests.helpers import User, assert_error, q
from tests.readmodel.conftest import Counted

WHOAMI = "account/whoami"
OTHER = "other-host:4242:feedbeef"  # the origin of another process


class Recorder(FeedConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list[Change] = []
        self.gaps: list[str | None] = []

    def apply(self, change: Change) -> None:
        self.changes.append(change)

    def on_gap(self, origin: str | None) -> None:
        self.gaps.append(origin)

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]


class Failing(Recorder):
    """Fails on every change (after recording it)."""

    def apply(self, change: Change) -> None:
        super().apply(change)
        raise RuntimeError("consumer bug")


def _foreign(
    seq: int, kind: str, stream: Stream = "none", pos: int = 0, **fields: object
) -> Change:
    return Change(origin=OTHER, seq=seq, stream=stream, pos=pos, kind=kind, **fields)  # type: ignore[arg-type]


def _feed(c: Counted) -> InProcessFeed:
    feed = c.engine.feed
    assert isinstance(feed, InProcessFeed)
    return feed


# -- the feed's rules ------------------------------------------------------------------


def test_seq_is_contiguous_per_origin_from_one() -> None:
    feed, other = InProcessFeed(), InProcessFeed()
    assert feed.origin != other.origin
    seen = Recorder()
    feed.subscribe(seen)
    other.subscribe(seen)
    for pos in (5, 6, 9):
        feed.publish(stream="durable", pos=pos, kind="room_event", user_ids=["@a:x"])
    other.publish(stream="ephemeral", pos=3, kind="typing")
    # A change the feed refuses takes no number: no hole for the consumers.
    with pytest.raises(ValueError):
        feed.publish(stream="durable", pos=0, kind="room_event")
    last = feed.publish(stream="none", pos=0, kind="membership", room_id="!r:x")
    assert last.seq == 4 and last.origin == feed.origin
    assert [(c.origin, c.seq) for c in seen.changes] == [
        (feed.origin, 1),
        (feed.origin, 2),
        (feed.origin, 3),
        (other.origin, 1),
        (feed.origin, 4),
    ]
    assert [c.pos for c in seen.changes[:3]] == [5, 6, 9]
    assert seen.changes[0].user_ids == ("@a:x",)
    assert seen.gaps == []
    assert feed.last_seq == 4


def test_a_change_published_during_a_delivery_comes_after_it_for_everyone() -> None:
    feed = InProcessFeed()
    first, second = Recorder(), Recorder()

    class Republisher(Recorder):
        def apply(self, change: Change) -> None:
            super().apply(change)
            if change.kind == "room_event":
                feed.publish(stream="none", pos=0, kind="membership", room_id="!r:x")

    feed.subscribe(first)
    feed.subscribe(Republisher())
    feed.subscribe(second)
    feed.publish(stream="durable", pos=1, kind="room_event")
    for consumer in (first, second):
        assert [(c.seq, c.kind) for c in consumer.changes] == [(1, "room_event"), (2, "membership")]
        assert consumer.gaps == []


def test_change_fields_are_checked() -> None:
    with pytest.raises(ValueError):
        _foreign(0, "typing")  # seq starts at 1
    with pytest.raises(ValueError):
        _foreign(1, "membership", pos=3)  # no position outside the streams
    with pytest.raises(ValueError):
        _foreign(1, "room_event", stream="durable", pos=0)
    with pytest.raises(ValueError):
        _foreign(1, "x", stream="sideways", pos=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _foreign(1, "server_event", stream="durable", pos=1, everyone=True, user_ids=("@a:x",))
    with pytest.raises(TypeError):
        _foreign(1, "membership", user_ids=["@a:x"])
    big = {"state": [["m.room.member", "@" + "u" * 250 + ":x"]] * 10}
    with pytest.raises(ValueError):
        _foreign(1, "room_event", stream="durable", pos=1, payload=big)
    assert small(big, {"state": None}) == {"state": None}
    fits = {"state": [["m.room.topic", ""]]}
    assert small(fits) is fits
    at_limit = {"x": "a" * (MAX_PAYLOAD_BYTES - len('{"x":""}'))}
    assert _foreign(1, "x", payload=at_limit).payload == at_limit
    with pytest.raises(ValueError):
        _foreign(1, "x", payload={"x": at_limit["x"] + "a"})


def test_a_consumer_that_raises_stops_neither_the_others_nor_the_publisher() -> None:
    feed = InProcessFeed()
    before, failing, after = Recorder(), Failing(), Recorder()
    for consumer in (before, failing, after):
        feed.subscribe(consumer)
    one = feed.publish(stream="durable", pos=1, kind="room_event")
    two = feed.publish(stream="ephemeral", pos=7, kind="typing")
    assert before.changes == after.changes == failing.changes == [one, two]
    # Each failure counts as a gap of the failing consumer only.
    assert failing.gaps == [feed.origin, feed.origin]
    assert before.gaps == after.gaps == []


def test_a_consumer_finds_holes_skips_repeats_and_restarts_its_count_after_a_reset() -> None:
    feed = InProcessFeed()
    seen = Recorder()
    feed.subscribe(seen)
    for seq in (7, 8, 8, 10):  # first seen: 7 starts the count; 8 again: a repeat
        feed.receive(_foreign(seq, "membership", room_id="!r:x"))
    assert [c.seq for c in seen.changes] == [7, 8, 10]
    assert seen.gaps == [OTHER]  # 9 was lost
    # The process's own changes echoed back by a transport were delivered already.
    own = feed.publish(stream="none", pos=0, kind="membership")
    feed.receive(own)
    assert seen.changes[-1] == own and len(seen.changes) == 4
    feed.reset()  # a reconnect: whatever was sent meanwhile is lost
    assert seen.gaps == [OTHER, None]
    feed.receive(_foreign(20, "membership"))  # starts the count again: no gap
    assert seen.gaps == [OTHER, None]
    assert seen.last_seq(OTHER) == 20


# -- the engine: /sync changes reach the notifier through the feed -----------------------


async def _room_with(c: Counted) -> tuple[User, User, str]:
    alice = await c.api.register("alice")
    bob = await c.api.register("bob")
    room_id = await c.api.create_room(alice, preset="public_chat")
    reply = await c.api.call("POST", f"rooms/{q(room_id)}/join", token=bob, body={})
    assert reply.status == 200, reply.body
    return alice, bob, room_id


async def test_every_kind_of_change_reaches_the_notifier_through_the_feed(
    counted: Counted,
) -> None:
    alice, bob, room_id = await _room_with(counted)
    engine, feed = counted.engine, _feed(counted)
    notifier = engine.notifier
    seen = Recorder()
    feed.subscribe(seen)

    def waiting() -> trio.Event:
        event = notifier.waiter(bob.user_id)
        assert not event.is_set()
        return event

    # A message: durable, at the event's position, for the room's members.
    woken = waiting()
    event_id = await counted.api.send_text(alice, room_id, "hello", "t1")
    stored = await engine.storage.rooms.get_event(event_id)
    assert stored is not None
    message = seen.of_kind("room_event")[-1]
    assert (message.stream, message.pos, message.room_id) == ("durable", stored.stream_pos, room_id)
    assert {alice.user_id, bob.user_id} <= set(message.user_ids)
    assert message.origin == feed.origin
    assert woken.is_set()
    assert not notifier.durable_quiet(bob.user_id, stored.stream_pos - 1)

    # Typing: ephemeral, at the room's typing position.
    woken = waiting()
    reply = await counted.api.call(
        "PUT",
        f"rooms/{q(room_id)}/typing/{q(alice.user_id)}",
        token=alice,
        body={"typing": True, "timeout": 30000},
    )
    assert reply.status == 200, reply.body
    typing = seen.of_kind("typing")[-1]
    now = engine.typing.last_change(room_id)
    assert now is not None
    assert (typing.stream, typing.pos, typing.room_id) == ("ephemeral", now.pos, room_id)
    assert bob.user_id in typing.user_ids
    assert woken.is_set()
    assert not notifier.ephemeral_quiet(bob.user_id, typing.pos - 1)

    # Presence: ephemeral, for everyone sharing a room with alice.
    woken = waiting()
    reply = await counted.api.call(
        "PUT",
        f"presence/{q(alice.user_id)}/status",
        token=alice,
        body={"presence": "unavailable"},
    )
    assert reply.status == 200, reply.body
    presence = seen.of_kind("presence")[-1]
    assert presence.stream == "ephemeral"
    assert presence.payload == {"user_id": alice.user_id}
    assert bob.user_id in presence.user_ids
    assert woken.is_set()

    # Account data: durable, for its owner only.
    woken = waiting()
    reply = await counted.api.call(
        "PUT",
        f"user/{q(bob.user_id)}/account_data/org.example.test",
        token=bob,
        body={"a": 1},
    )
    assert reply.status == 200, reply.body
    data = seen.of_kind("account_data")[-1]
    assert (data.stream, data.user_ids, data.payload) == (
        "durable",
        (bob.user_id,),
        {"type": "org.example.test"},
    )
    assert woken.is_set()
    assert not notifier.durable_quiet(bob.user_id, data.pos - 1)

    # Server events: for one user, then for everyone.
    woken = waiting()
    sent = await engine.server_events.send("user", bob.user_id, "org.example.note", {"n": 1})
    to_bob = seen.of_kind("server_event")[-1]
    assert (to_bob.pos, to_bob.user_ids, to_bob.everyone) == (
        sent.stream_pos,
        (bob.user_id,),
        False,
    )
    assert woken.is_set()
    woken, alice_woken = waiting(), notifier.waiter(alice.user_id)
    sent = await engine.server_events.send("all", None, "org.example.note", {"n": 2})
    to_all = seen.of_kind("server_event")[-1]
    assert (to_all.pos, to_all.user_ids, to_all.everyone) == (sent.stream_pos, (), True)
    assert woken.is_set() and alice_woken.is_set()
    assert not notifier.durable_quiet(alice.user_id, sent.stream_pos - 1)

    seqs = [c.seq for c in seen.changes]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous
    assert seen.gaps == []


async def test_the_notifier_hears_only_the_feed_and_finds_what_it_missed(
    counted: Counted,
) -> None:
    """Unsubscribed, a message wakes nobody (no call site notifies directly).
    Subscribed again, the next change (alice's alone) shows the hole: bob, whom the
    missed message concerned, is "maybe" from then on, and his /sync finds it."""
    alice, bob, room_id = await _room_with(counted)
    feed, notifier = _feed(counted), counted.engine.notifier
    since = (await counted.api.sync(bob))["next_batch"]
    assert notifier.durable_quiet(bob.user_id, parse_stream_token(since))
    feed.unsubscribe(notifier)
    woken = notifier.waiter(bob.user_id)
    await counted.api.send_text(alice, room_id, "unheard", "t1")
    assert not woken.is_set()
    assert notifier.durable_quiet(bob.user_id, parse_stream_token(since))  # it missed it
    feed.subscribe(notifier)
    reply = await counted.api.call(
        "PUT", f"user/{q(alice.user_id)}/account_data/org.example.a", token=alice, body={}
    )
    assert reply.status == 200, reply.body
    assert notifier.gaps == 1
    assert woken.is_set()
    assert not notifier.durable_quiet(bob.user_id, parse_stream_token(since))
    # The engine settles the gap with the store's position, which covers the message.
    with trio.fail_after(5):
        while notifier.unsettled:  # noqa: ASYNC110
            await trio.sleep(0.005)
    assert not notifier.durable_quiet(bob.user_id, parse_stream_token(since))
    body = await counted.api.sync(bob, since=since, timeout="0")
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["unheard"]


# -- the engine: the read model and changes from other processes -----------------------


async def _whoami(c: Counted, user: User) -> int:
    reply = await c.api.call("GET", WHOAMI, token=user)
    return reply.status


async def _warm_token(c: Counted, user: User) -> None:
    assert await _whoami(c, user) == 200
    c.reset()
    assert await _whoami(c, user) == 200
    assert sum(c.calls.values()) == 0, c.calls


async def test_a_foreign_token_revocation_sends_the_next_request_to_the_store(
    counted: Counted,
) -> None:
    alice = await counted.api.register("alice")
    await _warm_token(counted, alice)
    # Another process logs in again on alice's device: the store revokes her token.
    await counted.store.devices.add_device_with_token(
        DeviceRecord(alice.user_id, alice.device_id, None, 0),
        AccessToken("another-process-token", alice.user_id, alice.device_id, 0),
    )
    counted.reset()
    assert await _whoami(counted, alice) == 200  # unheard of: memory still answers
    assert sum(counted.calls.values()) == 0, counted.calls
    _feed(counted).receive(
        _foreign(
            1,
            "token_revoked",
            user_ids=(alice.user_id,),
            payload={"device_id": alice.device_id},
        )
    )
    counted.reset()
    assert_error(await counted.api.call("GET", WHOAMI, token=alice), 401, "M_UNKNOWN_TOKEN")
    assert counted.calls["sessions.authenticate"] == 1, counted.calls


@pytest.mark.parametrize("every_device", [False, True])
async def test_a_foreign_device_deletion_drops_its_tokens_and_sessions(
    counted: Counted, every_device: bool
) -> None:
    alice = await counted.api.register("alice")
    await _warm_token(counted, alice)
    auth = counted.engine.read_model.auth
    device = (alice.user_id, alice.device_id)
    assert auth.active.peek(device) is not None
    if every_device:
        await counted.store.devices.delete_all_devices(alice.user_id)
        payload = None
    else:
        await counted.store.devices.delete_device(alice.user_id, alice.device_id)
        payload = {"device_id": alice.device_id}
    assert await _whoami(counted, alice) == 200  # unheard of: memory still answers
    _feed(counted).receive(
        _foreign(1, "device_deleted", user_ids=(alice.user_id,), payload=payload)
    )
    assert auth.active.peek(device) is None
    counted.reset()
    assert_error(await counted.api.call("GET", WHOAMI, token=alice), 401, "M_UNKNOWN_TOKEN")
    assert counted.calls["sessions.authenticate"] == 1, counted.calls


async def test_a_foreign_membership_change_is_read_again_from_the_store(
    counted: Counted,
) -> None:
    _, bob, room_id = await _room_with(counted)
    rooms = counted.engine.storage.rooms
    assert bob.user_id in await rooms.get_joined_members(room_id)
    assert room_id in await rooms.get_joined_rooms(bob.user_id)
    # Another process appends bob's leave.
    await counted.store.rooms.append_events(
        [
            NewEvent(
                event_id=new_event_id(),
                room_id=room_id,
                sender=bob.user_id,
                type="m.room.member",
                content={"membership": "leave"},
                origin_server_ts=0,
                state_key=bob.user_id,
            )
        ]
    )
    counted.reset()
    assert bob.user_id in await rooms.get_joined_members(room_id)  # unheard of
    assert sum(counted.calls.values()) == 0, counted.calls
    _feed(counted).receive(_foreign(1, "membership", room_id=room_id, user_ids=(bob.user_id,)))
    counted.reset()
    assert bob.user_id not in await rooms.get_joined_members(room_id)
    assert room_id not in await rooms.get_joined_rooms(bob.user_id)
    assert counted.calls == {"rooms.get_room_members": 1, "rooms.get_joined_rooms": 1}
    counted.reset()
    await rooms.get_joined_members(room_id)  # refilled
    assert sum(counted.calls.values()) == 0, counted.calls


async def test_this_process_publishes_its_invalidations_and_ignores_them_when_heard(
    counted: Counted,
) -> None:
    """A logout publishes the device's deletion (by device: no token on the feed); a
    change from this process's own origin drops nothing (it was applied at the
    write)."""
    alice, bob, room_id = await _room_with(counted)
    feed = _feed(counted)
    seen = Recorder()
    feed.subscribe(seen)
    assert (await counted.api.call("POST", "logout", token=alice, body={})).status == 200
    deleted = seen.of_kind("device_deleted")
    assert [(c.origin, c.user_ids, c.payload) for c in deleted] == [
        (feed.origin, (alice.user_id,), {"device_id": alice.device_id})
    ]
    assert all(alice.access_token not in repr(c) for c in seen.changes)

    rooms = counted.engine.storage.rooms
    await rooms.get_joined_members(room_id)
    await _warm_token(counted, bob)
    feed.publish(stream="none", pos=0, kind="membership", room_id=room_id, user_ids=[bob.user_id])
    feed.publish(
        stream="none",
        pos=0,
        kind="device_deleted",
        user_ids=[bob.user_id],
        payload={"device_id": bob.device_id},
    )
    counted.reset()
    await rooms.get_joined_members(room_id)
    assert await _whoami(counted, bob) == 200
    assert sum(counted.calls.values()) == 0, counted.calls


async def test_a_gap_from_another_process_makes_everything_re_read(counted: Counted) -> None:
    alice, bob, room_id = await _room_with(counted)
    engine, feed = counted.engine, _feed(counted)
    notifier, read_model = engine.notifier, engine.read_model
    since = parse_stream_token((await counted.api.sync(bob))["next_batch"])
    await _warm_token(counted, bob)
    await engine.storage.rooms.get_joined_members(room_id)
    assert notifier.durable_quiet(bob.user_id, since)
    feed.receive(_foreign(1, "org.example.unknown"))  # an unknown kind: ignored
    assert sum(len(cache) for cache in read_model.caches()) > 0
    assert notifier.durable_quiet(bob.user_id, since)

    woken = notifier.waiter(bob.user_id)
    feed.receive(_foreign(3, "org.example.unknown"))  # 2 was lost
    assert sum(len(cache) for cache in read_model.caches()) == 0
    assert woken.is_set()
    assert not notifier.durable_quiet(bob.user_id, since)
    assert not notifier.durable_quiet(alice.user_id, since)
    assert not notifier.ephemeral_quiet(bob.user_id, 2**62)
    counted.reset()
    assert await _whoami(counted, bob) == 200
    assert counted.calls["sessions.authenticate"] == 1, counted.calls

    # The engine reads the store's position: quiet is known again.
    with trio.fail_after(5):
        while notifier.unsettled:  # noqa: ASYNC110
            await trio.sleep(0.005)
    assert notifier.durable_quiet(bob.user_id, await engine.storage.rooms.current_stream_pos())

    # A reconnect of the transport is a gap of every origin.
    await _warm_token(counted, bob)
    woken = notifier.waiter(bob.user_id)
    feed.reset()
    assert sum(len(cache) for cache in read_model.caches()) == 0
    assert woken.is_set() and notifier.unsettled


async def test_a_failing_consumer_before_the_notifier_does_not_keep_a_sync_asleep(
    counted: Counted,
) -> None:
    alice, bob, room_id = await _room_with(counted)
    feed, notifier = _feed(counted), counted.engine.notifier
    failing = Failing()
    feed.subscribe(failing)
    feed.unsubscribe(notifier)
    feed.subscribe(notifier)  # after the failing one; nothing was published between
    woken = notifier.waiter(bob.user_id)
    await counted.api.send_text(alice, room_id, "through", "t1")
    assert woken.is_set()
    assert failing.of_kind("room_event") and failing.gaps
    assert notifier.gaps == 0
