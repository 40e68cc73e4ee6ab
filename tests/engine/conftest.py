"""An engine over the memory backend on trio's mock clock, with its loops running.

Time: the engine's wall clock (TrioClock) is anchored at START_MS when trio's clock
reads 0, and the harness then moves to half a millisecond past it. Everything the
test does (and every deadline the engine's loops sleep to) then falls mid-millisecond,
so converting trio's float seconds back to integer milliseconds is exact, and `at(ms)`
lands on the millisecond it names: "just before" (ms - 1), "at" (ms) and "just after"
(ms + 1) a deadline are three distinct instants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from backends import Storage
from backends.memory import open_memory_storage
from backends.records import AccessToken, DeviceRecord, JsonDict, PresenceRecord, UserRecord
from homeserver.clock import TrioClock
from homeserver.engine import Engine
from homeserver.engine.filters import SyncFilter
from homeserver.engine.rooms import CreateRoomRequest
from homeserver.engine.sync import SyncRequest, parse_sync_token
from homeserver.types import Requester
from tests.helpers import make_config

START_MS = 1_700_000_000_000
# Trio time of "ms 0": half a millisecond past the clock's anchor (see the docstring).
_ORIGIN_S = 0.0005


@dataclass(frozen=True)
class Client:
    """One logged-in device."""

    user_id: str
    device_id: str
    token: str


@dataclass(frozen=True)
class Published:
    """One presence change published (stored), and when (ms on the engine's clock)."""

    user_id: str
    presence: str
    status_msg: str | None
    at_ms: int


def record_presence_changes(engine: Engine) -> list[Published]:
    """Log every presence change the engine publishes (an observer of the presence
    service)."""
    log: list[Published] = []

    def recording(record: PresenceRecord) -> None:
        now_ms = round((trio.current_time() - _ORIGIN_S) * 1000)
        log.append(Published(record.user_id, record.presence, record.status_msg, now_ms))

    engine.presence.observers.append(recording)
    return log


async def add_client(engine: Engine, localpart: str, device_id: str = "DEV") -> Client:
    """A device of the user (the user is created on first use), stored directly: no
    password hashing (a worker thread would let the autojump clock move) and no
    request (so no session)."""
    user_id = f"@{localpart}:{engine.config.server_name}"
    now = engine.clock.now_ms()
    if await engine.storage.users.get_user(user_id) is None:
        await engine.storage.users.create_user(UserRecord(user_id, None, now))
    token = f"token_{localpart}_{device_id}"
    await engine.storage.devices.add_device_with_token(
        DeviceRecord(user_id, device_id, None, now), AccessToken(token, user_id, device_id, now)
    )
    return Client(user_id, device_id, token)


def bare(client: Client) -> Requester:
    """A requester outside any session (for engine calls that do not need one)."""
    return Requester(client.user_id, client.device_id)


async def create_room(engine: Engine, creator: Client, *members: Client) -> str:
    """A public room the members have joined (engine calls: no session involved)."""
    room_id = await engine.rooms.creation.create_room(
        bare(creator), CreateRoomRequest(preset="public_chat")
    )
    for member in members:
        await engine.rooms.membership.join(bare(member), room_id)
    return room_id


class Harness:
    def __init__(self, engine: Engine, clock: TrioClock) -> None:
        self.engine = engine
        self.clock = clock
        self.storage: Storage = engine.storage
        self.published = record_presence_changes(engine)

    # -- time -------------------------------------------------------------------------

    def ms(self) -> int:
        """Milliseconds since the harness's origin, on the engine's clock."""
        return self.clock.now_ms() - START_MS

    async def at(self, ms: int) -> None:
        """Move to `ms` since the origin, then let every task due act."""
        await trio.sleep_until(_ORIGIN_S + ms / 1000)
        await trio.testing.wait_all_tasks_blocked()
        assert self.ms() == ms

    async def settle(self) -> None:
        """Let every runnable task run, without moving the clock."""
        before = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == before

    # -- accounts and rooms -------------------------------------------------------------

    async def client(self, localpart: str, device_id: str = "DEV") -> Client:
        return await add_client(self.engine, localpart, device_id)

    @staticmethod
    def bare(client: Client) -> Requester:
        return bare(client)

    async def room(self, creator: Client, *members: Client) -> str:
        return await create_room(self.engine, creator, *members)

    # -- requests -----------------------------------------------------------------------

    @asynccontextmanager
    async def request(
        self, client: Client, session_id: str | None = None
    ) -> AsyncIterator[Requester]:
        """One request, as the HTTP layer runs it: authenticate and resolve the session,
        run the body, book the end of the request in the session."""
        lease = await self.engine.sessions.begin_request(client.token, session_id)
        try:
            yield lease.requester
        finally:
            with trio.CancelScope(shield=True):
                await self.engine.sessions.finish_request(lease)

    async def touch(self, client: Client, session_id: str | None = None) -> str:
        """An empty request; returns the session it ran in."""
        async with self.request(client, session_id) as who:
            assert who.session_id is not None
            return who.session_id

    async def sync(
        self,
        client: Client,
        since: str | None = None,
        timeout_ms: int = 0,
        session_id: str | None = None,
    ) -> JsonDict:
        async with self.request(client, session_id) as who:
            return await self.engine.sync.sync(
                who,
                SyncRequest(
                    since=parse_sync_token(since) if since else None,
                    timeout_ms=timeout_ms,
                    full_state=False,
                    filter=SyncFilter(),
                ),
            )

    async def live_sessions(self, client: Client) -> list[str]:
        """Ids of the stored sessions of the client's user on the client's device."""
        return [
            s.session_id
            for s in await self.storage.sessions.list_user_sessions(client.user_id)
            if s.device_id == client.device_id
        ]

    async def presence(self, user_id: str) -> str:
        record = await self.engine.presence.current(user_id)
        return record.presence if record is not None else "offline"

    def changes(self, user_id: str) -> list[str]:
        """The presence values published for the user, in order."""
        return [p.presence for p in self.published if p.user_id == user_id]


def presence_events(body: JsonDict) -> list[tuple[str, str]]:
    """(sender, presence) of each m.presence event of a /sync response."""
    events = body["presence"]["events"]
    assert all(e["type"] == "m.presence" for e in events), events
    return [(e["sender"], e["content"]["presence"]) for e in events]


def typing_users(body: JsonDict, room_id: str) -> list[list[str]] | None:
    """user_ids of each m.typing event of the room in a /sync response; None if the
    room is not in the response."""
    room = body["rooms"]["join"].get(room_id)
    if room is None:
        return None
    events = room["ephemeral"]["events"]
    assert all(e["type"] == "m.typing" for e in events), events
    return [e["content"]["user_ids"] for e in events]


MakeHarness = Callable[..., Awaitable[Harness]]


async def start_engine(
    nursery: trio.Nursery, *, run_loops: bool = True, **overrides: Any
) -> Engine:
    """An engine over a fresh memory store on a TrioClock anchored at START_MS, moved to
    the harness's origin, its loops running in `nursery` (unless run_loops=False).
    Config: tests.helpers.make_config with no touch coalescing, then `overrides`."""
    assert trio.current_time() == 0, "start the engine before moving the clock"
    settings: dict[str, Any] = {"session_touch_coalesce_ms": 0}
    settings.update(overrides)
    engine = Engine(make_config(**settings), open_memory_storage(), clock=TrioClock(START_MS))
    await trio.sleep_until(_ORIGIN_S)
    if run_loops:
        await nursery.start(engine.run)
    assert engine.clock.now_ms() == START_MS
    return engine


@pytest.fixture
def make_harness(nursery: trio.Nursery) -> MakeHarness:
    """make_harness(**config) -> a Harness whose engine loops run in the test's nursery.
    The test must request `autojump_clock` (pytest-trio hands it to trio.run)."""

    async def make(*, run_loops: bool = True, **overrides: Any) -> Harness:
        engine = await start_engine(nursery, run_loops=run_loops, **overrides)
        assert isinstance(engine.clock, TrioClock)
        return Harness(engine, engine.clock)

    return make
