"""The content filter through HTTP: reason length, URL policy and patterns on the invite
reason and the shared room name and topic (deny, drop, redact: what the inviter gets
and what the invitee's /sync shows), on message bodies (deny, drop), and config errors."""

from __future__ import annotations

from typing import Any

import pytest

from backends.records import JsonDict
from tests.helpers import Api, Reply, User, q
from tests.plugins.test_builtin_common import (
    CONTENT,
    FIRST_CONTACT,
    invite,
    invite_state,
    join,
    load_error,
    send,
    serve,
    shared,
    timeline_bodies,
)


def content_filter(**config: Any) -> tuple[str, dict[str, Any]]:
    return (CONTENT, config)


def assert_denied(reply: Reply, about: str, errcode: str = "M_FORBIDDEN") -> None:
    assert reply.status == 403, reply.body
    assert reply.errcode == errcode
    assert reply.body["error"] == f"Refused by the server's content policy (the {about})"


async def people(api: Api) -> tuple[User, User]:
    return await api.register("alice"), await api.register("bob")


async def room(api: Api, user: User, *, name: str = "Chat", topic: str = "Talk") -> str:
    return await api.create_room(user, name=name, topic=topic)


async def received(api: Api, user: User, room_id: str) -> tuple[JsonDict, JsonDict, JsonDict]:
    """The invite's member event content, room name content and topic content, as the
    invitee's /sync shows them."""
    events = await invite_state(api, user, room_id)
    assert events is not None, "the invite is not delivered"
    member, name, topic = (
        shared(events, "m.room.member", user.user_id),
        shared(events, "m.room.name"),
        shared(events, "m.room.topic"),
    )
    assert member is not None and name is not None and topic is not None, events
    return member, name, topic


async def test_reason_length() -> None:
    async with serve(content_filter(max_reason_length=10)) as api:
        alice, bob = await people(api)
        room_id = await room(api, alice)
        assert_denied(await invite(api, alice, room_id, bob, reason="x" * 11), "reason")
        assert await invite_state(api, bob, room_id) is None
        assert (await invite(api, alice, room_id, bob, reason="é" * 10)).status == 200
        member, _, _ = await received(api, bob, room_id)
        assert member["reason"] == "é" * 10


async def test_long_reason_redacted() -> None:
    async with serve(content_filter(max_reason_length=10, long_reason_action="redact")) as api:
        alice, bob = await people(api)
        room_id = await room(api, alice)
        reply = await invite(api, alice, room_id, bob, reason="please join " * 10)
        assert (reply.status, reply.body) == (200, {})
        member, name, topic = await received(api, bob, room_id)
        assert member == {"membership": "invite"}
        assert (name, topic) == ({"name": "Chat"}, {"topic": "Talk"})


async def test_long_reason_dropped() -> None:
    async with serve(content_filter(max_reason_length=10, long_reason_action="drop")) as api:
        alice, bob = await people(api)
        room_id = await room(api, alice)
        reply = await invite(api, alice, room_id, bob, reason="please join " * 10)
        assert (reply.status, reply.body) == (200, {})
        assert await invite_state(api, bob, room_id) is None


@pytest.mark.parametrize(
    "text",
    ["see https://spam.example/x", "HTTP://SPAM.EXAMPLE", "ftp://x", "go to www.spam.example"],
)
async def test_url_deny_on_each_field(text: str) -> None:
    async with serve(content_filter(urls="deny")) as api:
        alice, bob = await people(api)
        plain = await room(api, alice)
        assert_denied(await invite(api, alice, plain, bob, reason=text), "reason")
        assert_denied(await invite(api, alice, await room(api, alice, name=text), bob), "room name")
        assert_denied(
            await invite(api, alice, await room(api, alice, topic=text), bob), "room topic"
        )
        assert (await invite(api, alice, plain, bob, reason="no links: example.com")).status == 200


async def test_url_redact_strips_each_field_with_a_url() -> None:
    async with serve(content_filter(urls="redact")) as api:
        alice, bob = await people(api)
        link = "https://spam.example"
        room_id = await room(api, alice, name=f"Win at {link}", topic="Just a topic")
        assert (await invite(api, alice, room_id, bob, reason=f"see {link}")).status == 200
        member, name, topic = await received(api, bob, room_id)
        assert member == {"membership": "invite"}
        assert name == {}
        assert topic == {"topic": "Just a topic"}

        carol = await api.register("carol")
        other = await room(api, alice, name="Fine", topic=f"Visit {link}")
        assert (await invite(api, alice, other, carol, reason="hello")).status == 200
        member, name, topic = await received(api, carol, other)
        assert member == {"membership": "invite", "reason": "hello"}
        assert (name, topic) == ({"name": "Fine"}, {})


async def test_topic_block_is_checked_and_redacted() -> None:
    """A topic's m.topic block is text the invitee's client may show: checked too, and
    stripped with the topic."""
    async with serve(content_filter(patterns=[{"regex": "casino", "action": "redact"}])) as api:
        alice, bob = await people(api)
        room_id = await room(api, alice)
        topic = {"topic": "Games", "m.topic": {"m.text": [{"body": "Best casino in town"}]}}
        reply = await api.call(
            "PUT", f"rooms/{q(room_id)}/state/m.room.topic", token=alice, body=topic
        )
        assert reply.status == 200, reply.body
        assert (await invite(api, alice, room_id, bob)).status == 200
        _, name, shown = await received(api, bob, room_id)
        assert (name, shown) == ({"name": "Chat"}, {})


async def test_patterns_and_their_actions() -> None:
    plugin = content_filter(
        patterns=[
            "(?i)free +crypto",
            {"regex": "casino", "action": "drop"},
            {"regex": "(?i)lottery", "action": "redact"},
        ],
        errcode="M_SPAM",
    )
    async with serve(plugin) as api:
        alice, bob = await people(api)
        room_id = await room(api, alice)
        # A bare string denies, with the configured errcode.
        reply = await invite(api, alice, room_id, bob, reason="FREE   Crypto!")
        assert_denied(reply, "reason", errcode="M_SPAM")
        # drop: success for the inviter, nothing for the invitee.
        reply = await invite(api, alice, room_id, bob, reason="the casino")
        assert (reply.status, reply.body) == (200, {})
        assert await invite_state(api, bob, room_id) is None
        # redact: the invite arrives without the field.
        lottery = await room(api, alice, name="Lottery winners")
        assert (await invite(api, alice, lottery, bob, reason="you won")).status == 200
        member, name, topic = await received(api, bob, lottery)
        assert (member, name, topic) == (
            {"membership": "invite", "reason": "you won"},
            {},
            {"topic": "Talk"},
        )


async def test_drop_wins_over_deny_and_deny_over_redact() -> None:
    plugin = content_filter(
        urls="redact",
        patterns=[{"regex": "crypto", "action": "deny"}, {"regex": "casino", "action": "drop"}],
    )
    async with serve(plugin) as api:
        alice, bob = await people(api)
        # A deny in the topic beats the redact of the reason.
        room_id = await room(api, alice, topic="crypto")
        assert_denied(await invite(api, alice, room_id, bob, reason="https://x"), "room topic")
        # A drop in the name beats the deny in the topic.
        room_id = await room(api, alice, name="casino", topic="crypto")
        assert (await invite(api, alice, room_id, bob)).status == 200
        assert await invite_state(api, bob, room_id) is None


async def test_redactions_merge_with_other_plugins() -> None:
    """Content filter redacts the topic; first contact redacts reason and avatar."""
    async with serve(content_filter(urls="redact"), (FIRST_CONTACT, {})) as api:
        alice, bob = await people(api)
        room_id = await api.create_room(
            alice,
            name="Chat",
            topic="https://spam.example",
            initial_state=[
                {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://x/y"}}
            ],
        )
        assert (await invite(api, alice, room_id, bob, reason="hi")).status == 200
        events = await invite_state(api, bob, room_id)
        assert events is not None
        assert shared(events, "m.room.member", bob.user_id) == {"membership": "invite"}
        assert shared(events, "m.room.topic") == {}
        assert shared(events, "m.room.avatar") is None
        assert shared(events, "m.room.name") == {"name": "Chat"}


async def test_messages_deny_and_drop() -> None:
    plugin = content_filter(
        urls="deny",
        patterns=[
            {"regex": "casino", "action": "drop"},
            {"regex": "lottery", "action": "redact"},
            "scam",
        ],
    )
    async with serve(plugin) as api:
        alice, bob = await people(api)
        room_id = await api.create_room(alice, preset="public_chat")
        await join(api, bob, room_id)
        assert_denied(await send(api, bob, room_id, "see https://x.example", "t1"), "message")
        assert_denied(await send(api, bob, room_id, "a scam", "t1b"), "message")
        # Drop wins over deny, whatever the order of the rules.
        assert (await send(api, bob, room_id, "casino scam", "t1c")).status == 200
        reply = await send(api, bob, room_id, "casino tonight", "t2")
        assert reply.status == 200
        dropped = reply.body["event_id"]
        # A retry of the transaction gets the same answer.
        assert (await send(api, bob, room_id, "casino tonight", "t2")).body["event_id"] == dropped
        # Redact rules apply to invites only: this message goes through.
        assert (await send(api, bob, room_id, "lottery results", "t3")).status == 200
        assert await timeline_bodies(api, alice, room_id) == ["lottery results"]
        # formatted_body is checked too.
        reply = await api.call(
            "PUT",
            f"rooms/{q(room_id)}/send/m.room.message/t4",
            token=bob,
            body={"msgtype": "m.text", "body": "hi", "formatted_body": "<b>casino</b>"},
        )
        assert reply.status == 200
        assert await timeline_bodies(api, alice, room_id) == ["lottery results"]


async def test_messages_left_alone_when_check_messages_is_false() -> None:
    async with serve(content_filter(urls="deny", check_messages=False)) as api:
        alice, bob = await people(api)
        room_id = await api.create_room(alice, preset="public_chat")
        await join(api, bob, room_id)
        assert (await send(api, bob, room_id, "see https://x.example", "t1")).status == 200
        assert await timeline_bodies(api, alice, room_id) == ["see https://x.example"]
        # Invites are still checked.
        carol = await api.register("carol")
        assert_denied(await invite(api, alice, room_id, carol, reason="https://x"), "reason")


@pytest.mark.parametrize(
    ("config", "key", "says"),
    [
        ({"max_reason_length": -1}, "max_reason_length", "integer >= 0"),
        ({"max_reason_length": "10"}, "max_reason_length", "integer >= 0"),
        ({"long_reason_action": "allow"}, "long_reason_action", "expected one of"),
        ({"urls": "block"}, "urls", "expected one of 'allow', 'deny', 'drop', 'redact'"),
        ({"patterns": "spam"}, "patterns", "expected a list"),
        ({"patterns": ["ok", "(unclosed"]}, "patterns[1]", "invalid regular expression"),
        ({"patterns": [""]}, "patterns[0]", "expected a regular expression"),
        ({"patterns": [{"regex": "[z-a]"}]}, "patterns[0].regex", "invalid regular expression"),
        ({"patterns": [{"action": "drop"}]}, "patterns[0].regex", "missing"),
        ({"patterns": [{"regex": "x", "action": "ban"}]}, "patterns[0].action", "one of"),
        ({"patterns": [{"regex": "x", "flags": "i"}]}, "patterns[0].flags", "unknown key"),
        ({"patterns": [3]}, "patterns[0]", "expected a table"),
        ({"check_messages": "yes"}, "check_messages", "expected true or false"),
        ({"errcode": "M FORBIDDEN"}, "errcode", "expected an errcode"),
        ({"url": "deny"}, "url", "unknown key"),
    ],
)
def test_config_errors(config: dict[str, Any], key: str, says: str) -> None:
    message = load_error(CONTENT, config)
    assert f"config key '{key}': " in message
    assert says in message
