"""The session engine over HTTP: the Matrix-Session header, /sessions, expiry (409
M_SESSION_EXPIRED), presence and typing routes, /sync, logout, operator switches.

The engine runs on trio's mock clock with its loops (expiry, keepalive) in the test's
nursery; users and rooms are made through storage and engine calls, so the only
sessions are those the HTTP requests under test start.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import trio
from quart.testing import QuartClient
from trio.testing import MockClock

from backends.records import JsonDict, Presence
from homeserver.app import create_app
from homeserver.asgi import ASGIApp, HomeserverASGI
from homeserver.clock import TrioClock
from homeserver.engine import Engine
from tests.engine.conftest import (
    Client,
    Harness,
    create_room,
    presence_events,
    start_engine,
    typing_users,
)
from tests.helpers import Api, Reply, assert_error, q

T = 10_000  # session_timeout_ms unless a test says otherwise
HEADER = "Matrix-Session"
ONLINE, UNAVAILABLE, OFFLINE = Presence.ONLINE, Presence.UNAVAILABLE, Presence.OFFLINE


class Server(Harness):
    """The engine harness plus the app in front of it."""

    def __init__(self, engine: Engine, api: Api, mock_clock: MockClock) -> None:
        assert isinstance(engine.clock, TrioClock)
        super().__init__(engine, engine.clock)
        self.api = api
        self.mock_clock = mock_clock

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Keep the autojump clock still. Quart runs sync error handlers in a worker
        thread; waiting for it, every task is blocked and the clock would jump."""
        saved = self.mock_clock.autojump_threshold
        self.mock_clock.autojump_threshold = math.inf
        try:
            yield
        finally:
            self.mock_clock.autojump_threshold = saved

    async def call(
        self,
        method: str,
        path: str,
        client: Client | None,
        *,
        session_id: str | None = None,
        body: Any = None,
        query: dict[str, str] | None = None,
        long_poll: bool = False,
    ) -> Reply:
        """One request. Time stands still during it unless it is a long poll."""
        headers = {HEADER: session_id} if session_id is not None else None
        call = self.api.call(
            method,
            path,
            token=client.token if client is not None else None,
            body=body,
            query=query,
            headers=headers,
        )
        if long_poll:
            return await call
        with self.frozen():
            return await call

    async def whoami(self, client: Client, session_id: str | None = None) -> Reply:
        return await self.call("GET", "account/whoami", client, session_id=session_id)

    async def session(self, client: Client) -> str:
        """The session a plain request of the client runs in."""
        reply = await self.whoami(client)
        assert reply.status == 200, reply.body
        sid = sent_session(reply)
        assert sid is not None
        return sid

    async def get_sync(
        self,
        client: Client,
        since: str | None = None,
        timeout_ms: int | None = None,
        session_id: str | None = None,
        **query: str,
    ) -> JsonDict:
        if since is not None:
            query["since"] = since
        if timeout_ms is not None:
            query["timeout"] = str(timeout_ms)
        reply = await self.call(
            "GET", "sync", client, session_id=session_id, query=query, long_poll=bool(timeout_ms)
        )
        assert reply.status == 200, reply.body
        body: JsonDict = reply.body
        return body

    async def typing(
        self,
        client: Client,
        room_id: str,
        body: Any,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> Reply:
        path = f"rooms/{q(room_id)}/typing/{q(user_id or client.user_id)}"
        return await self.call("PUT", path, client, body=body, session_id=session_id)

    async def sessions(self, client: Client) -> list[JsonDict]:
        reply = await self.call("GET", "sessions", client)
        assert reply.status == 200, reply.body
        assert set(reply.body) == {"sessions"}
        sessions: list[JsonDict] = reply.body["sessions"]
        return sessions

    async def waiting(
        self, client: Client, since: str, change: Callable[[], Awaitable[None]]
    ) -> tuple[JsonDict, float]:
        """Long-poll /sync; make `change` once it waits; return the response and the trio
        time between the change and the response."""
        result: dict[str, Any] = {}

        async def poll() -> None:
            result["body"] = await self.get_sync(client, since=since, timeout_ms=60_000)
            result["at"] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await self.settle()
            assert "body" not in result  # it waits
            changed_at = trio.current_time()
            await change()
        return result["body"], result["at"] - changed_at


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return {"session_timeout_ms": T, **overrides}


def with_settings(**overrides: Any) -> pytest.MarkDecorator:
    """Run the test against a server with these config values."""
    label = ",".join(f"{k}={v}" for k, v in overrides.items())
    return pytest.mark.parametrize("settings", [overrides], indirect=True, ids=[label])


@pytest.fixture
async def server(
    settings: dict[str, Any], nursery: trio.Nursery, autojump_clock: MockClock
) -> AsyncIterator[Server]:
    """Tests using it must also request `autojump_clock` (pytest-trio hands the test's
    own arguments to trio.run)."""
    engine = await start_engine(nursery, **settings)
    app = create_app(engine)
    async with app.test_app():
        client = app.test_client()
        assert isinstance(client, QuartClient)
        yield Server(engine, Api(client), autojump_clock)


def sent_session(reply: Reply) -> str | None:
    """The Matrix-Session response header (header names are case-insensitive)."""
    values = [v for k, v in reply.headers.items() if k.lower() == HEADER.lower()]
    assert len(values) <= 1
    return values[0] if values else None


def assert_expired(reply: Reply, session_id: str) -> None:
    assert reply.status == 409, reply.body
    assert reply.body == {
        "errcode": "M_SESSION_EXPIRED",
        "error": reply.body["error"],
        "session_id": session_id,
    }
    assert isinstance(reply.body["error"], str) and reply.body["error"]
    assert sent_session(reply) == session_id


# -- the header and implicit sessions ---------------------------------------------------


async def test_an_implicit_session_appears_in_the_header_and_is_reused(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    first = await server.whoami(alice)
    assert first.status == 200
    assert first.body == {"user_id": alice.user_id, "device_id": "DEV", "is_guest": False}
    sid = sent_session(first)
    assert sid
    await server.at(100)
    assert sent_session(await server.whoami(alice)) == sid
    assert sent_session(await server.whoami(alice, sid)) == sid
    by_query = await server.call("GET", "account/whoami", alice, query={"session_id": sid})
    assert (by_query.status, sent_session(by_query)) == (200, sid)
    # Every route runs in it, /sync included.
    sync = await server.call("GET", "sync", alice)
    assert (sync.status, sent_session(sync)) == (200, sid)
    assert [s["session_id"] for s in await server.sessions(alice)] == [sid]


async def test_error_responses_of_authenticated_requests_name_the_session_too(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    sid = await server.session(alice)
    reply = await server.call(
        "PUT", f"rooms/{q('!nowhere:test.local')}/send/m.room.message/t1", alice, body={}
    )
    assert reply.status == 403
    assert sent_session(reply) == sid
    # Unauthenticated requests run in no session.
    no_token = await server.call("GET", "account/whoami", None)
    assert_error(no_token, 401, "M_MISSING_TOKEN")
    assert sent_session(no_token) is None
    bad_token = await server.api.call("GET", "account/whoami", token="nope")
    assert_error(bad_token, 401, "M_UNKNOWN_TOKEN")
    assert sent_session(bad_token) is None


async def test_browsers_may_read_the_header(server: Server, autojump_clock: MockClock) -> None:
    """Through the ASGI wrapper live servers use: the CORS headers expose it."""
    alice = await server.client("alice")
    app = HomeserverASGI(cast(ASGIApp, server.api.client.app))
    sent: list[dict[str, Any]] = []
    requested = False
    finished = trio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/_matrix/client/v3/account/whoami",
        "raw_path": b"/_matrix/client/v3/account/whoami",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test.local"),
            (b"authorization", f"Bearer {alice.token}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("test.local", 80),
        "extensions": {},
    }
    await app(scope, receive, send)
    start = sent[0]
    assert (start["type"], start["status"]) == ("http.response.start", 200)
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert headers["matrix-session"] == (await server.session(alice))
    assert headers["access-control-expose-headers"] == HEADER


# -- POST /sessions ----------------------------------------------------------------------


@pytest.mark.parametrize("presence", [ONLINE, UNAVAILABLE, OFFLINE])
async def test_explicit_start(server: Server, autojump_clock: MockClock, presence: str) -> None:
    alice = await server.client("alice")
    reply = await server.call(
        "POST", "sessions", alice, body={"presence": presence, "status_msg": "hi"}
    )
    assert reply.status == 200, reply.body
    sid = reply.body["session_id"]
    assert reply.body == {"session_id": sid, "presence": presence, "expires_in_ms": T}
    assert sent_session(reply) == sid
    assert sent_session(await server.whoami(alice)) == sid
    [listed] = await server.sessions(alice)
    assert (listed["session_id"], listed["presence"]) == (sid, presence)
    status = await server.call("GET", f"presence/{q(alice.user_id)}/status", alice)
    assert status.body["presence"] == presence
    if presence != OFFLINE:
        assert status.body["status_msg"] == "hi"


async def test_explicit_start_defaults_and_device_id(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    for body in (None, {}, {"device_id": "DEV"}):
        reply = await server.call("POST", "sessions", alice, body=body)
        assert reply.status == 200, reply.body
        assert reply.body["presence"] == ONLINE
    assert len(await server.sessions(alice)) == 1  # each replaced the one before


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({"device_id": "OTHER"}, 403, "M_FORBIDDEN"),
        ({"presence": "busy"}, 400, "M_INVALID_PARAM"),
        ({"presence": 1}, 400, "M_BAD_JSON"),
        ({"status_msg": ["x"]}, 400, "M_BAD_JSON"),
        ([], 400, "M_BAD_JSON"),
    ],
)
async def test_explicit_start_refusals_start_nothing(
    server: Server, autojump_clock: MockClock, body: Any, status: int, errcode: str
) -> None:
    alice = await server.client("alice")
    reply = await server.call("POST", "sessions", alice, body=body)
    assert_error(reply, status, errcode)
    assert await server.sessions(alice) == []
    assert server.published == []


async def test_explicit_start_replaces_the_active_session(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    old = await server.session(alice)
    assert (await server.typing(alice, room_id, {"typing": True, "timeout": 20_000})).status == 200
    since = (await server.get_sync(bob))["next_batch"]

    reply = await server.call("POST", "sessions", alice, body={"presence": "unavailable"})
    new = reply.body["session_id"]
    assert new != old
    # The old session ended: its typing stopped, and its id is stale.
    body = await server.get_sync(bob, since=since)
    assert typing_users(body, room_id) == [[]]
    assert presence_events(body) == [(alice.user_id, UNAVAILABLE)]
    assert_expired(await server.whoami(alice, old), new)
    assert [s["session_id"] for s in await server.sessions(alice)] == [new]


# -- DELETE /sessions/{id} -----------------------------------------------------------------


async def test_end_stops_typing_and_goes_offline_at_once(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    sid = await server.session(alice)
    await server.typing(alice, room_id, {"typing": True, "timeout": 20_000})
    since = (await server.get_sync(bob))["next_batch"]

    async def end() -> None:
        reply = await server.call("DELETE", f"sessions/{sid}", alice)
        assert (reply.status, reply.body) == (200, {})

    body, took = await server.waiting(bob, since, end)
    assert took == 0
    # Two changes: the long-poll returns on the first; the next sync has the rest.
    rest = await server.get_sync(bob, since=body["next_batch"])
    assert typing_users(body, room_id) == [[]]
    assert typing_users(rest, room_id) is None
    assert presence_events(body) + presence_events(rest) == [(alice.user_id, OFFLINE)]
    status = await server.call("GET", f"presence/{q(alice.user_id)}/status", bob)
    assert status.body["presence"] == OFFLINE
    assert await server.sessions(alice) == []
    # Gone: a second DELETE finds nothing; the next request starts a new session.
    assert_error(await server.call("DELETE", f"sessions/{sid}", alice), 404, "M_NOT_FOUND")
    assert await server.session(alice) != sid


async def test_end_of_another_users_or_an_unknown_session(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    bobs = await server.session(bob)
    assert_error(await server.call("DELETE", f"sessions/{bobs}", alice), 403, "M_FORBIDDEN")
    assert [s["session_id"] for s in await server.sessions(bob)] == [bobs]
    assert_error(await server.call("DELETE", "sessions/nope", alice), 404, "M_NOT_FOUND")
    # Sessions of the user's other devices may be ended.
    phone = await server.client("bob", "PHONE")
    reply = await server.call("DELETE", f"sessions/{bobs}", phone)
    assert (reply.status, reply.body) == (200, {})
    assert_error(await server.call("DELETE", f"sessions/{bobs}", bob), 404, "M_NOT_FOUND")


async def test_session_management_needs_a_token(server: Server, autojump_clock: MockClock) -> None:
    for method, path in (("POST", "sessions"), ("GET", "sessions"), ("DELETE", "sessions/x")):
        assert_error(await server.call(method, path, None), 401, "M_MISSING_TOKEN")


# -- GET /sessions -------------------------------------------------------------------------


async def test_listing_shows_the_users_live_sessions(
    server: Server, autojump_clock: MockClock
) -> None:
    phone = await server.client("alice", "PHONE")
    laptop = await server.client("alice", "LAPTOP")
    bob = await server.client("bob")
    on_phone = await server.session(phone)
    await server.session(bob)
    await server.at(1000)
    reply = await server.call("POST", "sessions", laptop, body={"presence": "offline"})
    on_laptop = reply.body["session_id"]
    await server.at(3000)
    await server.whoami(phone)
    await server.at(3500)
    assert await server.sessions(phone) == [
        {
            "session_id": on_phone,
            "device_id": "PHONE",
            "presence": ONLINE,
            "last_active_ago": 500,
            "expires_in_ms": 3000 + T - 3500,
        },
        {
            "session_id": on_laptop,
            "device_id": "LAPTOP",
            "presence": OFFLINE,
            "last_active_ago": 2500,
            "expires_in_ms": 1000 + T - 3500,
        },
    ]
    # Expired and ended sessions are not listed.
    await server.at(1000 + T)
    assert [s["session_id"] for s in await server.sessions(laptop)] == [on_phone]
    await server.call("DELETE", f"sessions/{on_phone}", laptop)
    assert await server.sessions(laptop) == []
    assert len(await server.sessions(bob)) == 0  # bob's own expired at T


# -- logout ------------------------------------------------------------------------------


async def test_logout_ends_the_devices_sessions(server: Server, autojump_clock: MockClock) -> None:
    phone = await server.client("alice", "PHONE")
    laptop = await server.client("alice", "LAPTOP")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, phone, bob)
    await server.session(phone)
    on_laptop = await server.session(laptop)
    await server.typing(phone, room_id, {"typing": True, "timeout": 20_000})
    since = (await server.get_sync(bob))["next_batch"]
    reply = await server.call("POST", "logout", phone)
    assert (reply.status, reply.body) == (200, {})
    assert [s["session_id"] for s in await server.sessions(laptop)] == [on_laptop]
    body = await server.get_sync(bob, since=since)
    assert typing_users(body, room_id) == [[]]
    assert presence_events(body) == []  # the laptop keeps alice online
    assert server.changes(phone.user_id) == [ONLINE]
    assert_error(await server.whoami(phone), 401, "M_UNKNOWN_TOKEN")


async def test_logout_all_ends_every_session(server: Server, autojump_clock: MockClock) -> None:
    phone = await server.client("alice", "PHONE")
    laptop = await server.client("alice", "LAPTOP")
    bob = await server.client("bob")
    await server.session(phone)
    await server.session(laptop)
    bobs = await server.session(bob)
    reply = await server.call("POST", "logout/all", phone)
    assert (reply.status, reply.body) == (200, {})
    assert await server.storage.sessions.list_user_sessions(phone.user_id) == []
    assert server.changes(phone.user_id) == [ONLINE, OFFLINE]
    assert [s["session_id"] for s in await server.sessions(bob)] == [bobs]


# -- expiry --------------------------------------------------------------------------------


async def test_expiry_gives_409_with_a_new_session(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    sid = await server.session(alice)
    await server.at(T - 1)
    assert sent_session(await server.whoami(alice, sid)) == sid  # extends to 2T - 1
    await server.at(2 * T - 1)
    reply = await server.whoami(alice, sid)
    [listed] = await server.sessions(alice)
    new = listed["session_id"]
    assert new != sid
    assert_expired(reply, new)
    assert listed["presence"] == ONLINE
    # The client retries in the new session.
    retry = await server.whoami(alice, new)
    assert (retry.status, sent_session(retry)) == (200, new)
    assert server.changes(alice.user_id) == [ONLINE, OFFLINE, ONLINE]


async def test_a_stale_id_gets_the_active_session_and_never_ends_it(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    stale = await server.session(alice)
    newer = (await server.call("POST", "sessions", alice)).body["session_id"]
    for session_id in (stale, "never-existed"):
        assert_expired(await server.whoami(alice, session_id), newer)
    assert [s["session_id"] for s in await server.sessions(alice)] == [newer]


async def test_a_request_refused_as_expired_had_no_effect(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    sid = await server.session(alice)
    since = (await server.get_sync(bob))["next_batch"]
    await server.at(T)
    path = f"rooms/{q(room_id)}/send/m.room.message/txn1"
    message = {"msgtype": "m.text", "body": "hello"}

    send = await server.call("PUT", path, alice, session_id=sid, body=message)
    new = send.body.get("session_id")
    assert_expired(send, new)
    typing = await server.typing(
        alice, room_id, {"typing": True, "timeout": 20_000}, session_id=sid
    )
    assert_expired(typing, new)
    presence = await server.call(
        "PUT",
        f"presence/{q(alice.user_id)}/status",
        alice,
        session_id=sid,
        body={"presence": "unavailable", "status_msg": "gone"},
    )
    assert_expired(presence, new)

    body = await server.get_sync(bob, since=since)
    room = body["rooms"]["join"].get(room_id)
    assert room is None or room["timeline"]["events"] == []
    assert typing_users(body, room_id) is None
    # Of alice, only the new session's presence (bob's own session expired too).
    assert [e for e in presence_events(body) if e[0] == alice.user_id] == [(alice.user_id, ONLINE)]
    # The retry in the new session works, once.
    retry = await server.call("PUT", path, alice, session_id=new, body=message)
    assert retry.status == 200
    body = await server.get_sync(bob, since=body["next_batch"])
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [retry.body["event_id"]]


async def test_session_ids_of_other_devices_and_users_are_forbidden(
    server: Server, autojump_clock: MockClock
) -> None:
    phone = await server.client("alice", "PHONE")
    laptop = await server.client("alice", "LAPTOP")
    bob = await server.client("bob")
    on_laptop = await server.session(laptop)
    bobs = await server.session(bob)
    for session_id in (on_laptop, bobs):
        reply = await server.whoami(phone, session_id)
        assert_error(reply, 403, "M_FORBIDDEN")
        assert sent_session(reply) is None
    assert [s["session_id"] for s in await server.sessions(phone)] == [on_laptop]


@pytest.mark.parametrize("session_id", ["has space", "a/b", "x" * 65, "é"])
async def test_a_malformed_session_id_is_refused(
    server: Server, autojump_clock: MockClock, session_id: str
) -> None:
    alice = await server.client("alice")
    by_query = await server.call("GET", "account/whoami", alice, query={"session_id": session_id})
    replies = [by_query]
    if session_id.isascii():  # header values are latin-1 on the wire
        replies.append(await server.whoami(alice, session_id))
    for reply in replies:
        assert_error(reply, 400, "M_INVALID_PARAM")
        assert sent_session(reply) is None
    assert await server.sessions(alice) == []


async def test_a_long_poll_keeps_its_session_alive(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    since = (await server.get_sync(alice))["next_batch"]
    sid = await server.session(alice)
    await server.at(T - 1)  # idle for almost the whole timeout, then long-poll
    await server.get_sync(alice, since=since, timeout_ms=3 * T, session_id=sid)
    assert server.ms() == 4 * T - 1
    await server.at(5 * T - 2)
    assert sent_session(await server.whoami(alice, sid)) == sid
    assert server.changes(alice.user_id) == [ONLINE]


# -- presence ------------------------------------------------------------------------------


async def test_two_devices_one_offline_one_away(server: Server, autojump_clock: MockClock) -> None:
    phone = await server.client("alice", "PHONE")
    laptop = await server.client("alice", "LAPTOP")
    bob = await server.client("bob")
    await create_room(server.engine, phone, bob)
    since = (await server.get_sync(bob))["next_batch"]
    await server.call("POST", "sessions", phone, body={"presence": "offline"})
    await server.call("POST", "sessions", laptop, body={"presence": "unavailable"})
    await server.whoami(phone)  # the offline device is active, yet stays invisible
    body = await server.get_sync(bob, since=since)
    assert presence_events(body) == [(phone.user_id, UNAVAILABLE)]
    status = await server.call("GET", f"presence/{q(phone.user_id)}/status", bob)
    assert (status.status, status.body["presence"]) == (200, UNAVAILABLE)
    assert status.body["currently_active"] is False


async def test_put_and_get_presence_status(server: Server, autojump_clock: MockClock) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    await create_room(server.engine, alice, bob)
    path = f"presence/{q(alice.user_id)}/status"
    reply = await server.call(
        "PUT", path, alice, body={"presence": "unavailable", "status_msg": "x"}
    )
    assert (reply.status, reply.body) == (200, {})
    await server.at(700)
    reply = await server.call("GET", path, bob)
    assert (reply.status, reply.body) == (
        200,
        {
            "presence": UNAVAILABLE,
            "currently_active": False,
            "last_active_ago": 700,
            "status_msg": "x",
        },
    )
    reply = await server.call("PUT", path, alice, body={"presence": "online"})
    assert reply.status == 200
    reply = await server.call("GET", path, alice)  # own: a request, now active
    assert reply.body == {"presence": ONLINE, "currently_active": True, "last_active_ago": 0}
    [session] = await server.sessions(alice)
    assert session["presence"] == ONLINE


async def test_presence_routes_refusals(server: Server, autojump_clock: MockClock) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    await create_room(server.engine, alice, bob)
    await server.session(alice)
    path = f"presence/{q(alice.user_id)}/status"
    assert_error(
        await server.call("PUT", path, bob, body={"presence": "offline"}), 403, "M_FORBIDDEN"
    )
    assert_error(await server.call("GET", path, carol), 403, "M_FORBIDDEN")
    unknown = f"presence/{q('@nobody:test.local')}/status"
    assert_error(await server.call("GET", unknown, alice), 404, "M_NOT_FOUND")
    assert_error(
        await server.call("PUT", path, alice, body={"presence": "busy"}), 400, "M_INVALID_PARAM"
    )
    assert_error(await server.call("PUT", path, alice, body={}), 400, "M_MISSING_PARAM")
    assert server.changes(alice.user_id) == [ONLINE]
    # The raw (unencoded) user id in the path works too.
    raw = await server.call("GET", f"presence/{alice.user_id}/status", bob)
    assert (raw.status, raw.body["presence"]) == (200, ONLINE)


async def test_sync_set_presence_sets_the_sessions_presence(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    await create_room(server.engine, alice, bob)
    since = (await server.get_sync(bob))["next_batch"]
    await server.get_sync(alice, set_presence="unavailable")
    await server.get_sync(alice, set_presence="unavailable")
    [session] = await server.sessions(alice)
    assert session["presence"] == UNAVAILABLE
    body = await server.get_sync(bob, since=since)
    # Started online by the first sync, then set unavailable: bob sees where it landed.
    assert presence_events(body) == [(alice.user_id, UNAVAILABLE)]
    assert server.changes(alice.user_id) == [ONLINE, UNAVAILABLE]
    await server.get_sync(alice, set_presence="offline")
    assert server.changes(alice.user_id) == [ONLINE, UNAVAILABLE, OFFLINE]
    bad = await server.call("GET", "sync", alice, query={"set_presence": "busy"})
    assert_error(bad, 400, "M_INVALID_PARAM")


async def test_comembers_see_each_presence_change_once(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    await create_room(server.engine, alice, bob)
    since = (await server.get_sync(bob))["next_batch"]

    async def bob_sees() -> list[tuple[str, str]]:
        nonlocal since
        body = await server.get_sync(bob, since=since)
        since = body["next_batch"]
        return [e for e in presence_events(body) if e[0] == alice.user_id]

    assert await bob_sees() == []
    sid = await server.session(alice)
    assert await bob_sees() == [(alice.user_id, ONLINE)]
    for ms in range(1, 10):
        await server.at(ms * 100)
        await server.whoami(alice)
        await server.get_sync(alice)
        assert await bob_sees() == []
    path = f"presence/{q(alice.user_id)}/status"
    await server.call("PUT", path, alice, body={"presence": "unavailable"})
    await server.call("PUT", path, alice, body={"presence": "unavailable"})
    assert await bob_sees() == [(alice.user_id, UNAVAILABLE)]
    await server.call("DELETE", f"sessions/{sid}", alice)
    assert await bob_sees() == [(alice.user_id, OFFLINE)]
    await server.session(alice)
    assert await bob_sees() == [(alice.user_id, ONLINE)]
    await server.at(2000 + T)
    assert await bob_sees() == [(alice.user_id, OFFLINE)]
    assert await bob_sees() == []


async def test_a_presence_change_reaches_a_waiting_comember_at_once(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    await create_room(server.engine, alice, bob)
    since = (await server.get_sync(bob))["next_batch"]

    async def alice_arrives() -> None:
        await server.whoami(alice)

    body, took = await server.waiting(bob, since, alice_arrives)
    assert took == 0
    assert presence_events(body) == [(alice.user_id, ONLINE)]

    async def alice_away() -> None:
        path = f"presence/{q(alice.user_id)}/status"
        await server.call("PUT", path, alice, body={"presence": "unavailable"})

    body, took = await server.waiting(bob, body["next_batch"], alice_away)
    assert took == 0
    assert presence_events(body) == [(alice.user_id, UNAVAILABLE)]


async def test_clients_that_never_send_a_session_id_stay_online_while_they_sync(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    await create_room(server.engine, alice, bob)
    since = (await server.get_sync(alice))["next_batch"]
    sid = sent_session(await server.whoami(alice))
    while server.ms() < 10 * T:
        reply = await server.call(
            "GET", "sync", alice, query={"since": since, "timeout": "30000"}, long_poll=True
        )
        assert (reply.status, sent_session(reply)) == (200, sid)
        since = reply.body["next_batch"]
    status = await server.call("GET", f"presence/{q(alice.user_id)}/status", bob)
    assert status.body["presence"] == ONLINE
    assert server.changes(alice.user_id) == [ONLINE]


# -- typing ----------------------------------------------------------------------------------


async def test_typing_reaches_members_in_ephemeral_events(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    await server.session(alice)  # her coming online would wake bob on its own
    since = (await server.get_sync(bob))["next_batch"]

    async def start() -> None:
        reply = await server.typing(alice, room_id, {"typing": True, "timeout": 20_000})
        assert (reply.status, reply.body) == (200, {})

    body, took = await server.waiting(bob, since, start)
    assert took == 0
    assert body["rooms"]["join"][room_id]["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}
    ]

    async def stop() -> None:
        reply = await server.typing(alice, room_id, {"typing": False})
        assert (reply.status, reply.body) == (200, {})

    body, took = await server.waiting(bob, body["next_batch"], stop)
    assert took == 0
    assert typing_users(body, room_id) == [[]]


@with_settings(session_timeout_ms=60_000)
async def test_typing_timeout_is_capped_at_thirty_seconds_by_default(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    await server.typing(alice, room_id, {"typing": True, "timeout": 10**9})
    since = (await server.get_sync(bob))["next_batch"]
    body = await server.get_sync(bob, since=since, timeout_ms=60_000)
    assert server.ms() == 30_000
    assert typing_users(body, room_id) == [[]]


@with_settings(session_timeout_ms=60_000, typing_timeout_cap_ms=5000)
async def test_typing_timeout_cap_is_configurable(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    await server.typing(alice, room_id, {"typing": True, "timeout": 20_000})
    since = (await server.get_sync(bob))["next_batch"]
    await server.at(4999)
    body = await server.get_sync(bob, since=since)
    assert typing_users(body, room_id) is None  # still typing: no change
    body = await server.get_sync(bob, since=body["next_batch"], timeout_ms=60_000)
    assert server.ms() == 5000
    assert typing_users(body, room_id) == [[]]


async def test_typing_refusals(server: Server, autojump_clock: MockClock) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    room_id = await create_room(server.engine, alice, bob)
    for_bob = await server.typing(alice, room_id, {"typing": True}, user_id=bob.user_id)
    assert_error(for_bob, 403, "M_FORBIDDEN")
    assert_error(await server.typing(carol, room_id, {"typing": True}), 403, "M_FORBIDDEN")
    assert_error(await server.typing(alice, room_id, {}), 400, "M_BAD_JSON")
    assert_error(await server.typing(alice, room_id, {"typing": "yes"}), 400, "M_BAD_JSON")
    bad_timeout = await server.typing(alice, room_id, {"typing": True, "timeout": -1})
    assert_error(bad_timeout, 400, "M_BAD_JSON")
    assert server.engine.typing.last_change(room_id) is None


async def test_typing_stops_when_its_session_expires(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    await server.typing(alice, room_id, {"typing": True, "timeout": 25_000})
    since = (await server.get_sync(bob))["next_batch"]
    await server.at(T - 1)
    body = await server.get_sync(bob, since=since)
    assert typing_users(body, room_id) is None
    body = await server.get_sync(bob, since=body["next_batch"], timeout_ms=60_000)
    assert server.ms() == T
    assert typing_users(body, room_id) == [[]]


# -- operator switches -----------------------------------------------------------------------


@with_settings(sessions_enabled=False)
async def test_with_sessions_disabled_requests_work_without_the_header(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await create_room(server.engine, alice, bob)
    reply = await server.whoami(alice)
    assert reply.status == 200
    assert sent_session(reply) is None
    reply = await server.whoami(alice, "anything")
    assert (reply.status, sent_session(reply) is not None) == (200, False)
    assert (await server.typing(alice, room_id, {"typing": True, "timeout": 25_000})).status == 200
    since = (await server.get_sync(bob))["next_batch"]
    await server.at(25_000 - 1)  # well past the session timeout: still typing
    body = await server.get_sync(bob, since=since)
    assert typing_users(body, room_id) is None
    body = await server.get_sync(bob, since=body["next_batch"], timeout_ms=60_000)
    assert server.ms() == 25_000
    assert typing_users(body, room_id) == [[]]
    assert await server.storage.sessions.list_user_sessions(alice.user_id) == []


@with_settings(presence_enabled=False)
async def test_with_presence_disabled_there_are_no_presence_events(
    server: Server, autojump_clock: MockClock
) -> None:
    alice = await server.client("alice")
    bob = await server.client("bob")
    await create_room(server.engine, alice, bob)
    since = (await server.get_sync(bob))["next_batch"]
    sid = await server.session(alice)
    path = f"presence/{q(alice.user_id)}/status"
    assert (await server.call("PUT", path, alice, body={"presence": "unavailable"})).status == 200
    await server.call("DELETE", f"sessions/{sid}", alice)
    await server.whoami(alice)
    body = await server.get_sync(bob, since=since)
    assert body["presence"] == {"events": []}
    reply = await server.call("GET", path, bob)
    assert (reply.status, reply.body) == (200, {"presence": OFFLINE, "currently_active": False})
    assert server.published == []


@with_settings(session_timeout_ms=3000)
async def test_session_timeout_is_honoured(server: Server, autojump_clock: MockClock) -> None:
    alice = await server.client("alice")
    sid = await server.session(alice)
    [listed] = await server.sessions(alice)
    assert listed["expires_in_ms"] == 3000
    await server.at(2999)
    assert [s["session_id"] for s in await server.sessions(alice)] == [sid]
    await server.at(3000)
    assert await server.sessions(alice) == []
    assert server.changes(alice.user_id) == [ONLINE, OFFLINE]


@with_settings(session_touch_coalesce_ms=1000)
async def test_touches_are_coalesced(
    server: Server, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await server.client("alice")
    writes: list[int] = []
    touch = server.storage.sessions.touch_session

    async def counting(*args: Any) -> bool:
        writes.append(server.ms())
        return await touch(*args)

    monkeypatch.setattr(server.storage.sessions, "touch_session", counting)
    sid = await server.session(alice)
    for ms in range(0, 3000, 20):
        await server.at(ms)
        assert (await server.whoami(alice, sid)).status == 200
    assert 1 <= len(writes) <= 3
    assert all(b - a >= 1000 for a, b in itertools.pairwise(writes))
    last = 2980
    await server.at(last + T - 1)
    assert [s["session_id"] for s in await server.sessions(alice)] == [sid]
    await server.at(last + T + 1000)
    assert await server.sessions(alice) == []


async def test_session_endpoints_do_not_exist_when_sessions_are_disabled() -> None:
    from quart.testing import QuartClient

    from backends.memory import open_memory
    from homeserver.app import create_app
    from homeserver.engine import Engine
    from tests.helpers import make_config

    async with open_memory("memory://") as storage:
        app = create_app(Engine(make_config(sessions_enabled=False), storage))
        async with app.test_app():
            client = app.test_client()
            assert isinstance(client, QuartClient)
            api = Api(client)
            alice = await api.register("alice")
            for method, path in (
                ("POST", "sessions"),
                ("GET", "sessions"),
                ("DELETE", "sessions/abc"),
            ):
                reply = await api.call(
                    method, path, token=alice, body={} if method == "POST" else None
                )
                assert (reply.status, reply.errcode) == (404, "M_UNRECOGNIZED"), (
                    method,
                    reply.body,
                )
            whoami = await api.call("GET", "account/whoami", token=alice)
            assert whoami.status == 200 and "matrix-session" not in {
                k.lower() for k in whoami.headers
            }
