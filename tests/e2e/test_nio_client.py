"""The everyday flow with a real client library (matrix-nio) against the real server.

matrix-nio runs on asyncio, so the client side runs in a worker thread with its own
event loop while the server runs on Trio in the test's nursery.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field

import nio
import trio

from tests.e2e.conftest import LiveServerFactory


@dataclass
class Seen:
    bob_invite_reason: str | None = None
    bob_invite_room_name: str | None = None
    bob_invite_sender: str | None = None
    alice_saw_join: bool = False
    alice_messages: list[tuple[str, str]] = field(default_factory=list)
    alice_room_name: str | None = None
    whoami_before_logout: str | None = None
    whoami_after_logout: str | None = None
    sync_errors: list[str] = field(default_factory=list)


def _check_sync(seen: Seen, response: object) -> nio.SyncResponse:
    if not isinstance(response, nio.SyncResponse):
        seen.sync_errors.append(repr(response))
        raise AssertionError(f"sync failed: {response!r}")
    return response


async def _flow(base_url: str) -> Seen:
    seen = Seen()
    config = nio.AsyncClientConfig(max_timeouts=2, request_timeout=10)
    alice = nio.AsyncClient(base_url, "alice", config=config)
    bob = nio.AsyncClient(base_url, "bob", config=config)
    try:
        for client in (alice, bob):
            registered = await client.register(client.user, "secret-" + client.user)
            assert isinstance(registered, nio.RegisterResponse), registered
            logged_in = await client.login("secret-" + client.user, device_name="nio test")
            assert isinstance(logged_in, nio.LoginResponse), logged_in
        _check_sync(seen, await alice.sync(timeout=0))
        bob_first = _check_sync(seen, await bob.sync(timeout=0))

        created = await alice.room_create(name="Lunch plans", topic="Where do we eat?")
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id

        # nio's room_invite cannot send a reason: use its raw request on the same session.
        path = nio.Api._build_path(
            ["rooms", room_id, "invite"], {"access_token": alice.access_token}
        )
        raw = await alice.send(
            "POST", path, json.dumps({"user_id": bob.user_id, "reason": "Pizza on Friday?"})
        )
        assert raw.status == 200, await raw.text()

        invited = _check_sync(seen, await bob.sync(timeout=5000, since=bob_first.next_batch))
        invite_info = invited.rooms.invite[room_id]
        for event in invite_info.invite_state:
            if isinstance(event, nio.InviteMemberEvent) and event.state_key == bob.user_id:
                seen.bob_invite_reason = event.content.get("reason")
                seen.bob_invite_sender = event.sender
            if isinstance(event, nio.InviteNameEvent):
                seen.bob_invite_room_name = event.name
        assert room_id in bob.invited_rooms

        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        sent = await bob.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "Yes, pizza!"}
        )
        assert isinstance(sent, nio.RoomSendResponse), sent

        for _ in range(5):
            response = _check_sync(seen, await alice.sync(timeout=2000))
            timeline = response.rooms.join.get(room_id)
            if timeline is None:
                continue
            for event in timeline.timeline.events:
                if isinstance(event, nio.RoomMemberEvent) and event.state_key == bob.user_id:
                    seen.alice_saw_join = seen.alice_saw_join or event.membership == "join"
                if isinstance(event, nio.RoomMessageText):
                    seen.alice_messages.append((event.sender, event.body))
            if seen.alice_messages:
                break
        seen.alice_room_name = alice.rooms[room_id].name

        who = await bob.whoami()
        seen.whoami_before_logout = who.user_id if isinstance(who, nio.WhoamiResponse) else None
        old_token = bob.access_token
        logged_out = await bob.logout()
        assert isinstance(logged_out, nio.LogoutResponse), logged_out
        stale = nio.AsyncClient(base_url, bob.user_id, config=config)
        stale.access_token = old_token
        stale.user_id = bob.user_id
        try:
            after = await stale.whoami()
            seen.whoami_after_logout = (
                after.status_code if isinstance(after, nio.WhoamiError) else "still valid"
            )
        finally:
            await stale.close()
    finally:
        await alice.close()
        await bob.close()
    return seen


async def test_everyday_flow_with_matrix_nio(live_server_factory: LiveServerFactory) -> None:
    async with live_server_factory(server_name="nio.test") as url:
        with trio.fail_after(60):
            seen = await trio.to_thread.run_sync(
                functools.partial(asyncio.run, _flow(url)), abandon_on_cancel=True
            )
    assert seen.sync_errors == []
    assert seen.bob_invite_reason == "Pizza on Friday?"
    assert seen.bob_invite_sender == "@alice:nio.test"
    assert seen.bob_invite_room_name == "Lunch plans"
    assert seen.alice_saw_join
    assert seen.alice_messages == [("@bob:nio.test", "Yes, pizza!")]
    assert seen.alice_room_name == "Lunch plans"
    assert seen.whoami_before_logout == "@bob:nio.test"
    assert seen.whoami_after_logout == "M_UNKNOWN_TOKEN"


async def _flow_with_server_events(
    base_url: str,
) -> tuple[list[str], list[str], int, list[tuple[str, str, str]]]:
    """alice (an admin) sends server events to herself, her room and everyone while
    she and bob keep syncing with nio; returns (errors, messages bob saw, syncs, the
    compatibility notices bob read as messages: (sender, msgtype, body))."""
    config = nio.AsyncClientConfig(max_timeouts=2, request_timeout=10)
    alice = nio.AsyncClient(base_url, "admin", config=config)
    bob = nio.AsyncClient(base_url, "bob", config=config)
    errors: list[str] = []
    seen: list[str] = []
    notices: list[tuple[str, str, str]] = []
    syncs = 0
    try:
        for client in (alice, bob):
            registered = await client.register(client.user, "pw-" + client.user)
            assert isinstance(registered, nio.RegisterResponse), registered
        created = await alice.room_create(name="Status", invite=[bob.user_id])
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await bob.sync(timeout=0)
        assert isinstance(await bob.join(room_id), nio.JoinResponse)
        for client in (alice, bob):
            first = await client.sync(timeout=0)
            assert isinstance(first, nio.SyncResponse), first
        path = nio.Api._build_path(
            [],
            {"access_token": alice.access_token},
            base_path="/_homeserver/admin/v1/server_events",
        )
        for i in range(3):
            for target in (
                {"user_id": bob.user_id},
                {"room_id": room_id},
                {"all_users": True},
            ):
                body = {"type": "org.example.status", "content": {"n": i, "body": f"n{i}"}}
                reply = await alice.send("POST", path, json.dumps({**body, **target}))
                assert reply.status == 200, await reply.text()
            sent = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": f"message {i}"}
            )
            assert isinstance(sent, nio.RoomSendResponse), sent
            for client in (alice, bob):
                response = await client.sync(timeout=1000)
                syncs += 1
                if not isinstance(response, nio.SyncResponse):
                    errors.append(repr(response))
                    continue
                if client is bob and room_id in response.rooms.join:
                    seen.extend(
                        e.body
                        for e in response.rooms.join[room_id].timeline.events
                        if isinstance(e, nio.RoomMessageText)
                    )
        # The events had a body: bob is invited to his server-notices room, where the
        # same text arrives as ordinary messages from the notices user.
        notices_room = next(
            (r for r, room in bob.invited_rooms.items() if room.inviter == "@server:nio.test"),
            None,
        )
        assert notices_room is not None, list(bob.invited_rooms)
        assert isinstance(await bob.join(notices_room), nio.JoinResponse)
        response = await bob.sync(timeout=1000)
        assert isinstance(response, nio.SyncResponse), response
        for event in response.rooms.join[notices_room].timeline.events:
            if isinstance(event, nio.RoomMessage):
                content = event.source["content"]
                notices.append((event.sender, content["msgtype"], content["body"]))
    finally:
        await alice.close()
        await bob.close()
    return errors, seen, syncs, notices


async def test_nio_keeps_syncing_while_server_events_flow(
    live_server_factory: LiveServerFactory,
) -> None:
    async with live_server_factory(server_name="nio.test", admins=("@admin:nio.test",)) as url:
        with trio.fail_after(60):
            errors, seen, syncs, notices = await trio.to_thread.run_sync(
                functools.partial(asyncio.run, _flow_with_server_events(url)),
                abandon_on_cancel=True,
            )
    assert errors == []
    assert syncs == 6
    assert seen == ["message 0", "message 1", "message 2"]
    # Every event with a body reached bob (user-targeted, room and broadcast ones).
    assert [body for _, _, body in notices] == [f"n{i}" for i in range(3) for _ in range(3)]
    assert {(sender, msgtype) for sender, msgtype, _ in notices} == {
        ("@server:nio.test", "m.server_notice")
    }
