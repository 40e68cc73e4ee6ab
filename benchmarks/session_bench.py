"""Session engine benchmark, per backend (issue 4).

    python -m benchmarks.session_bench [--quick] [--backends ...] [--parts ...]

Parts (all by default; `--parts memory,expiry` picks some):

- `start_end`  session start + end pairs/s from 16 concurrent tasks, each pair on a new
               device: through the engine (`Sessions.start(replace=True)` then
               `Sessions.end`, with the presence recompute and publish each implies) and
               through the store alone (`start_session` + `end_session`).
- `touch`      the per-request session cost over HTTP: `whoami` on two servers with the
               same backend, one with sessions on and one with
               HOMESERVER_SESSIONS_ENABLED=false, measured alternately in one run.
- `expiry`     100,000 sessions stored with one deadline. The idle tick (what the expiry
               loop does when nothing is due: `next_session_deadline` +
               `take_expired_sessions(now)` returning nothing), measured with 1,000 and
               with 100,000 live sessions; then the time for `take_expired_sessions`
               batches of 1,000 (the engine's batch) to drain all 100,000 at once.
- `memory`     bytes per live session on the memory backend, 100,000 sessions:
               tracemalloc (Python allocations) and the RSS delta.
- `presence`   200 users in one room, each with a waiting /sync long-poll (in-process:
               the engine and app with Quart's test client, no sockets); one more member
               changes presence (PUT /presence/{userId}/status); time from the change to
               each waiter's response, until the last. 3 rounds.

Every store is fresh (benchmarks/stores.py) and removed afterwards. Writes
results/sessions_<UTC>.{json,md,png} and prints the tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import trio
from quart.testing import QuartClient

from backends import Storage, open_storage
from benchmarks.live import (
    BenchError,
    HttpFigure,
    homeserver,
    measure,
    pick_tool,
    register,
    target_runner,
)
from benchmarks.loadgen import LoadError, Target
from benchmarks.opsrun import OpStats, run_op
from benchmarks.procs import ProcessError
from benchmarks.report import (
    Panel,
    Run,
    bar_chart,
    common_arguments,
    fmt,
    fmt_small,
    markdown_table,
    percentile,
    run_main,
)
from benchmarks.stores import BACKENDS, StoreUnavailable, fresh_store, parse_backends
from homeserver.app import create_app
from homeserver.config import Config
from homeserver.engine import Engine
from homeserver.engine.deadlines import BATCH
from homeserver.engine.sessions import new_session_id
from homeserver.types import JsonDict, Presence, SessionRecord, UserRecord

PARTS = ("start_end", "touch", "expiry", "memory", "presence")
SERVER = "bench.local"
CLIENT = "/_matrix/client/v3"
START_END_TASKS = 16
INSERT_TASKS = 16
# Stop inserting sessions after this long, whatever the count (a slow store).
INSERT_TIME_CAP_S = 600.0
PRESENCE_TIMEOUT_S = 120.0


def engine_config(url: str, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "storage": url,
        "server_name": SERVER,
        # Registration in set-up needs no real password hashing.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 64,
        # Nothing may expire during a run.
        "session_timeout_ms": 3_600_000,
    }
    settings.update(overrides)
    return Config(**settings)


def _session(user_id: str, device_id: str, now: int, expires_at_ms: int) -> SessionRecord:
    return SessionRecord(
        session_id=new_session_id(),
        user_id=user_id,
        device_id=device_id,
        presence=Presence.ONLINE,
        status_msg=None,
        created_ts=now,
        last_active_ts=now,
        expires_at_ms=expires_at_ms,
    )


# ---------------------------------------------------------------------------- start + end


async def bench_start_end(url: str, seconds: float, max_ops: int) -> list[OpStats]:
    async with open_storage(url) as storage:
        engine = Engine(engine_config(url), storage)
        now = int(time.time() * 1000)
        users = [f"@starter{i}:{SERVER}" for i in range(4 * START_END_TASKS)]
        for user_id in users:
            await storage.users.create_user(UserRecord(user_id, None, now))

        async def through_engine(i: int) -> None:
            user_id = users[i % len(users)]
            session = await engine.sessions.start(
                user_id, f"E{i}", Presence.ONLINE, None, replace=True
            )
            await engine.sessions.end(user_id, session.session_id)

        async def through_store(i: int) -> None:
            user_id = users[i % len(users)]
            record = _session(user_id, f"S{i}", now, now + 3_600_000)
            started = await storage.sessions.start_session(record, replace=True)
            ended = await storage.sessions.end_session(started.session.session_id)
            assert ended is not None

        results = []
        for name, op in (("engine", through_engine), ("store", through_store)):
            await run_op(name, op, concurrency=START_END_TASKS, seconds=seconds, max_ops=50)
            stats = await run_op(
                name, op, concurrency=START_END_TASKS, seconds=seconds, max_ops=max_ops
            )
            print(f"  start+end via {name}: {stats.ops_per_s:,.0f} pairs/s", file=sys.stderr)
            results.append(stats)
        assert await storage.sessions.next_session_deadline() is None
        return results


# ---------------------------------------------------------------------------- expiry


@dataclass
class ExpiryResult:
    sessions: int
    insert_s: float
    insert_per_s: float
    # The idle tick (next_session_deadline + an empty take_expired_sessions), µs.
    idle_tick_small_live: int
    idle_tick_small_p50_us: float
    idle_tick_small_mean_us: float
    idle_tick_full_p50_us: float
    idle_tick_full_mean_us: float
    drain_s: float
    drain_per_s: float
    batches: int
    batch_mean_ms: float
    batch_max_ms: float


async def _idle_ticks(storage: Storage, now: int, ticks: int) -> tuple[float, float]:
    samples = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        await storage.sessions.next_session_deadline()
        taken = await storage.sessions.take_expired_sessions(now, BATCH)
        samples.append(time.perf_counter() - t0)
        assert not taken, "a session expired during the idle-tick measurement"
    samples.sort()
    return (
        round(percentile(samples, 50) * 1e6, 1),
        round(statistics.fmean(samples) * 1e6, 1),
    )


async def bench_expiry(url: str, count: int, ticks: int) -> ExpiryResult:
    async with open_storage(url) as storage:
        now = int(time.time() * 1000)
        deadline = now + 3_600_000
        inserted = 0
        small = min(1000, count)
        cap = trio.current_time() + INSERT_TIME_CAP_S

        async def insert_upto(target: int) -> None:
            nonlocal inserted

            async def worker() -> None:
                nonlocal inserted
                while inserted < target and trio.current_time() < cap:
                    i = inserted
                    inserted += 1
                    user_id = f"@u{i % 1000}:{SERVER}"
                    record = _session(user_id, f"D{i}", now, deadline)
                    await storage.sessions.start_session(record, replace=False)

            async with trio.open_nursery() as nursery:
                for _ in range(INSERT_TASKS):
                    nursery.start_soon(worker)

        t0 = time.perf_counter()
        await insert_upto(small)
        small_tick = await _idle_ticks(storage, now, ticks)
        insert_small_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        await insert_upto(count)
        insert_s = insert_small_s + time.perf_counter() - t1
        if inserted < count:
            print(f"  inserted only {inserted:,} sessions in the time cap", file=sys.stderr)
        print(f"  inserted {inserted:,} sessions in {insert_s:.1f} s", file=sys.stderr)
        full_tick = await _idle_ticks(storage, now, ticks)
        assert await storage.sessions.next_session_deadline() == deadline

        batch_times = []
        drained = 0
        t0 = time.perf_counter()
        for _ in range(inserted // BATCH + 2):  # bounded: one more than needed
            b0 = time.perf_counter()
            taken = await storage.sessions.take_expired_sessions(deadline, BATCH)
            batch_times.append(time.perf_counter() - b0)
            drained += len(taken)
            if len(taken) < BATCH:
                break
        drain_s = time.perf_counter() - t0
        if drained != inserted or await storage.sessions.next_session_deadline() is not None:
            raise BenchError(f"drained {drained} of {inserted} sessions")
        print(
            f"  idle tick {small_tick[0]:.0f} us at {small:,} live, {full_tick[0]:.0f} us at "
            f"{inserted:,}; drained {drained:,} in {drain_s:.2f} s",
            file=sys.stderr,
        )
        return ExpiryResult(
            sessions=inserted,
            insert_s=round(insert_s, 2),
            insert_per_s=round(inserted / insert_s, 1),
            idle_tick_small_live=small,
            idle_tick_small_p50_us=small_tick[0],
            idle_tick_small_mean_us=small_tick[1],
            idle_tick_full_p50_us=full_tick[0],
            idle_tick_full_mean_us=full_tick[1],
            drain_s=round(drain_s, 3),
            drain_per_s=round(drained / drain_s, 1),
            batches=len(batch_times),
            batch_mean_ms=round(statistics.fmean(batch_times) * 1000, 2),
            batch_max_ms=round(max(batch_times) * 1000, 2),
        )


# ---------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _fill_memory_store(storage: Storage, count: int) -> None:
    now = int(time.time() * 1000)
    for i in range(count):
        # Fresh strings per session, as if parsed from a request.
        user_id = f"@user{i % 10_000:05d}:{SERVER}"
        record = _session(user_id, f"DEVICE{i:06d}", now, now + 3_600_000)
        await storage.sessions.start_session(record, replace=False)


def bench_memory(count: int) -> dict[str, Any]:
    """Bytes per live session in the memory backend (sessions, active pointers, the
    per-user index and the deadline heap)."""
    from backends.memory import open_memory_storage

    gc.collect()
    storage = open_memory_storage()
    rss_before = _rss_bytes()
    trio.run(_fill_memory_store, storage, count)
    gc.collect()
    rss_delta = _rss_bytes() - rss_before
    del storage
    gc.collect()

    storage = open_memory_storage()
    tracemalloc.start()
    try:
        traced_before = tracemalloc.get_traced_memory()[0]
        trio.run(_fill_memory_store, storage, count)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    del storage
    gc.collect()
    result = {
        "sessions": count,
        "tracemalloc_bytes": traced,
        "tracemalloc_bytes_per_session": round(traced / count, 1),
        "rss_delta_bytes": rss_delta,
        "rss_bytes_per_session": round(rss_delta / count, 1),
    }
    print(
        f"  {result['tracemalloc_bytes_per_session']:.0f} B/session (tracemalloc), "
        f"{result['rss_bytes_per_session']:.0f} B/session (RSS)",
        file=sys.stderr,
    )
    return result


# ---------------------------------------------------------------------------- presence


@dataclass
class PresenceRound:
    presence: str
    put_ms: float
    first_ms: float
    p50_ms: float
    last_ms: float


async def _call(
    client: QuartClient,
    method: str,
    path: str,
    token: str | None = None,
    body: JsonDict | None = None,
) -> JsonDict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    response = await client.open(CLIENT + path, method=method, data=data, headers=headers)
    text = await response.get_data(as_text=True)
    if response.status_code != 200:
        raise BenchError(f"{method} {path} -> {response.status_code}: {text[:200]}")
    return cast(JsonDict, json.loads(text))


class BuildCounter:
    """Counts finished /sync reads; `arm(n)` gives an event set once n more have
    finished. A long-poll that has read and found nothing is waiting."""

    def __init__(self) -> None:
        self.count = 0
        self._target: int | None = None
        self._reached = trio.Event()

    def arm(self, more: int) -> trio.Event:
        self._target = self.count + more
        self._reached = trio.Event()
        return self._reached

    def add(self) -> None:
        self.count += 1
        if self._target is not None and self.count >= self._target:
            self._reached.set()


async def bench_presence(url: str, waiters: int, rounds: int) -> list[PresenceRound]:
    async with open_storage(url) as storage:
        engine = Engine(engine_config(url), storage)
        counter = BuildCounter()
        build = engine.sync._build

        async def counting_build(*args: Any) -> Any:
            result = await build(*args)
            counter.add()
            return result

        setattr(engine.sync, "_build", counting_build)  # noqa: B010
        app = create_app(engine)
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            async with app.test_app():
                client = app.test_client()
                assert isinstance(client, QuartClient)
                rounds_out = await _presence_rounds(engine, client, waiters, rounds, counter)
            nursery.cancel_scope.cancel()
        return rounds_out


async def _wait_sync(
    client: QuartClient,
    user_id: str,
    token: str,
    since: str,
    finished: dict[str, float],
    bodies: dict[str, JsonDict],
) -> None:
    body = await _call(client, "GET", f"/sync?since={since}&timeout=60000", token)
    finished[user_id] = time.perf_counter()
    bodies[user_id] = body


async def _presence_rounds(
    engine: Engine,
    client: QuartClient,
    waiters: int,
    rounds: int,
    counter: BuildCounter,
) -> list[PresenceRound]:
    async def register_user(localpart: str) -> tuple[str, str]:
        body = {"username": localpart, "password": "pw", "auth": {"type": "m.login.dummy"}}
        reply = await _call(client, "POST", "/register", None, body)
        return reply["user_id"], reply["access_token"]

    changer_id, changer_token = await register_user("changer")
    reply = await _call(client, "POST", "/createRoom", changer_token, {"preset": "public_chat"})
    room_id = reply["room_id"]
    members = []
    for i in range(waiters):
        user_id, token = await register_user(f"waiter{i}")
        await _call(client, "POST", f"/rooms/{room_id}/join", token, {})
        members.append((user_id, token))
    since = f"s{await engine.storage.rooms.current_stream_pos()}"
    tokens = {user_id: since for user_id, _ in members}
    results = []
    states = [Presence.UNAVAILABLE, Presence.ONLINE]
    for r in range(rounds):
        wanted = states[r % 2]
        finished: dict[str, float] = {}
        bodies: dict[str, JsonDict] = {}
        all_waiting = counter.arm(waiters)
        with trio.fail_after(PRESENCE_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                for user_id, token in members:
                    nursery.start_soon(
                        _wait_sync, client, user_id, token, tokens[user_id], finished, bodies
                    )
                await all_waiting.wait()
                # From its read to its wait a long-poll passes no checkpoint; this is
                # only margin.
                await trio.sleep(0.05)
                if finished:
                    raise BenchError(f"{len(finished)} /sync returned before the change")
                t0 = time.perf_counter()
                await _call(
                    client,
                    "PUT",
                    f"/presence/{changer_id}/status",
                    changer_token,
                    {"presence": wanted},
                )
                put_s = time.perf_counter() - t0
        for user_id, body in bodies.items():
            seen = [
                e["content"]["presence"]
                for e in body["presence"]["events"]
                if e["sender"] == changer_id
            ]
            if seen != [wanted]:
                raise BenchError(f"{user_id} saw {seen}, not [{wanted!r}]")
            tokens[user_id] = body["next_batch"]
        latencies = sorted(at - t0 for at in finished.values())
        result = PresenceRound(
            presence=wanted,
            put_ms=round(put_s * 1000, 2),
            first_ms=round(latencies[0] * 1000, 2),
            p50_ms=round(percentile(latencies, 50) * 1000, 2),
            last_ms=round(latencies[-1] * 1000, 2),
        )
        print(
            f"  round {r + 1}: {wanted} reached {waiters} waiters: first "
            f"{result.first_ms:.1f} ms, median {result.p50_ms:.1f} ms, "
            f"last {result.last_ms:.1f} ms",
            file=sys.stderr,
        )
        results.append(result)
    return results


# ---------------------------------------------------------------------------- touch (HTTP)


def bench_touch(
    backend: str, workdir: Path, args: argparse.Namespace, tool: str
) -> dict[str, list[HttpFigure]]:
    """whoami with sessions on and off, alternately, `args.rounds` times each."""
    figures: dict[str, list[HttpFigure]] = {"on": [], "off": []}
    with (
        fresh_store(backend, workdir, "touch_on") as url_on,
        fresh_store(backend, workdir, "touch_off") as url_off,
        homeserver(f"sessions-on-{backend}", url_on, workdir) as server_on,
        homeserver(
            f"sessions-off-{backend}",
            url_off,
            workdir,
            settings={"sessions_enabled": "false"},
        ) as server_off,
    ):
        runners = {}
        for mode, server in (("on", server_on), ("off", server_off)):
            account = register(server, f"touch{mode}")
            target = Target("whoami", server.port, "GET", f"{CLIENT}/account/whoami", account.token)
            runners[mode] = (
                server,
                target_runner(
                    target,
                    connections=args.connections,
                    threads=args.threads,
                    workdir=workdir,
                    tag=f"touch-{backend}-{mode}",
                    tool=tool,
                ),
            )
        for r in range(args.rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                server, runner = runners[mode]
                figure = measure(
                    server, f"whoami-{mode}", runner, duration_s=args.duration, warmup_s=args.warmup
                )
                figures[mode].append(figure)
                print(
                    f"  sessions {mode:3}: {figure.rps:,.0f} req/s, p50 {figure.p50_ms:.2f} ms, "
                    f"{figure.server_cpu_us_per_request} us CPU/req",
                    file=sys.stderr,
                )
    return figures


def _touch_summary(figures: dict[str, list[HttpFigure]]) -> dict[str, Any]:
    def mean(mode: str, attr: str) -> float:
        return round(statistics.fmean(float(getattr(f, attr) or 0) for f in figures[mode]), 2)

    out: dict[str, Any] = {}
    for mode in ("on", "off"):
        for attr in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_request"):
            out[f"{attr}_{mode}"] = mean(mode, attr)
        out[f"errors_{mode}"] = sum(f.non2xx + f.socket_errors for f in figures[mode])
    out["rps_ratio"] = round(out["rps_on"] / out["rps_off"], 3) if out["rps_off"] else None
    out["cpu_us_overhead"] = round(
        out["server_cpu_us_per_request_on"] - out["server_cpu_us_per_request_off"], 1
    )
    out["runs"] = {mode: [f.as_dict() for f in figs] for mode, figs in figures.items()}
    return out


# ---------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.session_bench",
        description="Session engine: start/end, touch overhead, expiry, memory, presence.",
    )
    common_arguments(parser)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated")
    parser.add_argument("--sessions", type=int, default=None, help="expiry/memory (100000)")
    parser.add_argument("--waiters", type=int, default=None, help="presence waiters (200)")
    parser.add_argument("--seconds", type=float, default=None, help="start_end per run (3)")
    parser.add_argument("--duration", type=float, default=None, help="touch: s per run (5)")
    parser.add_argument("--warmup", type=float, default=None, help="touch: warm-up s (1)")
    parser.add_argument("--rounds", type=int, default=None, help="touch: runs per mode (2)")
    parser.add_argument("--connections", type=int, default=None, help="touch: connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    return parser


def _defaults(args: argparse.Namespace) -> None:
    quick = args.quick
    args.sessions = args.sessions or (2_000 if quick else 100_000)
    args.waiters = args.waiters or (20 if quick else 200)
    args.seconds = args.seconds or (0.3 if quick else 3.0)
    args.duration = args.duration or (1.0 if quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.0 if quick else 1.0)
    args.rounds = args.rounds or (1 if quick else 2)
    args.connections = args.connections or (4 if quick else 32)
    args.presence_rounds = 1 if quick else 3
    args.ticks = 20 if quick else 200


def run(args: argparse.Namespace, backends: list[str], parts: list[str]) -> int:
    _defaults(args)
    tool = pick_tool(args.tool) if "touch" in parts else "-"
    settings = {
        key: getattr(args, key)
        for key in (
            "sessions",
            "waiters",
            "seconds",
            "duration",
            "warmup",
            "rounds",
            "connections",
            "presence_rounds",
            "ticks",
        )
    }
    bench = Run(
        "sessions",
        args.out,
        args.quick,
        {
            **settings,
            "backends": backends,
            "parts": parts,
            "tool": tool,
            "start_end_tasks": START_END_TASKS,
            "insert_tasks": INSERT_TASKS,
            "expiry_batch": BATCH,
        },
    )
    bench.begin(args.wait_quiet)
    results: dict[str, Any] = {part: {} for part in parts}
    skipped: dict[str, str] = {}
    if "memory" in parts:
        # First, while this process has allocated little (the RSS delta is cleaner).
        print("memory per live session (memory backend):", file=sys.stderr)
        results["memory"] = bench_memory(args.sessions)
    with tempfile.TemporaryDirectory(prefix="session_bench_") as tmp:
        for backend in backends:
            workdir = Path(tmp) / backend
            workdir.mkdir()
            try:
                if "start_end" in parts:
                    print(f"{backend}: start+end", file=sys.stderr)
                    with fresh_store(backend, workdir, "start_end") as url:
                        stats = trio.run(bench_start_end, url, args.seconds, 1_000_000)
                    results["start_end"][backend] = [asdict(s) for s in stats]
                if "expiry" in parts:
                    print(f"{backend}: expiry", file=sys.stderr)
                    with fresh_store(backend, workdir, "expiry") as url:
                        expiry = trio.run(bench_expiry, url, args.sessions, args.ticks)
                    results["expiry"][backend] = asdict(expiry)
                if "presence" in parts:
                    print(f"{backend}: presence to {args.waiters} waiters", file=sys.stderr)
                    with fresh_store(backend, workdir, "presence") as url:
                        rounds = trio.run(bench_presence, url, args.waiters, args.presence_rounds)
                    results["presence"][backend] = [asdict(r) for r in rounds]
                if "touch" in parts:
                    print(f"{backend}: touch overhead over HTTP", file=sys.stderr)
                    results["touch"][backend] = _touch_summary(
                        bench_touch(backend, workdir, args, tool)
                    )
            except StoreUnavailable as exc:
                print(f"  skipped: {exc}", file=sys.stderr)
                skipped[backend] = str(exc)

    markdown = render(results, args, skipped, bench.summary_line())
    paths = bench.write({"results": results, "skipped": skipped}, markdown)
    panels = charts(results)
    if panels:
        paths.append(bar_chart(bench.path(".png"), "Session engine, per backend", panels))
    print(markdown)
    print("\nresults: " + ", ".join(str(p) for p in paths))
    return 0


def _op_rate(stats: list[dict[str, Any]], op: str) -> float:
    return float(next(s["ops_per_s"] for s in stats if s["op"] == op))


def charts(results: dict[str, Any]) -> list[Panel]:
    panels = []
    start_end = results.get("start_end") or {}
    if start_end:
        panels.append(
            Panel(
                title=f"session start+end pairs/s ({START_END_TASKS} tasks)",
                groups=["engine", "store"],
                series={
                    b: [
                        next(s["ops_per_s"] for s in stats if s["op"] == g)
                        for g in ("engine", "store")
                    ]
                    for b, stats in start_end.items()
                },
                ylabel="pairs/s (log scale)",
                log=True,
            )
        )
    touch = results.get("touch") or {}
    if touch:
        panels.append(
            Panel(
                title="whoami req/s: sessions on vs off",
                groups=list(touch),
                series={
                    "sessions on": [t["rps_on"] for t in touch.values()],
                    "sessions off": [t["rps_off"] for t in touch.values()],
                },
                ylabel="requests/s",
            )
        )
    expiry = results.get("expiry") or {}
    if expiry:
        panels.append(
            Panel(
                title="expiry: idle tick (µs) and draining all (ms)",
                groups=list(expiry),
                series={
                    "idle tick µs, 1k live": [e["idle_tick_small_p50_us"] for e in expiry.values()],
                    "idle tick µs, all live": [e["idle_tick_full_p50_us"] for e in expiry.values()],
                    "drain all, ms": [e["drain_s"] * 1000 for e in expiry.values()],
                },
                ylabel="µs / ms (log scale)",
                log=True,
            )
        )
    presence = results.get("presence") or {}
    if presence:
        panels.append(
            Panel(
                title="presence change to every waiting co-member (median of rounds)",
                groups=list(presence),
                series={
                    "first": [
                        statistics.median(r["first_ms"] for r in rs) for rs in presence.values()
                    ],
                    "median": [
                        statistics.median(r["p50_ms"] for r in rs) for rs in presence.values()
                    ],
                    "last": [
                        statistics.median(r["last_ms"] for r in rs) for rs in presence.values()
                    ],
                },
                ylabel="ms after the change",
                label=lambda v: f"{v:,.1f}",
            )
        )
    return panels


def render(
    results: dict[str, Any], args: argparse.Namespace, skipped: dict[str, str], machine: str
) -> str:
    lines = [f"Session engine benchmark. {machine}.", ""]
    start_end = results.get("start_end") or {}
    if start_end:
        rows = []
        for backend, stats in start_end.items():
            by = {s["op"]: s for s in stats}
            rows.append(
                [
                    backend,
                    fmt(by["engine"]["ops_per_s"]),
                    fmt_small(by["engine"]["p50_us"] / 1000),
                    fmt(by["store"]["ops_per_s"]),
                    fmt_small(by["store"]["p50_us"] / 1000),
                ]
            )
        lines += [
            f"**Session start + end** ({START_END_TASKS} concurrent tasks, a new device per "
            "pair; engine = with presence recompute and publish)",
            "",
            markdown_table(
                ["backend", "engine pairs/s", "engine p50 ms", "store pairs/s", "store p50 ms"],
                rows,
            ),
            "",
        ]
    touch = results.get("touch") or {}
    if touch:
        rows = [
            [
                backend,
                fmt(t["rps_on"]),
                fmt(t["rps_off"]),
                fmt(t["rps_ratio"], 2),
                f"{fmt(t['p50_ms_on'], 2)} / {fmt(t['p50_ms_off'], 2)}",
                f"{fmt(t['p99_ms_on'], 2)} / {fmt(t['p99_ms_off'], 2)}",
                f"{fmt(t['server_cpu_us_per_request_on'])} / "
                f"{fmt(t['server_cpu_us_per_request_off'])}",
                fmt(t["cpu_us_overhead"]),
                t["errors_on"] + t["errors_off"],
            ]
            for backend, t in touch.items()
        ]
        lines += [
            f"**Touch overhead**: whoami over HTTP, sessions on vs off, {args.connections} "
            f"connections, {args.rounds} alternating runs of {args.duration:g} s per mode",
            "",
            markdown_table(
                [
                    "backend",
                    "req/s on",
                    "req/s off",
                    "on/off",
                    "p50 ms on / off",
                    "p99 ms on / off",
                    "CPU µs/req on / off",
                    "overhead µs/req",
                    "errors",
                ],
                rows,
            ),
            "",
        ]
    expiry = results.get("expiry") or {}
    if expiry:
        rows = [
            [
                backend,
                fmt(e["sessions"]),
                f"{fmt(e['insert_s'], 1)} ({fmt(e['insert_per_s'])}/s)",
                f"{fmt_small(e['idle_tick_small_p50_us'])} ({fmt(e['idle_tick_small_live'])} live)",
                f"{fmt_small(e['idle_tick_full_p50_us'])} ({fmt(e['sessions'])} live)",
                fmt(e["drain_s"], 2),
                fmt(e["drain_per_s"]),
                f"{fmt(e['batch_mean_ms'], 1)} / {fmt(e['batch_max_ms'], 1)}",
            ]
            for backend, e in expiry.items()
        ]
        lines += [
            "**Expiry** of sessions sharing one deadline (batches of "
            f"{BATCH:,}); idle tick = next_session_deadline + an empty take_expired_sessions",
            "",
            markdown_table(
                [
                    "backend",
                    "sessions",
                    "insert s (rate)",
                    "idle tick µs p50, few live",
                    "idle tick µs p50, all live",
                    "drain all s",
                    "drained/s",
                    "batch ms mean / max",
                ],
                rows,
            ),
            "",
        ]
    memory = results.get("memory")
    if memory:
        lines += [
            f"**Memory per live session** (memory backend, {memory['sessions']:,} sessions): "
            f"{memory['tracemalloc_bytes_per_session']:,.0f} B by tracemalloc, "
            f"{memory['rss_bytes_per_session']:,.0f} B by RSS delta "
            f"({memory['rss_delta_bytes'] / 2**20:,.1f} MiB in all)",
            "",
        ]
    presence = results.get("presence") or {}
    if presence:
        rows = []
        for backend, rounds in presence.items():
            for index, r in enumerate(rounds, 1):
                rows.append(
                    [
                        backend,
                        index,
                        r["presence"],
                        fmt(r["put_ms"], 1),
                        fmt(r["first_ms"], 1),
                        fmt(r["p50_ms"], 1),
                        fmt(r["last_ms"], 1),
                    ]
                )
        lines += [
            f"**Presence fan-out**: one member's presence change reaching {args.waiters} "
            "co-members waiting in /sync (in-process app, Quart test client); ms after the "
            "change was sent",
            "",
            markdown_table(
                ["backend", "round", "to", "PUT ms", "first ms", "median ms", "last ms"], rows
            ),
            "",
        ]
    lines += [f"- {backend} skipped: {reason}" for backend, reason in skipped.items()]
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        backends = parse_backends(args.backends)
    except ValueError as exc:
        parser.error(str(exc))
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts: choose from {', '.join(PARTS)}")
    parts = [p for p in PARTS if p in parts]
    return run_main(
        "session_bench", lambda: run(args, backends, parts), (BenchError, ProcessError, LoadError)
    )


if __name__ == "__main__":
    raise SystemExit(main())
