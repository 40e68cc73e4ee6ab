"""`bench store`: the storage interface directly, each backend in turn.

For each backend, on a fresh store (benchmarks/stores.py), in this process, each
operation runs from 1 and 16 concurrent Trio tasks for `seconds` or `max_ops` calls
(whichever comes first) after a short warm-up:

- session_start    SessionStore.start_session of a new device's session
- session_touch    touch_session of a live session
- session_end      end_session of a session started above
- presence_set     PresenceStore.put_presence (online / unavailable alternating)
- presence_get     get_presence of a user who has one
- typing_set       TypingStore.set_typing (a new deadline each call)
- typing_expire    set_typing of an entry that is already due + take_expired_typing
- token_lookup     SessionStore.authenticate(token, None): token + active session, the
                   per-request lookup of the session engine
- event_append     RoomStore.append_events of one m.room.message
- sync_read        get_room_events (newest 10) + get_latest_positions + get_current_state
- membership_check get_membership of a joined user
- invite_check     the reads of an invite: both memberships, the power levels, the
                   invitee's m.invite_permission_config, a rate-limit token

The room holds 10 members and 50 messages before the run (current state: 15 events).
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from backends import Storage, open_storage
from backends.records import (
    AccessToken,
    DeviceRecord,
    NewEvent,
    RoomRecord,
    SessionRecord,
    UserRecord,
)
from benchmarks.opsrun import OpStats, run_op
from benchmarks.stores import StoreUnavailable, fresh_store

OPS = (
    "session_start",
    "session_touch",
    "session_end",
    "presence_set",
    "presence_get",
    "typing_set",
    "typing_expire",
    "token_lookup",
    "event_append",
    "sync_read",
    "membership_check",
    "invite_check",
)
SERVER = "bench.local"
MEMBERS = 10
MESSAGES = 50
WARMUP_OPS = 50


def _event_id() -> str:
    return f"${secrets.token_urlsafe(18)}"


def new_session(user_id: str, device_id: str, now: int, expires_at_ms: int) -> SessionRecord:
    return SessionRecord(
        session_id=secrets.token_urlsafe(18),
        user_id=user_id,
        device_id=device_id,
        presence="online",
        status_msg=None,
        created_ts=now,
        last_active_ts=now,
        expires_at_ms=expires_at_ms,
    )


class Fixture:
    """One user with a device, token and active session, in a room with 9 other members
    and some history."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.now = int(time.time() * 1000)
        self.user_id = f"@alice:{SERVER}"
        self.invitee = f"@invitee:{SERVER}"
        self.device_id = "BENCHDEV"
        self.token = secrets.token_urlsafe(32)
        self.room_id = f"!{secrets.token_urlsafe(12)}:{SERVER}"
        self.session_id = ""
        # Sessions started by session_start, ended by session_end.
        self.started: list[str] = []
        self._devices = 0

    def new_device(self) -> str:
        """A device id never used before (a session start per new device)."""
        self._devices += 1
        return f"SD{self._devices}"

    def _event(self, etype: str, content: dict[str, Any], state_key: str | None = None) -> NewEvent:
        return NewEvent(
            event_id=_event_id(),
            room_id=self.room_id,
            sender=self.user_id,
            type=etype,
            content=content,
            origin_server_ts=self.now,
            state_key=state_key,
        )

    async def build(self) -> None:
        s = self.storage
        members = [self.user_id] + [f"@member{i}:{SERVER}" for i in range(1, MEMBERS)]
        for user_id in [*members, self.invitee]:
            await s.users.create_user(UserRecord(user_id, None, self.now))
        await s.devices.add_device_with_token(
            DeviceRecord(self.user_id, self.device_id, "bench", self.now),
            AccessToken(self.token, self.user_id, self.device_id, self.now),
        )
        session = new_session(self.user_id, self.device_id, self.now, self.now + 3_600_000)
        self.session_id = session.session_id
        await s.sessions.start_session(session, replace=False)
        await s.rooms.create_room(RoomRecord(self.room_id, self.user_id, "10", self.now))
        state = [
            self._event("m.room.create", {"creator": self.user_id, "room_version": "10"}, ""),
            self._event("m.room.member", {"membership": "join"}, self.user_id),
            self._event("m.room.power_levels", {"users": {self.user_id: 100}}, ""),
            self._event("m.room.join_rules", {"join_rule": "public"}, ""),
            self._event("m.room.name", {"name": "Benchmark room"}, ""),
            self._event("m.room.topic", {"topic": "hot operations"}, ""),
        ]
        await s.rooms.append_events(state)
        for user_id in members[1:]:
            await s.rooms.append_events(
                [self._event("m.room.member", {"membership": "join"}, user_id)]
            )
        for i in range(MESSAGES):
            await s.rooms.append_events([self._message(i)])
        await s.presence.put_presence(self.user_id, "online", None, self.now)

    def _message(self, i: int) -> NewEvent:
        return self._event("m.room.message", {"msgtype": "m.text", "body": f"message {i}"})

    def operations(self) -> dict[str, Callable[[int], Awaitable[object]]]:
        s = self.storage
        far = self.now + 3_600_000

        async def session_start(_: int) -> object:
            record = new_session(self.user_id, self.new_device(), self.now, far)
            started = await s.sessions.start_session(record, replace=False)
            self.started.append(started.session.session_id)
            return started

        async def session_touch(i: int) -> object:
            return await s.sessions.touch_session(self.session_id, self.now + i, far + i)

        async def session_end(_: int) -> object:
            ended = await s.sessions.end_session(self.started.pop())
            assert ended is not None
            return ended

        async def presence_set(i: int) -> object:
            state = "online" if i % 2 else "unavailable"
            return await s.presence.put_presence(self.user_id, state, None, self.now + i)

        async def presence_get(_: int) -> object:
            return await s.presence.get_presence(self.user_id)

        async def typing_set(i: int) -> object:
            return await s.typing.set_typing(self.room_id, self.user_id, self.session_id, far + i)

        async def typing_expire(i: int) -> object:
            user = f"@member{1 + i % (MEMBERS - 1)}:{SERVER}"
            await s.typing.set_typing(self.room_id, user, f"TS{i}", self.now - 1)
            return await s.typing.take_expired_typing(self.now, 100)

        async def token_lookup(_: int) -> object:
            return await s.sessions.authenticate(self.token, None)

        async def event_append(i: int) -> object:
            return await s.rooms.append_events([self._message(i)])

        async def sync_read(_: int) -> object:
            events = await s.rooms.get_room_events(
                self.room_id, after=None, before=None, limit=10, newest_first=True
            )
            latest = await s.rooms.get_latest_positions([self.room_id])
            state = await s.rooms.get_current_state(self.room_id)
            return events, latest, state

        async def membership_check(_: int) -> object:
            return await s.rooms.get_membership(self.room_id, self.user_id)

        async def invite_check(_: int) -> object:
            inviter = await s.rooms.get_membership(self.room_id, self.user_id)
            invitee = await s.rooms.get_membership(self.room_id, self.invitee)
            power = await s.rooms.get_state_event(self.room_id, "m.room.power_levels", "")
            config = await s.account_data.get_account_data(
                self.invitee, None, "m.invite_permission_config"
            )
            wait = await s.rate_limits.take_token(
                f"bench-invite:{self.user_id}",
                capacity=1e9,
                refill_per_s=1e9,
                now_ms=int(time.time() * 1000),
            )
            return inviter, invitee, power, config, wait

        return {
            "session_start": session_start,
            "session_touch": session_touch,
            "session_end": session_end,
            "presence_set": presence_set,
            "presence_get": presence_get,
            "typing_set": typing_set,
            "typing_expire": typing_expire,
            "token_lookup": token_lookup,
            "event_append": event_append,
            "sync_read": sync_read,
            "membership_check": membership_check,
            "invite_check": invite_check,
        }

    async def prepare_sessions(self, count: int) -> None:
        """Have exactly `count` sessions ready for session_end."""
        s = self.storage
        far = self.now + 3_600_000
        while len(self.started) > count:
            await s.sessions.end_session(self.started.pop())
        while len(self.started) < count:
            record = new_session(self.user_id, self.new_device(), self.now, far)
            self.started.append(
                (await s.sessions.start_session(record, replace=False)).session.session_id
            )

    async def check(self) -> None:
        """Each read answers what it should (a benchmark of wrong answers is void)."""
        s = self.storage
        lookup = await s.sessions.authenticate(self.token, None)
        assert lookup is not None and lookup.session is not None, lookup
        events = await s.rooms.get_room_events(
            self.room_id, after=None, before=None, limit=10, newest_first=True
        )
        assert len(events) == 10 and events[0].stream_pos > events[-1].stream_pos
        assert len(await s.rooms.get_current_state(self.room_id)) == 5 + MEMBERS
        membership = await s.rooms.get_membership(self.room_id, self.user_id)
        assert membership is not None and membership.membership == "join", membership
        assert await s.presence.get_presence(self.user_id) is not None


async def bench_backend(
    url: str,
    concurrency: Sequence[int],
    seconds: float,
    max_ops: int,
    progress: Callable[[str], None],
    backend: str,
) -> list[OpStats]:
    async with open_storage(url) as storage:
        fixture = Fixture(storage)
        await fixture.build()
        await fixture.check()
        results = []
        operations = fixture.operations()
        start_rate: dict[int, float] = {}
        for name in OPS:
            op = operations[name]
            for level in concurrency:
                limit = max_ops
                if name == "session_end":
                    # Sessions to end, started beforehand (untimed): enough for the run.
                    wanted = min(max_ops, int(start_rate.get(level, 1000) * seconds * 1.5) + 1)
                    await fixture.prepare_sessions(wanted + WARMUP_OPS)
                    limit = wanted
                # Warm-up: connection pools, prepared statements, Lua script caches.
                await run_op(name, op, concurrency=level, seconds=seconds, max_ops=WARMUP_OPS)
                stats = await run_op(name, op, concurrency=level, seconds=seconds, max_ops=limit)
                progress(
                    f"store {backend:10} {name:16} c={level:<3} {stats.ops_per_s:>11,.0f} ops/s"
                    f"  p50 {stats.p50_us:>9,.1f} us  p99 {stats.p99_us:>9,.1f} us"
                )
                results.append(stats)
                if name == "session_start":
                    start_rate[level] = stats.ops_per_s
        return results


def run_store(
    backends: list[str],
    concurrency: list[int],
    seconds: float,
    max_ops: int,
    workdir: Path,
    progress: Callable[[str], None],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    results: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for backend in backends:
        try:
            with fresh_store(backend, workdir, "store") as url:
                stats = trio.run(
                    bench_backend, url, concurrency, seconds, max_ops, progress, backend
                )
                results[backend] = [asdict(s) for s in stats]
        except StoreUnavailable as exc:
            print(f"  {backend} skipped: {exc}", file=sys.stderr)
            skipped[backend] = str(exc)
    return results, skipped
