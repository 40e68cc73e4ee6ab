"""Plugin event sources: the session, registration and room-creation hooks, periodic
`run` loops on the mock clock (and their restart after a failure), hooks that fail or
stall without touching the request that caused them, the built-in Welcome and
ServerStatus plugins (the latter end to end on a real server, told "draining" on a
graceful shutdown while a /sync waits), and send_server_event's bad targets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from quart.testing import QuartClient

import homeserver.server
from backends import Storage
from backends.memory import open_memory
from homeserver.app import create_app
from homeserver.clock import TrioClock
from homeserver.engine import Engine
from homeserver.engine.sync import stream_token
from homeserver.errors import NotFoundError
from homeserver.namespace import SERVER_STATUS
from homeserver.server import serve
from plugins.api import RUN_RESTART_DELAY_S, RoomCreated, SessionSignal, UserRegistered
from plugins.builtin.server_status import DEFAULT_MESSAGES
from plugins.builtin.welcome import WELCOME
from plugins.loader import PluginLoadError, PluginSpec
from tests.helpers import Api, Reply, User, make_config, q
from tests.plugins import source_plugins
from tests.plugins.source_plugins import GREETING, ROOM_NOTICE, TICK, recorded

SOURCES = "tests.plugins.source_plugins"
WELCOME_PLUGIN = "plugins.builtin.welcome:Welcome"
STATUS_PLUGIN = "plugins.builtin.server_status:ServerStatus"
SERVER_NAME = "test.local"
V3 = "/_matrix/client/v3"


def plugin(cls: str, **config: Any) -> PluginSpec:
    return PluginSpec(f"{SOURCES}:{cls}", config)


@pytest.fixture(autouse=True)
def fresh_records() -> Iterator[None]:
    source_plugins.reset()
    yield
    source_plugins.reset()


@dataclass
class Server:
    """An engine with its loops running (the event-source dispatcher, the plugins'
    `run` loops, session expiry) behind the Quart test client."""

    api: Api
    engine: Engine
    users: dict[str, User]
    started_at: float  # trio time at which the engine's loops started

    async def pos(self) -> str:
        """A sync token for "now", read without a request (no session is started)."""
        return stream_token(await self.engine.storage.rooms.current_stream_pos())

    async def server_events(
        self, user: User, since: str | None = None, timeout_ms: int = 0
    ) -> tuple[list[dict[str, Any]], str]:
        """The top-level server events of one /sync, and its next_batch."""
        query = {"timeout": str(timeout_ms)}
        if since is not None:
            query["since"] = since
        body = await self.api.sync(user, **query)
        return list(body["server_events"]["events"]), body["next_batch"]

    async def next_server_events(
        self, user: User, since: str, timeout_s: float = 30
    ) -> tuple[list[dict[str, Any]], str]:
        """Long-poll /sync from `since` until server events arrive (a sync woken by
        other news, such as the new session's presence, does not count)."""
        with trio.fail_after(timeout_s):
            while True:
                events, since = await self.server_events(user, since, int(timeout_s * 1000))
                if events:
                    return events, since

    async def whoami(self, user: User) -> Reply:
        return await self.api.call("GET", "account/whoami", token=user)


@asynccontextmanager
async def running(
    *plugins: PluginSpec,
    users: tuple[str, ...] = ("alice",),
    storage: Storage | None = None,
    **overrides: Any,
) -> AsyncIterator[Server]:
    """A server with these plugins and `users` registered BEFORE its loops start (argon2
    runs in a thread, which would let the autojump clock move under a test's feet)."""
    async with open_memory("memory://") as fresh:
        store = storage or fresh
        engine = Engine(make_config(plugins=plugins, **overrides), store, clock=TrioClock())
        app = create_app(engine)
        async with app.test_app():
            client = app.test_client()
            assert isinstance(client, QuartClient)
            api = Api(client)
            registered = {name: await api.register(name) for name in users}
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                try:
                    yield Server(api, engine, registered, trio.current_time())
                finally:
                    nursery.cancel_scope.cancel()


async def eventually(predicate: Callable[[], object], timeout_s: float = 5) -> None:
    """Wait until `predicate()` holds (the background dispatcher has caught up). It
    polls: what it waits for (a log record, a plugin's record) signals nothing."""
    with trio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.001)


def plugin_logs(caplog: pytest.LogCaptureFixture, name: str, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("homeserver.plugins")
        and name in r.getMessage()
        and text in r.getMessage()
    ]


async def login(api: Api, user: User) -> User:
    """Another device of `user` (a password login)."""
    reply = await api.call(
        "POST",
        "login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
        },
    )
    assert reply.status == 200, reply.body
    return User(user.user_id, reply.body["access_token"], reply.body["device_id"], user.password)


def session_of(reply: Reply) -> str:
    assert reply.status == 200, reply.body
    # Header names are case-insensitive (the test client gives them lower-cased).
    (session_id,) = [v for k, v in reply.headers.items() if k.lower() == "matrix-session"]
    return session_id


# -- session hooks -----------------------------------------------------------------------


async def test_a_session_start_hook_sends_an_event_seen_in_the_next_incremental_sync(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(plugin("Source", greet=True, hooks=["on_session_started"])) as s:
        alice = s.users["alice"]
        since = await s.pos()
        assert recorded("on_session_started") == []  # registering starts no session
        # The first authenticated request starts the session; the hook runs afterwards.
        session_id = session_of(await s.whoami(alice))
        # A waiting /sync wakes for the event (no 30 s pass on the mock clock).
        started = trio.current_time()
        events, next_batch = await s.next_server_events(alice, since)
        assert trio.current_time() - started < 1
        (event,) = events
        assert event == {
            "type": GREETING,
            "content": {"device_id": alice.device_id, "session_id": session_id},
            "sender": SERVER_NAME,
            "event_id": recorded("sent")[0].payload,
            "origin_server_ts": event["origin_server_ts"],
        }
        assert isinstance(event["origin_server_ts"], int)
        (signal,) = recorded("on_session_started")
        assert signal.payload == SessionSignal(alice.user_id, alice.device_id, session_id, "online")
        # Delivered once: the next incremental sync does not repeat it, and the same
        # session's later requests start nothing.
        assert (await s.server_events(alice, next_batch))[0] == []
        assert len(recorded("on_session_started")) == 1


async def test_session_ended_fires_on_delete_with_the_sessions_fields() -> None:
    async with running(plugin("Source", hooks=["on_session_started", "on_session_ended"])) as s:
        alice = s.users["alice"]
        started = await s.api.call(
            "POST", "sessions", token=alice, body={"presence": "unavailable"}
        )
        session_id = session_of(started)
        deleted = await s.api.call("DELETE", f"sessions/{q(session_id)}", token=alice)
        assert deleted.status == 200, deleted.body
        await eventually(lambda: recorded("on_session_ended"))
        (ended,) = recorded("on_session_ended")
        expected = SessionSignal(alice.user_id, alice.device_id, session_id, "unavailable")
        assert ended.payload == expected
        assert [r.payload for r in recorded("on_session_started")] == [expected]


async def test_session_ended_fires_on_logout() -> None:
    async with running(plugin("Source", hooks=["on_session_ended"]), users=("alice", "bob")) as s:
        alice, bob = s.users["alice"], s.users["bob"]
        session_id = session_of(await s.whoami(alice))
        session_of(await s.whoami(bob))
        logout = await s.api.call("POST", "logout", token=alice, body={})
        assert logout.status == 200, logout.body
        await eventually(lambda: recorded("on_session_ended"))
        # Let the dispatcher drain: bob's session must not be reported.
        await trio.testing.wait_all_tasks_blocked()
        (ended,) = recorded("on_session_ended")
        assert ended.payload == SessionSignal(alice.user_id, alice.device_id, session_id, "online")


async def test_session_ended_fires_on_logout_all_for_every_session() -> None:
    async with running(plugin("Source", hooks=["on_session_ended"])) as s:
        alice = s.users["alice"]
        phone = await login(s.api, alice)
        sessions = {session_of(await s.whoami(alice)), session_of(await s.whoami(phone))}
        assert (await s.api.call("POST", "logout/all", token=alice, body={})).status == 200
        await eventually(lambda: len(recorded("on_session_ended")) == 2)
        payloads = [r.payload for r in recorded("on_session_ended")]
        assert all(isinstance(p, SessionSignal) for p in payloads)
        assert {p.session_id for p in payloads if isinstance(p, SessionSignal)} == sessions
        assert {p.device_id for p in payloads if isinstance(p, SessionSignal)} == {
            alice.device_id,
            phone.device_id,
        }


async def test_session_ended_fires_on_expiry(autojump_clock: trio.testing.MockClock) -> None:
    async with running(plugin("Source", hooks=["on_session_ended"])) as s:
        alice = s.users["alice"]
        timeout_s = s.engine.config.session_timeout_ms / 1000
        coalesce_s = s.engine.config.session_touch_coalesce_ms / 1000
        last_request = trio.current_time()
        session_id = session_of(await s.whoami(alice))
        await trio.sleep(timeout_s - 1)
        assert recorded("on_session_ended") == []  # not before the timeout
        await trio.sleep(1 + coalesce_s + 1)
        (ended,) = recorded("on_session_ended")
        assert ended.payload == SessionSignal(alice.user_id, alice.device_id, session_id, "online")
        assert timeout_s <= ended.at - last_request <= timeout_s + coalesce_s + 1


# -- registration and room creation ------------------------------------------------------


async def test_user_registered_and_room_created_hooks_get_their_payloads() -> None:
    hooks = ["on_user_registered", "on_room_created"]
    async with running(plugin("Source", hooks=hooks), users=()) as s:
        carol = await s.api.register("carol")
        await eventually(lambda: recorded("on_user_registered"))
        room_id = await s.api.create_room(carol, name="Carol's")
        await eventually(lambda: recorded("on_room_created"))
        assert [r.payload for r in recorded("on_user_registered")] == [
            UserRegistered("@carol:test.local")
        ]
        assert [r.payload for r in recorded("on_room_created")] == [
            RoomCreated(room_id=room_id, creator=carol.user_id)
        ]
        # A failed registration (the name is taken) signals nothing.
        taken = await s.api.call(
            "POST",
            "register",
            body={"username": "carol", "password": "pw", "auth": {"type": "m.login.dummy"}},
        )
        assert taken.errcode == "M_USER_IN_USE"
        await trio.testing.wait_all_tasks_blocked()
        assert len(recorded("on_user_registered")) == 1


async def test_a_room_created_hook_can_send_to_the_room_as_ephemeral() -> None:
    spec = plugin("Source", hooks=["on_room_created"], announce_rooms=True)
    async with running(spec, users=("alice", "bob")) as s:
        alice, bob = s.users["alice"], s.users["bob"]
        since = {u.user_id: (await s.api.sync(u))["next_batch"] for u in (alice, bob)}
        room_id = await s.api.create_room(alice)
        body = await s.api.sync(alice, since=since[alice.user_id], timeout="5000")
        room = body["rooms"]["join"][room_id]
        if not room["ephemeral"]["events"]:  # the room came first, the notice next
            body = await s.api.sync(alice, since=body["next_batch"], timeout="5000")
            room = body["rooms"]["join"][room_id]
        (notice,) = room["ephemeral"]["events"]
        assert notice["type"] == ROOM_NOTICE and notice["sender"] == SERVER_NAME
        assert notice["content"] == {"creator": alice.user_id}
        assert all(e["type"] != ROOM_NOTICE for e in room["timeline"]["events"])
        # Not for bob, who is not in the room.
        bobs = await s.api.sync(bob, since=since[bob.user_id])
        assert bobs["rooms"]["join"] == {} and bobs["server_events"]["events"] == []


# -- run loops ---------------------------------------------------------------------------


async def test_a_periodic_loop_emits_once_per_period_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(plugin("Ticker", period_s=60)) as s:
        alice = s.users["alice"]
        events, since = await s.server_events(alice)
        assert events == []
        await trio.sleep_until(s.started_at + 59.5)
        assert (await s.server_events(alice, since))[0] == []
        await trio.sleep_until(s.started_at + 60.5)
        first, after_first = await s.server_events(alice, since)
        assert [(e["type"], e["content"], e["sender"]) for e in first] == [
            (TICK, {"n": 1}, SERVER_NAME)
        ]
        await trio.sleep_until(s.started_at + 120.5)
        both, _ = await s.server_events(alice, since)
        assert [e["content"]["n"] for e in both] == [1, 2]
        assert both[0] == first[0]
        assert both[1]["origin_server_ts"] - both[0]["origin_server_ts"] == 60_000
        # Incrementally, the second tick only; and a new device's initial sync shows both.
        assert [e["content"]["n"] for e in (await s.server_events(alice, after_first))[0]] == [2]
        assert [e["content"]["n"] for e in (await s.server_events(alice))[0]] == [1, 2]
        assert [r.at - s.started_at for r in recorded("sent")] == pytest.approx([60, 120])


async def test_a_failing_loop_is_logged_by_name_and_restarted_after_the_delay(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(plugin("FlakyLoop", mode="raise", seconds=1), users=()) as s:
        # Starts at 0, fails at 1, restarts at 1 + delay, fails again a second later.
        await trio.sleep_until(s.started_at + 1 + RUN_RESTART_DELAY_S + 0.5)
        starts = [r.at - s.started_at for r in recorded("start")]
        assert starts == pytest.approx([0, 1 + RUN_RESTART_DELAY_S])
        (failure,) = plugin_logs(caplog, f"{SOURCES}:FlakyLoop", "run failed")
        assert failure.levelno == logging.ERROR
        assert failure.exc_info is not None and failure.exc_info[0] is RuntimeError
        await trio.sleep_until(s.started_at + 2 * (1 + RUN_RESTART_DELAY_S) + 0.5)
        assert len(recorded("start")) == 3
        assert len(plugin_logs(caplog, f"{SOURCES}:FlakyLoop", "run failed")) == 2


async def test_a_loop_that_returns_is_not_restarted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(
        plugin("FlakyLoop", mode="return", seconds=1), plugin("Ticker", period_s=30), users=()
    ) as s:
        await trio.sleep_until(s.started_at + 10 * RUN_RESTART_DELAY_S)
        assert len(recorded("start")) == 1
        assert len(recorded("returned")) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        # The other plugin's loop runs on regardless.
        assert len(recorded("sent")) == int(10 * RUN_RESTART_DELAY_S // 30)


# -- failing hooks never touch the request -----------------------------------------------


@pytest.mark.parametrize("sync", [False, True])
async def test_a_raising_hook_is_logged_and_the_request_is_unaffected(
    sync: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(
        plugin("Raises", label="R", sync=sync, hooks=["on_session_started", "on_room_created"]),
        plugin("Source", label="after", greet=True, hooks=["on_session_started"]),
    ) as s:
        alice = s.users["alice"]
        since = await s.pos()
        whoami = await s.whoami(alice)
        assert whoami.status == 200
        assert whoami.body == {
            "user_id": alice.user_id,
            "device_id": alice.device_id,
            "is_guest": False,
        }
        created = await s.api.call("POST", "createRoom", token=alice, body={"name": "ok"})
        assert created.status == 200 and created.body["room_id"].startswith("!")
        name = f"{SOURCES}:Raises"
        await eventually(lambda: len(plugin_logs(caplog, name, "failed")) == 2)
        failures = plugin_logs(caplog, name, "failed")
        assert "on_session_started" in failures[0].getMessage()
        assert "on_room_created" in failures[1].getMessage()
        assert all(f.exc_info is not None and f.exc_info[0] is RuntimeError for f in failures)
        # The next plugin's hook still ran, and its event reached the user.
        events, _ = await s.next_server_events(alice, since, timeout_s=5)
        assert [e["type"] for e in events] == [GREETING]
        assert [r.what for r in source_plugins.RECORDS if r.label == "R"] == [
            "on_session_started",
            "on_room_created",
        ]


async def test_a_slow_hook_times_out_without_delaying_the_request(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(
        plugin("Sleeps", seconds=5, hooks=["on_session_started"]),
        plugin("Source", label="after", hooks=["on_session_started"]),
        plugin_timeout_ms=1000,
    ) as s:
        alice = s.users["alice"]
        before = trio.current_time()
        whoami = await s.whoami(alice)
        events, _ = await s.server_events(alice)
        # Both requests answered normally with the clock standing still: the hook is
        # asleep in the background, not in the request.
        assert trio.current_time() == before
        assert whoami.status == 200 and whoami.body["user_id"] == alice.user_id
        assert events == []
        assert [r.what for r in source_plugins.RECORDS] == ["on_session_started"]
        # Past the plugin timeout it is cancelled (never wakes), logged by name, and the
        # next plugin's hook runs.
        await trio.sleep(10)
        (after,) = recorded("on_session_started", "after")
        assert after.at - before == pytest.approx(1)
        assert recorded("woke") == []
        (timeout,) = plugin_logs(caplog, f"{SOURCES}:Sleeps", "timed out")
        assert "on_session_started" in timeout.getMessage()


async def test_a_slow_hook_within_the_timeout_completes_in_the_background(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = plugin("Sleeps", seconds=1, greet=True, hooks=["on_session_started"])
    async with running(spec, plugin_timeout_ms=2000) as s:
        alice = s.users["alice"]
        since = await s.pos()
        before = trio.current_time()
        assert (await s.whoami(alice)).status == 200
        assert trio.current_time() == before
        events, _ = await s.next_server_events(alice, since)
        assert [e["type"] for e in events] == [GREETING]
        assert trio.current_time() - before == pytest.approx(1, abs=0.01)


# -- send_server_event's targets ---------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("bob", ValueError),  # neither a user id, a room id nor ALL_USERS
        ("", ValueError),
        ("@nobody:test.local", NotFoundError),  # no such user
        ("!nowhere:test.local", NotFoundError),  # no such room
    ],
)
async def test_a_bad_target_fails_in_the_plugin_and_the_request_is_unaffected(
    target: str, error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    spec = plugin("Source", greet=True, target=target, hooks=["on_session_started"])
    async with running(spec) as s:
        alice = s.users["alice"]
        since = await s.pos()
        whoami = await s.whoami(alice)
        assert whoami.status == 200 and whoami.body["user_id"] == alice.user_id
        await eventually(lambda: plugin_logs(caplog, f"{SOURCES}:Source", "failed"))
        (failed,) = recorded("send_failed")
        assert isinstance(failed.payload, error)
        (logged,) = plugin_logs(caplog, f"{SOURCES}:Source", "failed")
        assert "on_session_started" in logged.getMessage()
        assert logged.exc_info is not None and logged.exc_info[0] is error
        assert recorded("sent") == []
        assert (await s.server_events(alice, since))[0] == []


async def test_all_users_target_reaches_everyone() -> None:
    spec = plugin("Source", greet=True, target="*", hooks=["on_session_started"])
    async with running(spec, users=("alice", "bob")) as s:
        alice, bob = s.users["alice"], s.users["bob"]
        since = await s.pos()
        assert (await s.whoami(alice)).status == 200
        await eventually(lambda: recorded("sent"))
        for user in (alice, bob):
            events, _ = await s.server_events(user, since)
            assert [(e["type"], e["content"]["device_id"]) for e in events] == [
                (GREETING, alice.device_id)
            ]


# -- the built-in Welcome plugin ---------------------------------------------------------


def welcomes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == WELCOME]


async def test_welcome_on_the_first_session_only() -> None:
    body = "Welcome to test.local! Read the rules in #rules."
    async with open_memory("memory://") as storage:
        # A recorder after Welcome: hooks run in plugin order, so once it has seen a
        # session start, Welcome is done with it.
        after = plugin("Source", label="after", hooks=["on_session_started"])
        specs = (PluginSpec(WELCOME_PLUGIN, {"body": body}), after)
        async with running(*specs, users=("alice", "bob"), storage=storage) as s:
            alice, bob = s.users["alice"], s.users["bob"]
            since = await s.pos()
            laptop_session = session_of(await s.whoami(alice))
            events, laptop_since = await s.next_server_events(alice, since, timeout_s=5)
            (welcome,) = events
            assert welcome["type"] == WELCOME == "org.triohomeserver.welcome"
            assert welcome["content"] == {"msgtype": "m.notice", "body": body}
            assert welcome["sender"] == SERVER_NAME

            # A second device, and a later session of the first one: no more welcomes.
            phone = await login(s.api, alice)
            assert (await s.whoami(phone)).status == 200
            gone = await s.api.call("DELETE", f"sessions/{q(laptop_session)}", token=alice)
            assert gone.status == 200
            assert session_of(await s.whoami(alice)) != laptop_session
            await eventually(lambda: len(recorded("on_session_started", "after")) == 3)
            assert (await s.server_events(alice, laptop_since))[0] == []
            # The phone's initial sync shows the one welcome there is (recent events).
            phone_events, _ = await s.server_events(phone)
            assert [e["event_id"] for e in welcomes(phone_events)] == [welcome["event_id"]]

            # Bob has his own, and alice never sees it.
            assert (await s.whoami(bob)).status == 200
            await eventually(lambda: len(recorded("on_session_started", "after")) == 4)
            (bobs,) = welcomes((await s.server_events(bob, since))[0])
            assert bobs["event_id"] != welcome["event_id"]
            assert (await s.server_events(alice, laptop_since))[0] == []

        # Once per user ever: a restarted server on the same storage welcomes no one twice
        # (here, a new device's first session).
        source_plugins.reset()
        async with running(*specs, users=(), storage=storage) as s:
            since = await s.pos()
            tablet = await login(s.api, alice)
            assert (await s.whoami(tablet)).status == 200
            await eventually(lambda: recorded("on_session_started", "after"))
            assert (await s.server_events(tablet, since))[0] == []


async def load_error(*specs: PluginSpec) -> str:
    async with open_memory("memory://") as storage:
        with pytest.raises(PluginLoadError) as caught:
            Engine(make_config(plugins=specs), storage)
    return str(caught.value)


@pytest.mark.parametrize(
    ("module", "config", "key"),
    [
        (WELCOME_PLUGIN, {"body": "hi", "colour": "red"}, "colour"),
        (WELCOME_PLUGIN, {"body": ""}, "body"),
        (WELCOME_PLUGIN, {"body": 42}, "body"),
        (STATUS_PLUGIN, {"stopping": "bye"}, "stopping"),
        (STATUS_PLUGIN, {"announce": ["running", "sleeping"]}, "announce"),
        (STATUS_PLUGIN, {"announce": "running"}, "announce"),
        (STATUS_PLUGIN, {"draining": ""}, "draining"),
    ],
)
async def test_builtin_source_config_errors_name_the_plugin_and_the_key(
    module: str, config: dict[str, Any], key: str
) -> None:
    message = await load_error(PluginSpec(module, config))
    assert message.startswith(f"plugin {module}: ")
    assert f"'{key}'" in message
    assert "\n" not in message


# -- the built-in ServerStatus plugin ----------------------------------------------------


async def test_server_status_announces_only_the_configured_states() -> None:
    config = {"announce": ["draining"], "draining": "Maintenance until noon."}
    async with running(PluginSpec(STATUS_PLUGIN, config)) as s:
        for state in ("starting", "running", "draining"):
            await s.engine.event_sources.server_state(state)
        events, _ = await s.server_events(s.users["alice"])
        assert [(e["type"], e["content"]) for e in events] == [
            (SERVER_STATUS, {"state": "draining", "message": "Maintenance until noon."})
        ]


@asynccontextmanager
async def live_server(
    monkeypatch: pytest.MonkeyPatch, *plugins: PluginSpec
) -> AsyncIterator[tuple[str, Engine, trio.Event, trio.Event]]:
    """A real server (Hypercorn on 127.0.0.1, a random port): yields its base URL, its
    engine, the event that stops it and the event set once `serve` has returned."""
    engines: list[Engine] = []

    class RecordingEngine(Engine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(homeserver.server, "Engine", RecordingEngine)
    config = make_config(host="127.0.0.1", port=0, plugins=plugins)
    stop, stopped = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(config, shutdown_trigger=stop.wait, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            binds: list[str] = await nursery.start(run)
        try:
            (engine,) = engines
            yield binds[0], engine, stop, stopped
        finally:
            stop.set()
            with trio.fail_after(10):
                await stopped.wait()


async def _register(http: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    reply = await http.post(
        f"{V3}/register",
        json={"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}},
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["user_id"], {"Authorization": f"Bearer {reply.json()['access_token']}"}


def _statuses(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    assert all(e["type"] == SERVER_STATUS and e["sender"] == SERVER_NAME for e in events), events
    return [(e["content"]["state"], e["content"]["message"]) for e in events]


@pytest.mark.e2e
async def test_server_status_end_to_end_tells_a_waiting_sync_before_draining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = PluginSpec(STATUS_PLUGIN, {"draining": "Back in five minutes."})
    async with (
        live_server(monkeypatch, spec) as (base, engine, stop, stopped),
        httpx.AsyncClient(base_url=base, timeout=60) as http,
    ):
        with trio.fail_after(10):
            user_id, auth = await _register(http, "alice")
            initial = await http.get(f"{V3}/sync", headers=auth)
        assert initial.status_code == 200, initial.text
        body = initial.json()
        assert _statuses(body["server_events"]["events"]) == [
            ("starting", DEFAULT_MESSAGES["starting"]),
            ("running", DEFAULT_MESSAGES["running"]),
        ]
        result: dict[str, Any] = {}
        replied = trio.Event()

        async def long_poll() -> None:
            reply = await http.get(
                f"{V3}/sync",
                params={"since": body["next_batch"], "timeout": "30000"},
                headers=auth,
            )
            result["stopped_first"] = stopped.is_set()
            result["reply"] = reply
            replied.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_poll)
            # Wait until the /sync is really waiting inside the server.
            await eventually(lambda: engine.notifier.waiter(user_id).statistics().tasks_waiting)
            stop.set()
            started = trio.current_time()
            with trio.fail_after(5):  # promptly: nowhere near the 30 s long-poll timeout
                await replied.wait()
        assert trio.current_time() - started < 5
        reply = result["reply"]
        assert reply.status_code == 200, reply.text
        assert _statuses(reply.json()["server_events"]["events"]) == [
            ("draining", "Back in five minutes.")
        ]
        assert result["stopped_first"] is False  # told before the server stopped
    assert stopped.is_set()


@pytest.mark.e2e
async def test_server_status_end_to_end_announces_only_the_configured_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = PluginSpec(STATUS_PLUGIN, {"announce": ["running"], "running": "Back online."})
    async with (
        live_server(monkeypatch, spec) as (base, _engine, _stop, _stopped),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        with trio.fail_after(10):
            _user_id, auth = await _register(http, "alice")
            initial = await http.get(f"{V3}/sync", headers=auth)
        assert initial.status_code == 200, initial.text
        assert _statuses(initial.json()["server_events"]["events"]) == [("running", "Back online.")]
