"""The plugin system through HTTP: each hook's results as the inviter, the invitee and
the other members see them; fail closed on exceptions, timeouts and wrong answers;
ordering; merged redactions; plain-function hooks; the façade; config errors; a slow
plugin not blocking other requests; and the README's example plugin."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from quart.testing import QuartClient

from backends.memory import open_memory
from homeserver.app import create_app
from homeserver.config import ConfigError, load_config
from homeserver.engine import Engine
from homeserver.namespace import INVITE_STATE_POLICY
from plugins.api import EventCheck, InviteCheck, JoinCheck, RoomCreationCheck
from plugins.loader import PluginLoadError, PluginSpec
from tests.helpers import Api, Reply, User, assert_error, make_config, q
from tests.plugins import sample_plugins

SAMPLES = "tests.plugins.sample_plugins"
EXAMPLE = "plugins.examples.no_links_from_strangers:NoLinksFromStrangers"
ROOT = Path(__file__).resolve().parents[2]


# What the sample plugins were asked: (label, hook) and the check objects, in order.
calls_made = sample_plugins.CALLS
checks_seen = sample_plugins.CHECKS


def plugin(cls: str, **config: Any) -> PluginSpec:
    return PluginSpec(f"{SAMPLES}:{cls}", config)


@pytest.fixture(autouse=True)
def fresh_records() -> Iterator[None]:
    sample_plugins.reset()
    yield
    sample_plugins.reset()


@dataclass
class World:
    """A server with alice (creator of `room_id`, the inviter), carol (a member of it)
    and bob (the one invited, in no room), plus dave (in no room either)."""

    api: Api
    engine: Engine
    alice: User
    bob: User
    carol: User
    dave: User
    room_id: str

    async def invite(self, inviter: User, invitee: User, reason: str | None = None) -> Reply:
        body: dict[str, Any] = {"user_id": invitee.user_id}
        if reason is not None:
            body["reason"] = reason
        return await self.api.call(
            "POST", f"rooms/{q(self.room_id)}/invite", token=inviter, body=body
        )

    async def send(self, user: User, body: str, txn_id: str, room_id: str | None = None) -> Reply:
        return await self.api.call(
            "PUT",
            f"rooms/{q(room_id or self.room_id)}/send/m.room.message/{txn_id}",
            token=user,
            body={"msgtype": "m.text", "body": body},
        )

    async def join(self, user: User, room_id: str | None = None) -> Reply:
        return await self.api.call(
            "POST", f"rooms/{q(room_id or self.room_id)}/join", token=user, body={}
        )

    async def invites(self, user: User) -> dict[str, Any]:
        """The user's rooms.invite in a fresh initial sync."""
        invites: dict[str, Any] = (await self.api.sync(user))["rooms"]["invite"]
        return invites

    async def timeline(self, user: User, room_id: str | None = None) -> list[dict[str, Any]]:
        """The room's timeline in the user's initial sync (a large limit)."""
        body = await self.api.sync(user, filter='{"room":{"timeline":{"limit":100}}}')
        room = body["rooms"]["join"].get(room_id or self.room_id)
        return [] if room is None else list(room["timeline"]["events"])

    async def member_state(self, user_id: str) -> Reply:
        return await self.api.call(
            "GET",
            f"rooms/{q(self.room_id)}/state/m.room.member/{q(user_id)}",
            token=self.alice,
        )


@asynccontextmanager
async def serve(*plugins: PluginSpec, **overrides: Any) -> AsyncIterator[World]:
    """A server over a fresh memory store with these plugins, in this order, and the
    World's users and room (set up with the plugins' hooks switched off)."""
    async with open_memory("memory://") as storage:
        engine = Engine(make_config(plugins=plugins, **overrides), storage)
        app = create_app(engine)
        async with app.test_app():
            client = app.test_client()
            assert isinstance(client, QuartClient)
            api = Api(client)
            # The setup runs with the plugins switched off: it is not what is tested.
            gatekeeper = engine.gatekeeper
            hooks, gatekeeper.hooks = gatekeeper.hooks, {k: [] for k in gatekeeper.hooks}
            alice, bob, carol, dave = [
                await api.register(name) for name in ("alice", "bob", "carol", "dave")
            ]
            room_id = await api.create_room(
                alice, preset="public_chat", name="Lobby", topic="All welcome"
            )
            joined = await api.call("POST", f"rooms/{q(room_id)}/join", token=carol, body={})
            assert joined.status == 200, joined.body
            engine.gatekeeper.hooks = hooks
            yield World(api, engine, alice, bob, carol, dave, room_id)


def invite_events(events: list[dict[str, Any]], invitee: User) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "m.room.member"
        and e["state_key"] == invitee.user_id
        and e["content"]["membership"] == "invite"
    ]


def stripped(room: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
    return [e for e in room["invite_state"]["events"] if e["type"] == event_type]


# -- check_invite ------------------------------------------------------------------------


async def test_invite_allowed_reaches_the_invitee_and_the_plugin_sees_the_invite() -> None:
    async with serve(plugin("Scripted", label="A")) as w:
        reply = await w.invite(w.alice, w.bob, reason="come and see")
        assert reply.status == 200, reply.body
        assert calls_made == [("A", "check_invite")]
        (check,) = checks_seen
        assert isinstance(check, InviteCheck)
        assert (check.inviter, check.invitee, check.room_id, check.reason) == (
            w.alice.user_id,
            w.bob.user_id,
            w.room_id,
            "come and see",
        )
        assert check.shared("m.room.name", "name") == "Lobby"
        assert check.shared("m.room.topic", "topic") == "All welcome"
        assert {e["type"] for e in check.shared_state} >= {"m.room.create", "m.room.join_rules"}
        assert check.share_a_room is False

        invites = await w.invites(w.bob)
        (member,) = stripped(invites[w.room_id], "m.room.member")
        assert member["content"] == {"membership": "invite", "reason": "come and see"}


async def test_invite_check_knows_whether_the_two_share_a_room() -> None:
    async with serve(plugin("Scripted", label="A")) as w:
        other = await w.api.create_room(w.alice, preset="public_chat")
        assert (await w.join(w.bob, other)).status == 200
        sample_plugins.reset()
        assert (await w.invite(w.alice, w.bob)).status == 200
        (check,) = checks_seen
        assert isinstance(check, InviteCheck) and check.share_a_room is True


async def test_invite_denied_gives_the_inviter_the_plugins_errcode_and_the_invitee_nothing() -> (
    None
):
    async with serve(plugin("Scripted", check_invite="deny", errcode="ORG.EXAMPLE.SPAM")) as w:
        reply = await w.invite(w.alice, w.bob, reason="buy now")
        assert_error(reply, 403, "ORG.EXAMPLE.SPAM")
        assert await w.invites(w.bob) == {}
        assert (await w.member_state(w.bob.user_id)).status == 404
        assert invite_events(await w.timeline(w.carol), w.bob) == []


async def test_invite_dropped_looks_like_success_but_nothing_is_stored_or_seen() -> None:
    async with serve(plugin("Scripted", check_invite="drop")) as w:
        bob_before = (await w.api.sync(w.bob))["next_batch"]
        reply = await w.invite(w.alice, w.bob, reason="buy now")
        assert reply.status == 200, reply.body
        assert reply.body == {}
        # The invitee: nothing, initial or incremental.
        assert await w.invites(w.bob) == {}
        later = await w.api.sync(w.bob, since=bob_before)
        assert later["rooms"]["invite"] == {} and later["rooms"]["join"] == {}
        # The room: no invite member event in its state or anyone's timeline.
        assert (await w.member_state(w.bob.user_id)).status == 404
        assert invite_events(await w.timeline(w.alice), w.bob) == []
        assert invite_events(await w.timeline(w.carol), w.bob) == []


async def test_invite_rate_limited_answers_429_with_retry_after() -> None:
    async with serve(plugin("Scripted", check_invite="rate_limited", retry_after_ms=1500)) as w:
        reply = await w.invite(w.alice, w.bob)
        assert_error(reply, 429, "M_LIMIT_EXCEEDED")
        assert reply.body["retry_after_ms"] == 1500
        assert await w.invites(w.bob) == {}


async def test_invite_redacted_hides_the_reason_and_named_state_from_the_invitee_only() -> None:
    redacting = plugin(
        "Scripted",
        redact_reason=True,
        redact_types=["m.room.topic"],
        redact_fields=[["m.room.name", "name"]],
    )
    async with serve(redacting) as w:
        assert (await w.invite(w.alice, w.bob, reason="see http://spam")).status == 200

        room = (await w.invites(w.bob))[w.room_id]
        assert stripped(room, "m.room.topic") == []
        (name,) = stripped(room, "m.room.name")
        assert name["content"] == {}
        (member,) = stripped(room, "m.room.member")
        assert member["content"] == {"membership": "invite"}
        # What is not redacted is still shared.
        assert len(stripped(room, "m.room.create")) == 1
        assert len(stripped(room, "m.room.join_rules")) == 1
        assert set(member) == {"type", "state_key", "sender", "content"}

        # The room's members see the invite as it was sent.
        (seen,) = invite_events(await w.timeline(w.carol), w.bob)
        assert seen["content"] == {"membership": "invite", "reason": "see http://spam"}
        assert "invite_room_state" not in seen["unsigned"]
        assert "invite_reason_hidden" not in seen["unsigned"]
        state = await w.member_state(w.bob.user_id)
        assert state.body == {"membership": "invite", "reason": "see http://spam"}


async def test_redactions_of_several_allowing_plugins_merge() -> None:
    async with serve(
        plugin("Scripted", label="A", redact_reason=True),
        plugin("Scripted", label="B", redact_types=["m.room.topic"]),
        plugin("Scripted", label="C", redact_fields=[["m.room.name", "name"]]),
    ) as w:
        assert (await w.invite(w.alice, w.bob, reason="hello")).status == 200
        assert calls_made == [("A", "check_invite"), ("B", "check_invite"), ("C", "check_invite")]
        room = (await w.invites(w.bob))[w.room_id]
        assert stripped(room, "m.room.topic") == []
        assert stripped(room, "m.room.name")[0]["content"] == {}
        assert stripped(room, "m.room.member")[0]["content"] == {"membership": "invite"}


async def test_create_room_refused_invite_leaves_no_room_behind() -> None:
    """Every invite of a createRoom is decided before the room exists: one refused
    invitee fails the request and nothing is created or delivered."""
    async with serve(plugin("Scripted", check_invite="deny", only_user="@bob:test.local")) as w:
        body = {"name": "Party", "invite": [w.carol.user_id, w.bob.user_id]}
        reply = await w.api.call("POST", "createRoom", token=w.alice, body=body)
        assert_error(reply, 403, "M_FORBIDDEN")
        joined = await w.api.call("GET", "joined_rooms", token=w.alice)
        assert set(joined.body["joined_rooms"]) == {w.room_id}
        assert await w.invites(w.carol) == {}
        assert await w.invites(w.bob) == {}
        assert [hook for _, hook in calls_made] == ["check_room_creation", *["check_invite"] * 2]


async def test_create_room_invites_dropped_are_left_out_silently() -> None:
    async with serve(plugin("Scripted", check_invite="drop")) as w:
        reply = await w.api.call(
            "POST", "createRoom", token=w.alice, body={"invite": [w.bob.user_id]}
        )
        assert reply.status == 200, reply.body
        assert await w.invites(w.bob) == {}


# -- check_room_creation, check_join, check_event ----------------------------------------


async def test_room_creation_denied_is_403_and_creates_nothing() -> None:
    async with serve(
        plugin("Scripted", check_room_creation="deny", only_user="@bob:test.local")
    ) as w:
        reply = await w.api.call(
            "POST",
            "createRoom",
            token=w.bob,
            body={"name": "Deals", "topic": "cheap", "invite": [w.dave.user_id], "is_direct": True},
        )
        assert_error(reply, 403, "M_FORBIDDEN")
        joined = await w.api.call("GET", "joined_rooms", token=w.bob)
        assert joined.body == {"joined_rooms": []}
        assert await w.invites(w.dave) == {}
        (check,) = checks_seen
        assert check == RoomCreationCheck(
            creator=w.bob.user_id,
            preset="private_chat",
            name="Deals",
            topic="cheap",
            invitees=(w.dave.user_id,),
            is_direct=True,
        )
        # Others still create rooms.
        assert (await w.api.call("POST", "createRoom", token=w.alice, body={})).status == 200


async def test_join_denied_is_403_and_the_user_stays_out() -> None:
    async with serve(plugin("Scripted", check_join="deny", only_user="@bob:test.local")) as w:
        assert_error(await w.join(w.bob), 403, "M_FORBIDDEN")
        assert checks_seen == [JoinCheck(user_id=w.bob.user_id, room_id=w.room_id)]
        joined = await w.api.call("GET", "joined_rooms", token=w.bob)
        assert joined.body == {"joined_rooms": []}
        assert (await w.member_state(w.bob.user_id)).status == 404
        assert (await w.join(w.dave)).status == 200


async def test_event_denied_is_403() -> None:
    async with serve(plugin("Scripted", check_event="deny", only_body="spam")) as w:
        assert_error(await w.send(w.carol, "spam spam", "t1"), 403, "M_FORBIDDEN")
        assert (await w.send(w.carol, "hello", "t2")).status == 200
        assert checks_seen[0] == EventCheck(
            sender=w.carol.user_id,
            room_id=w.room_id,
            type="m.room.message",
            content={"msgtype": "m.text", "body": "spam spam"},
        )
        bodies = [e["content"].get("body") for e in await w.timeline(w.alice)]
        assert "hello" in bodies and "spam spam" not in bodies


async def test_event_dropped_looks_sent_but_nobody_receives_it() -> None:
    async with serve(plugin("Scripted", check_event="drop", only_body="spam")) as w:
        since = {u.user_id: (await w.api.sync(u))["next_batch"] for u in (w.alice, w.carol)}
        dropped = await w.send(w.carol, "spam spam", "t1")
        assert dropped.status == 200, dropped.body
        event_id = dropped.body["event_id"]
        assert isinstance(event_id, str) and event_id.startswith("$")
        # A retry of the transaction gets the same answer, as for a real event.
        again = await w.send(w.carol, "spam spam", "t1")
        assert again.body == {"event_id": event_id}
        kept = await w.api.send_text(w.carol, w.room_id, "hello", "t2")

        for user in (w.alice, w.carol):
            events = await w.timeline(user)
            ids = [e["event_id"] for e in events]
            assert kept in ids and event_id not in ids
            body = await w.api.sync(user, since=since[user.user_id])
            new = body["rooms"]["join"][w.room_id]["timeline"]["events"]
            assert [e["event_id"] for e in new] == [kept]
        fetched = await w.api.call(
            "GET", f"rooms/{q(w.room_id)}/event/{q(event_id)}", token=w.alice
        )
        assert fetched.status == 404


async def test_state_events_are_not_checked_as_messages() -> None:
    async with serve(plugin("Scripted", check_event="deny")) as w:
        assert_error(await w.send(w.alice, "hi", "t1"), 403, "M_FORBIDDEN")
        reply = await w.api.call(
            "PUT",
            f"rooms/{q(w.room_id)}/state/m.room.topic",
            token=w.alice,
            body={"topic": "new topic"},
        )
        assert reply.status == 200, reply.body
        assert calls_made == [(f"{SAMPLES}:Scripted", "check_event")]


async def test_a_plugin_changing_what_it_is_shown_changes_nothing() -> None:
    async with serve(plugin("Meddles"), plugin("Scripted", label="B")) as w:
        assert (await w.invite(w.alice, w.bob)).status == 200
        room = (await w.invites(w.bob))[w.room_id]
        assert stripped(room, "m.room.name")[0]["content"] == {"name": "Lobby"}
        event_id = await w.api.send_text(w.carol, w.room_id, "original", "t1")
        fetched = await w.api.call(
            "GET", f"rooms/{q(w.room_id)}/event/{q(event_id)}", token=w.alice
        )
        assert fetched.body["content"]["body"] == "original"


# -- fail closed -------------------------------------------------------------------------


RAISES = f"{SAMPLES}:Raises"


async def test_a_plugin_that_raises_denies_and_is_logged_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.plugins")
    async with serve(plugin("Raises")) as w:
        reply = await w.invite(w.alice, w.bob, reason="hi")
        assert_error(reply, 403, "M_FORBIDDEN")
        assert await w.invites(w.bob) == {}
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert failures, caplog.text
        assert RAISES in failures[0].getMessage()
        assert "check_invite" in failures[0].getMessage()
        assert failures[0].exc_info is not None  # with the plugin's traceback

        # The other hooks fail closed too.
        assert_error(await w.join(w.dave), 403, "M_FORBIDDEN")
        assert_error(await w.send(w.carol, "hello", "t1"), 403, "M_FORBIDDEN")
        created = await w.api.call("POST", "createRoom", token=w.alice, body={})
        assert_error(created, 403, "M_FORBIDDEN")
        assert [name for name, _ in calls_made] == ["Raises"] * 4


async def test_a_plugin_that_times_out_denies_and_is_logged_by_name(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    async with serve(plugin("Sleeps", seconds=5), plugin_timeout_ms=250) as w:
        started = trio.current_time()
        reply = await w.invite(w.alice, w.bob, reason="hi")
        assert_error(reply, 403, "M_FORBIDDEN")
        assert 0.25 <= trio.current_time() - started < 1
        assert calls_made == [("Sleeps", "check_invite")]  # never woke: it was cancelled
        assert await w.invites(w.bob) == {}
        timeouts = [r for r in caplog.records if "timed out" in r.getMessage()]
        assert len(timeouts) == 1 and f"{SAMPLES}:Sleeps" in timeouts[0].getMessage()


async def test_a_plugin_within_the_timeout_is_awaited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve(plugin("Sleeps", seconds=1), plugin_timeout_ms=2000) as w:
        started = trio.current_time()
        assert (await w.invite(w.alice, w.bob)).status == 200
        assert trio.current_time() - started >= 1
        assert calls_made == [("Sleeps", "check_invite"), ("Sleeps", "woke")]
        assert w.room_id in await w.invites(w.bob)


@pytest.mark.parametrize(
    ("answer", "action"),
    [
        ("bool", "invite"),  # True is not a decision
        ("decision", "invite"),  # a plain Decision where an InviteDecision is due
        ("invite_decision", "join"),  # another hook's decision type
        ("event_drop", "join"),  # a join cannot be dropped
    ],
)
async def test_an_answer_of_the_wrong_type_denies(
    answer: str, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(plugin("WrongType", answer=answer)) as w:
        if action == "invite":
            reply = await w.invite(w.alice, w.bob)
            assert await w.invites(w.bob) == {}
        else:
            reply = await w.join(w.dave)
            joined = await w.api.call("GET", "joined_rooms", token=w.dave)
            assert joined.body == {"joined_rooms": []}
        assert_error(reply, 403, "M_FORBIDDEN")
        assert len(calls_made) == 1
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(f"{SAMPLES}:WrongType" in m and "fail closed" in m for m in logged), logged


# -- ordering ----------------------------------------------------------------------------


async def test_plugins_run_in_order_and_the_first_non_allow_wins() -> None:
    async with serve(
        plugin("Scripted", label="A"),
        plugin("Scripted", label="B", check_invite="deny", errcode="ORG.B"),
        plugin("Scripted", label="C", check_invite="deny", errcode="ORG.C"),
    ) as w:
        assert_error(await w.invite(w.alice, w.bob), 403, "ORG.B")
        assert calls_made == [("A", "check_invite"), ("B", "check_invite")]


async def test_a_drop_before_a_deny_wins_and_stops_the_chain() -> None:
    async with serve(
        plugin("Scripted", label="A", check_invite="drop"),
        plugin("Scripted", label="B", check_invite="deny"),
    ) as w:
        assert (await w.invite(w.alice, w.bob)).status == 200
        assert calls_made == [("A", "check_invite")]
        assert await w.invites(w.bob) == {}


async def test_a_failing_plugin_stops_the_chain_before_later_plugins() -> None:
    async with serve(
        plugin("Scripted", label="A"), plugin("Raises"), plugin("Scripted", label="C")
    ) as w:
        assert_error(await w.send(w.carol, "hello", "t1"), 403, "M_FORBIDDEN")
        assert calls_made == [("A", "check_event"), ("Raises", "EventCheck")]


async def test_all_allowing_plugins_are_each_asked_once_per_hook() -> None:
    async with serve(plugin("Scripted", label="A"), plugin("Scripted", label="B")) as w:
        assert (await w.join(w.dave)).status == 200
        assert (await w.send(w.dave, "hi", "t1")).status == 200
        assert calls_made == [
            ("A", "check_join"),
            ("B", "check_join"),
            ("A", "check_event"),
            ("B", "check_event"),
        ]


# -- plain-function hooks and the façade -------------------------------------------------


async def test_plain_function_hooks_work_like_async_ones() -> None:
    async with serve(
        plugin("Scripted", label="A", sync=True, redact_reason=True),
        plugin("Scripted", label="B", sync=True, check_event="drop", only_body="spam"),
        plugin("Scripted", label="C", sync=True, check_join="deny", only_user="@dave:test.local"),
    ) as w:
        assert (await w.invite(w.alice, w.bob, reason="secret")).status == 200
        member = stripped((await w.invites(w.bob))[w.room_id], "m.room.member")[0]
        assert member["content"] == {"membership": "invite"}
        assert (await w.send(w.carol, "spam", "t1")).status == 200
        assert "spam" not in [e["content"].get("body") for e in await w.timeline(w.carol)]
        assert_error(await w.join(w.dave), 403, "M_FORBIDDEN")


async def test_the_facade_gives_identity_clock_room_sharing_and_token_buckets() -> None:
    async with serve(plugin("UsesFacade")) as w:
        assert (await w.invite(w.alice, w.bob)).status == 200
        limited = await w.invite(w.alice, w.dave)
        assert_error(limited, 429, "M_LIMIT_EXCEEDED")
        assert limited.body["retry_after_ms"] > 0
        # Buckets are per key: another inviter still has its token.
        carols = await w.api.create_room(w.carol)
        again = await w.api.call(
            "POST", f"rooms/{q(carols)}/invite", token=w.carol, body={"user_id": w.dave.user_id}
        )
        assert again.status == 200, again.body
        seen = checks_seen[0]
        assert isinstance(seen, dict)
        assert seen["plugin_name"] == f"{SAMPLES}:UsesFacade"
        assert seen["server_name"] == "test.local"
        assert seen["logger"] == f"homeserver.plugins.{SAMPLES}:UsesFacade"
        assert seen["share_a_room"] is False
        assert abs(seen["now_ms"] - w.engine.clock.now_ms()) < 60_000


# -- a slow plugin never blocks other requests -------------------------------------------


async def test_a_slow_plugin_does_not_block_other_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve(plugin("Sleeps", seconds=5), plugin_timeout_ms=10_000) as w:
        carol_since = (await w.api.sync(w.carol))["next_batch"]
        result: dict[str, Reply] = {}

        async def slow_invite() -> None:
            result["invite"] = await w.invite(w.alice, w.bob, reason="slowly")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_invite)
            await trio.testing.wait_all_tasks_blocked()
            assert calls_made == [("Sleeps", "check_invite")]  # the plugin is awaiting
            before = trio.current_time()
            whoami = await w.api.call("GET", "account/whoami", token=w.carol)
            assert whoami.body["user_id"] == w.carol.user_id
            synced = await w.api.sync(w.carol, since=carol_since, timeout="0")
            assert synced["next_batch"] == carol_since
            sent = await w.send(w.carol, "meanwhile", "t1")
            assert sent.status == 200
            # All of that happened with the clock standing still, the invite pending.
            assert trio.current_time() == before
            assert "invite" not in result
        assert result["invite"].status == 200
        assert trio.current_time() - before >= 5
        assert w.room_id in await w.invites(w.bob)


# -- config errors -----------------------------------------------------------------------


async def load_error(*plugins: PluginSpec) -> str:
    async with open_memory("memory://") as storage:
        with pytest.raises(PluginLoadError) as caught:
            Engine(make_config(plugins=plugins), storage)
    message = str(caught.value)
    assert "\n" not in message
    return message


async def test_an_unknown_module_is_a_load_error_naming_the_plugin() -> None:
    message = await load_error(PluginSpec("tests.plugins.no_such_module:Plugin"))
    assert message.startswith("plugin tests.plugins.no_such_module:Plugin: cannot import")


async def test_a_missing_class_is_a_load_error_naming_the_plugin() -> None:
    message = await load_error(plugin("NoSuchClass"))
    assert message == f"plugin {SAMPLES}:NoSuchClass: {SAMPLES} has no class NoSuchClass"
    message = await load_error(plugin("NOT_A_CLASS"))
    assert f"plugin {SAMPLES}:NOT_A_CLASS" in message


async def test_a_bad_plugin_config_is_a_load_error_naming_the_plugin_and_the_key() -> None:
    message = await load_error(plugin("StrictConfig", max_length=0))
    assert message == (
        f"plugin {SAMPLES}:StrictConfig: config key 'max_length': must be a positive integer, got 0"
    )
    message = await load_error(plugin("Scripted"), plugin("Scripted", check_join="drop"))
    assert message.startswith(f"plugin {SAMPLES}:Scripted: config key 'check_join'")


async def test_a_good_plugin_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "homeserver.toml"
    path.write_text(
        f"""
plugin_timeout_ms = 500

[[plugins]]
module = "{SAMPLES}:StrictConfig"
config = {{ max_length = 3 }}

[[plugins]]
module = "{EXAMPLE}"
"""
    )
    config = load_config(path, env={})
    assert config.plugins == (
        PluginSpec(f"{SAMPLES}:StrictConfig", {"max_length": 3}),
        PluginSpec(EXAMPLE, {}),
    )
    async with open_memory("memory://") as storage:
        engine = Engine(config, storage)
    assert [p.name for p in engine.plugins.plugins] == [f"{SAMPLES}:StrictConfig", EXAMPLE]
    first = engine.plugins.plugins[0].instance
    assert isinstance(first, sample_plugins.StrictConfig) and first.max_length == 3


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('plugins = "x"', "config key 'plugins': expected a list"),
        ('[[plugins]]\nmodule = "pkg.mod"', "config key 'plugins[0]': 'module' must be"),
        ('[[plugins]]\nmodule = "a:B"\nconfig = 3', "config key 'plugins[0]': 'config' must"),
        ('[[plugins]]\nmodule = "a:B"\nextra = 1', "config key 'plugins[0]': unknown key(s) extra"),
        ("plugin_timeout_ms = 0", "config key 'plugin_timeout_ms'"),
    ],
)
def test_a_malformed_plugins_table_is_a_config_error(
    tmp_path: Path, toml: str, expected: str
) -> None:
    path = tmp_path / "homeserver.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(expected)


# -- the README's example plugin ---------------------------------------------------------


def test_the_readme_shows_the_example_plugin_verbatim_in_under_40_lines() -> None:
    source = (ROOT / "plugins/examples/no_links_from_strangers.py").read_text()
    readme = (ROOT / "plugins/README.md").read_text()
    assert len(source.splitlines()) < 40
    assert f"```python\n{source}```" in readme


def test_the_readme_config_example_parses(tmp_path: Path) -> None:
    readme = (ROOT / "plugins/README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert blocks
    for block in blocks:
        tomllib.loads(block)  # every block is valid TOML
    path = tmp_path / "homeserver.toml"
    path.write_text(blocks[0])
    config = load_config(path, env={})
    assert PluginSpec(EXAMPLE, {"action": "drop"}) in config.plugins
    assert INVITE_STATE_POLICY in readme


async def test_the_example_plugin_drops_links_from_strangers_only() -> None:
    async with serve(PluginSpec(EXAMPLE, {"action": "drop"})) as w:
        # dave shares no room with bob: a link in the reason is dropped.
        spam_room = await w.api.create_room(w.dave, preset="public_chat", name="Deals")
        reply = await w.api.call(
            "POST",
            f"rooms/{q(spam_room)}/invite",
            token=w.dave,
            body={"user_id": w.bob.user_id, "reason": "see https://spam.example/win"},
        )
        assert reply.status == 200, reply.body
        assert await w.invites(w.bob) == {}
        # No link: delivered.
        reply = await w.api.call(
            "POST",
            f"rooms/{q(spam_room)}/invite",
            token=w.dave,
            body={"user_id": w.bob.user_id, "reason": "hi bob"},
        )
        assert reply.status == 200
        assert spam_room in await w.invites(w.bob)

        # A link in the room's topic counts too; but not from someone bob knows.
        topic = await w.api.call(
            "PUT",
            f"rooms/{q(w.room_id)}/state/m.room.topic",
            token=w.alice,
            body={"topic": "www.example.org"},
        )
        assert topic.status == 200
        assert (await w.invite(w.alice, w.bob)).status == 200
        assert w.room_id not in await w.invites(w.bob)  # alice is a stranger to bob
        assert (await w.api.call("POST", f"rooms/{q(spam_room)}/join", token=w.bob)).status == 200
        second = await w.api.create_room(w.dave, name="www.deals.example")
        reply = await w.api.call(
            "POST",
            f"rooms/{q(second)}/invite",
            token=w.dave,
            body={"user_id": w.bob.user_id, "reason": "https://ok.example"},
        )
        assert reply.status == 200
        assert second in await w.invites(w.bob)  # dave and bob now share a room


async def test_the_example_plugin_can_deny_instead() -> None:
    async with serve(PluginSpec(EXAMPLE, {"action": "deny"})) as w:
        reply = await w.invite(w.alice, w.bob, reason="http://spam.example")
        assert_error(reply, 403, "M_FORBIDDEN")
        assert await w.invites(w.bob) == {}


async def test_the_example_plugin_rejects_a_bad_config_naming_the_key() -> None:
    message = await load_error(PluginSpec(EXAMPLE, {"action": "block"}))
    assert message == (
        f"plugin {EXAMPLE}: config key 'action': must be 'drop' or 'deny', not 'block'"
    )
    message = await load_error(PluginSpec(EXAMPLE, {"actoin": "drop"}))
    assert message == f"plugin {EXAMPLE}: config key 'actoin': unknown key"


async def test_the_readmes_test_examples_pass() -> None:
    readme = (ROOT / "plugins/README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "def test_" in b]
    assert len(blocks) == 2
    for block in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(block, "plugins/README.md", "exec"), namespace)
        tests = [v for k, v in namespace.items() if k.startswith("test_")]
        assert len(tests) == 1
        await tests[0]()
