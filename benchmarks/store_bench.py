"""Storage benchmark: the four backends on the hot operations, through the storage interface.

    python -m benchmarks.store_bench [--quick] [--backends memory,sqlite,postgresql,redis]
                                     [--concurrency 1,16] [--seconds S] [--max-ops N]

For each backend, on a fresh store (see benchmarks/stores.py), in this process:

- `get_token`       DeviceStore.get_token of a known token
- `authenticate`    SessionStore.authenticate(token, None): token + active session, the
                    per-request lookup of the session engine
- `append_event`    RoomStore.append_events of one m.room.message (a new event id each)
- `sync_read`       what an incremental /sync reads per joined room: get_room_events
                    (newest 10) + get_latest_positions + get_current_state (one op = all 3)
- `get_membership`  RoomStore.get_membership of a joined user

Each operation runs from N concurrent Trio tasks (each `--concurrency` level) for
`--seconds` or `--max-ops` calls, whichever comes first, after a short warm-up. The
room holds 10 members and 50 messages before the run (current state: 15 events).
Writes results/store_<UTC>.{json,md,png} and prints the table.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from backends import Storage, open_storage
from benchmarks.opsrun import OpStats, run_op
from benchmarks.report import (
    Panel,
    Run,
    bar_chart,
    common_arguments,
    fmt,
    fmt_small,
    markdown_table,
    run_main,
)
from benchmarks.stores import BACKENDS, StoreUnavailable, fresh_store, parse_backends
from homeserver.types import (
    AccessToken,
    DeviceRecord,
    NewEvent,
    RoomRecord,
    SessionRecord,
    UserRecord,
)

OPS = ("get_token", "authenticate", "append_event", "sync_read", "get_membership")
SERVER = "bench.local"
MEMBERS = 10
MESSAGES = 50
WARMUP_OPS = 50


def _event_id() -> str:
    return f"${secrets.token_urlsafe(18)}"


class Fixture:
    """One user with a device, token and active session, in a room with 9 other members
    and some history."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.now = int(time.time() * 1000)
        self.user_id = f"@alice:{SERVER}"
        self.device_id = "BENCHDEV"
        self.token = secrets.token_urlsafe(32)
        self.room_id = f"!{secrets.token_urlsafe(12)}:{SERVER}"

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
        for user_id in members:
            await s.users.create_user(UserRecord(user_id, None, self.now))
        await s.devices.add_device_with_token(
            DeviceRecord(self.user_id, self.device_id, "bench", self.now),
            AccessToken(self.token, self.user_id, self.device_id, self.now),
        )
        session = SessionRecord(
            session_id=secrets.token_urlsafe(18),
            user_id=self.user_id,
            device_id=self.device_id,
            presence="online",
            status_msg=None,
            created_ts=self.now,
            last_active_ts=self.now,
            expires_at_ms=self.now + 3_600_000,
        )
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
            joined = self._event("m.room.member", {"membership": "join"}, user_id)
            await s.rooms.append_events([joined])
        for i in range(MESSAGES):
            await s.rooms.append_events([self._message(i)])

    def _message(self, i: int) -> NewEvent:
        return self._event("m.room.message", {"msgtype": "m.text", "body": f"message {i}"})

    def operations(self) -> dict[str, Callable[[int], Awaitable[object]]]:
        s = self.storage

        async def get_token(_: int) -> object:
            return await s.devices.get_token(self.token)

        async def authenticate(_: int) -> object:
            return await s.sessions.authenticate(self.token, None)

        async def append_event(i: int) -> object:
            return await s.rooms.append_events([self._message(i)])

        async def sync_read(_: int) -> object:
            events = await s.rooms.get_room_events(
                self.room_id, after=None, before=None, limit=10, newest_first=True
            )
            latest = await s.rooms.get_latest_positions([self.room_id])
            state = await s.rooms.get_current_state(self.room_id)
            return events, latest, state

        async def get_membership(_: int) -> object:
            return await s.rooms.get_membership(self.room_id, self.user_id)

        return {
            "get_token": get_token,
            "authenticate": authenticate,
            "append_event": append_event,
            "sync_read": sync_read,
            "get_membership": get_membership,
        }

    async def check(self) -> None:
        """Each operation answers what it should (a benchmark of wrong answers is void)."""
        s = self.storage
        token = await s.devices.get_token(self.token)
        assert token is not None and token.user_id == self.user_id, token
        lookup = await s.sessions.authenticate(self.token, None)
        assert lookup is not None and lookup.session is not None, lookup
        events = await s.rooms.get_room_events(
            self.room_id, after=None, before=None, limit=10, newest_first=True
        )
        assert len(events) == 10 and events[0].stream_pos > events[-1].stream_pos
        assert len(await s.rooms.get_current_state(self.room_id)) == 5 + MEMBERS
        membership = await s.rooms.get_membership(self.room_id, self.user_id)
        assert membership is not None and membership.membership == "join", membership


async def bench_backend(
    url: str, concurrency: Sequence[int], seconds: float, max_ops: int
) -> list[OpStats]:
    async with open_storage(url) as storage:
        fixture = Fixture(storage)
        await fixture.build()
        await fixture.check()
        results = []
        operations = fixture.operations()
        for name in OPS:
            op = operations[name]
            for level in concurrency:
                # Warm-up: connection pools, prepared statements, Lua script caches.
                await run_op(name, op, concurrency=level, seconds=seconds, max_ops=WARMUP_OPS)
                stats = await run_op(name, op, concurrency=level, seconds=seconds, max_ops=max_ops)
                print(
                    f"  {name:15} c={level:<3} {stats.ops_per_s:>10,.0f} ops/s  "
                    f"p50 {stats.p50_us:>8,.0f} us  p99 {stats.p99_us:>8,.0f} us",
                    file=sys.stderr,
                )
                results.append(stats)
        return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.store_bench",
        description="Compare the storage backends on the hot operations.",
    )
    common_arguments(parser)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--concurrency", default="1,16", help="task counts (1,16)")
    parser.add_argument("--seconds", type=float, default=None, help="per op and level (3)")
    parser.add_argument("--max-ops", type=int, default=None, help="per op and level (100000)")
    return parser


def run(args: argparse.Namespace, backends: list[str], concurrency: list[int]) -> int:
    seconds = args.seconds if args.seconds is not None else (0.1 if args.quick else 3.0)
    max_ops = args.max_ops if args.max_ops is not None else (100 if args.quick else 100_000)
    bench = Run(
        "store",
        args.out,
        args.quick,
        {
            "backends": backends,
            "concurrency": concurrency,
            "seconds_per_op": seconds,
            "max_ops_per_op": max_ops,
            "warmup_ops": WARMUP_OPS,
            "room_members": MEMBERS,
            "room_messages_before": MESSAGES,
        },
    )
    bench.begin(args.wait_quiet)
    results: dict[str, list[OpStats]] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="store_bench_") as tmp:
        for backend in backends:
            print(f"{backend}:", file=sys.stderr)
            try:
                with fresh_store(backend, Path(tmp), "store") as url:
                    results[backend] = trio.run(bench_backend, url, concurrency, seconds, max_ops)
            except StoreUnavailable as exc:
                print(f"  skipped: {exc}", file=sys.stderr)
                skipped[backend] = str(exc)

    markdown = render(results, concurrency, skipped, bench.summary_line())
    paths = bench.write(
        {
            "results": {b: [asdict(s) for s in stats] for b, stats in results.items()},
            "skipped": skipped,
        },
        markdown,
    )
    panels = [
        Panel(
            title=f"{level} concurrent task{'s' if level > 1 else ''}",
            groups=list(OPS),
            series={
                backend: [_find(stats, op, level) for op in OPS]
                for backend, stats in results.items()
            },
            ylabel="operations/s (log scale)",
            log=True,
        )
        for level in concurrency
    ]
    paths.append(bar_chart(bench.path(".png"), "Storage backends: hot operations (ops/s)", panels))
    print(markdown)
    print("\nresults: " + ", ".join(str(p) for p in paths))
    return 0


def _find(stats: Sequence[OpStats], op: str, level: int) -> float | None:
    return next((s.ops_per_s for s in stats if s.op == op and s.concurrency == level), None)


def render(
    results: dict[str, list[OpStats]],
    concurrency: Sequence[int],
    skipped: dict[str, str],
    machine: str,
) -> str:
    lines = [f"Storage hot operations, ops/s (p50 / p99 µs per call). {machine}.", ""]
    backends = list(results)
    for level in concurrency:
        rows = []
        for op in OPS:
            row: list[object] = [f"`{op}`"]
            for backend in backends:
                s = next(
                    (s for s in results[backend] if s.op == op and s.concurrency == level), None
                )
                row.append(
                    "-"
                    if s is None
                    else f"{fmt(s.ops_per_s)} ({fmt_small(s.p50_us)} / {fmt_small(s.p99_us)})"
                )
            rows.append(row)
        lines.append(f"**{level} concurrent task{'s' if level > 1 else ''}**")
        lines.append("")
        lines.append(markdown_table(["operation", *backends], rows))
        lines.append("")
    for backend, reason in skipped.items():
        lines.append(f"- {backend} skipped: {reason}")
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        backends = parse_backends(args.backends)
        concurrency = [int(v) for v in args.concurrency.split(",") if v.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not concurrency or min(concurrency) < 1:
        parser.error("--concurrency: positive integers")
    return run_main("store_bench", lambda: run(args, backends, concurrency), ())


if __name__ == "__main__":
    raise SystemExit(main())
