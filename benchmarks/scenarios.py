"""The HTTP scenarios: the same code for every target, setup outside the timed window.

Kinds:
- throughput (closed loop, `connections` connections with one user each, for
  `duration_s` after a `warmup_s` warm-up): versions, whoami, typing, presence, send,
  login, session_churn;
- wake (listeners long-poll /sync in one room; a writer makes one change per round;
  latency of each listener from the START of the writer's request to the response
  that carries the change, and from the writer's response): wake_typing,
  wake_message (50 listeners), fanout_presence (200 listeners);
- chat: a few senders (typing on, message, typing off, closed loop) and many readers
  (long-poll /sync, and every 10th response a /messages page), for `duration_s`.

`setup()` builds a scenario's users and rooms once per target (timed and reported
apart); `measure()` runs one round on that fixture and returns a JSON-ready dict.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import trio

from benchmarks.httpload import HttpConn, HttpError, Script, request_bytes, run_closed_loop
from benchmarks.machine import CpuWindow
from benchmarks.matrix import (
    CLIENT,
    PASSWORD,
    Account,
    create_room,
    has_sessions,
    initial_syncs,
    join_all,
    q,
    register_many,
    room_path,
    sync_path,
)
from benchmarks.procs import wait_sockets_released
from benchmarks.report import percentile
from benchmarks.targets import Target

THROUGHPUT = ("versions", "whoami", "typing", "presence", "send", "login", "session_churn")
WAKE = ("wake_typing", "wake_message", "fanout_presence")
CHAT = ("chat",)
SCENARIOS: tuple[str, ...] = THROUGHPUT + WAKE + CHAT
LONG_POLL_MS = 30_000
# Hypercorn's keep-alive timeout (5 s) plus a margin: longer is a leak.
LEAK_WAIT_S = 6.0


@dataclass
class Params:
    """Sizes and bounds of every scenario (the defaults are the issue's)."""

    connections: int = 32
    duration_s: float = 5.0
    warmup_s: float = 1.0
    wake_listeners: int = 50
    wake_rounds: int = 50
    fanout_listeners: int = 200
    fanout_rounds: int = 20
    # A wake round starts once every listener's long-poll has been waiting this long.
    settle_s: float = 0.2
    round_timeout_s: float = 15.0
    # Before a throughput run, wait at most this long for the server to have closed the
    # previous run's connections.
    socket_wait_s: float = 7.0
    chat_senders: int = 4
    chat_readers: int = 40
    chat_duration_s: float = 10.0

    @classmethod
    def quick(cls) -> Params:
        return cls(
            connections=4,
            duration_s=0.5,
            warmup_s=0.2,
            wake_listeners=4,
            wake_rounds=3,
            fanout_listeners=6,
            fanout_rounds=2,
            settle_s=0.05,
            round_timeout_s=5.0,
            socket_wait_s=0.2,
            chat_senders=2,
            chat_readers=3,
            chat_duration_s=1.0,
        )


@dataclass
class Fixture:
    accounts: list[Account]
    room_id: str | None = None
    sessions: bool = False
    since: list[str] = field(default_factory=list)
    setup_s: float = 0.0


def kind_of(scenario: str) -> str:
    if scenario in THROUGHPUT:
        return "throughput"
    if scenario in WAKE:
        return "wake"
    return "chat"


def unsupported(scenario: str, target: Target, fixture: Fixture | None) -> str | None:
    """Why `target` cannot run `scenario` (None: it can)."""
    if not target.matrix and scenario != "versions":
        return "not a homeserver (framework ceiling: /versions only)"
    if scenario == "session_churn" and fixture is not None and not fixture.sessions:
        return "no session API (POST /sessions)"
    return None


# ---------------------------------------------------------------------------- setup


def fixture_key(scenario: str) -> str:
    """Scenarios that share users and rooms share a fixture."""
    if scenario in THROUGHPUT:
        return "throughput"
    if scenario in ("wake_typing", "wake_message"):
        return "wake"
    return scenario


async def setup(scenario: str, target: Target, params: Params) -> Fixture:
    started = time.perf_counter()
    key = fixture_key(scenario)
    host, port = target.host, target.port
    if not target.matrix:
        return Fixture([], setup_s=0.0)
    count = {
        "throughput": params.connections,
        "wake": params.wake_listeners + 1,
        "fanout_presence": params.fanout_listeners + 1,
        "chat": params.chat_senders + params.chat_readers,
    }[key]
    accounts = await register_many(host, port, key[:4], count)
    conn = HttpConn(host, port)
    try:
        room_id = await create_room(conn, accounts[0])
        sessions = await has_sessions(conn, accounts[0]) if key == "throughput" else False
    finally:
        await conn.aclose()
    await join_all(host, port, room_id, accounts[1:])
    since = await initial_syncs(host, port, accounts) if key != "throughput" else []
    return Fixture(accounts, room_id, sessions, since, round(time.perf_counter() - started, 3))


# ---------------------------------------------------------------------------- throughput


def _scripts(
    scenario: str, target: Target, fixture: Fixture, tag: str, connections: int
) -> list[Script]:
    """One script per connection; every connection but `versions`' has its own user."""
    host = f"{target.host}:{target.port}"
    room = fixture.room_id or ""
    if scenario == "versions":
        return [_script(scenario, host, None, room, tag) for _ in range(connections)]
    return [
        _script(scenario, host, account, room, f"{tag}c{index}")
        for index, account in enumerate(fixture.accounts[:connections])
    ]


def _script(scenario: str, host: str, account: Account | None, room_id: str, tag: str) -> Script:
    if scenario == "versions":
        fixed = request_bytes("GET", "/_matrix/client/versions", host=host)
        return lambda _status, _body: fixed
    assert account is not None
    token = account.token
    if scenario == "whoami":
        fixed = request_bytes("GET", f"{CLIENT}/account/whoami", host=host, token=token)
        return lambda _status, _body: fixed
    if scenario == "typing":
        path = room_path(room_id, f"typing/{q(account.user_id)}")
        on = request_bytes(
            "PUT", path, host=host, token=token, body={"typing": True, "timeout": 30000}
        )
        off = request_bytes("PUT", path, host=host, token=token, body={"typing": False})
        return _alternate(on, off)
    if scenario == "presence":
        path = f"{CLIENT}/presence/{q(account.user_id)}/status"
        first = request_bytes("PUT", path, host=host, token=token, body={"presence": "online"})
        second = request_bytes(
            "PUT", path, host=host, token=token, body={"presence": "unavailable"}
        )
        return _alternate(second, first)
    if scenario == "send":
        counter = 0
        prefix = room_path(room_id, "send/m.room.message/")
        body = json.dumps({"msgtype": "m.text", "body": "benchmark message"}).encode()

        def send(_status: int | None, _body: bytes) -> bytes:
            nonlocal counter
            counter += 1
            return request_bytes(
                "PUT", f"{prefix}{tag}n{counter}", host=host, token=token, body=body
            )

        return send
    if scenario == "login":
        fixed = request_bytes(
            "POST",
            f"{CLIENT}/login",
            host=host,
            body={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": account.localpart},
                "password": PASSWORD,
                "initial_device_display_name": "bench",
            },
        )
        return lambda _status, _body: fixed
    if scenario == "session_churn":
        start = request_bytes("POST", f"{CLIENT}/sessions", host=host, token=token, body={})

        def churn(status: int | None, body: bytes) -> bytes:
            # After a successful start, end that session; otherwise start one.
            if status == 200 and body.startswith(b"{") and b'"session_id"' in body:
                session_id = json.loads(body).get("session_id")
                if session_id:
                    path = f"{CLIENT}/sessions/{q(session_id)}"
                    return request_bytes("DELETE", path, host=host, token=token)
            return start

        return churn
    raise ValueError(f"not a throughput scenario: {scenario}")


def _alternate(first: bytes, second: bytes) -> Script:
    flip = False

    def script(_status: int | None, _body: bytes) -> bytes:
        nonlocal flip
        flip = not flip
        return first if flip else second

    return script


def measure_throughput(
    scenario: str, target: Target, fixture: Fixture, params: Params
) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    # Connections of the previous run must be gone by now. (Hypercorn keeps a connection
    # whose client left right after a response until its 5 s keep-alive timer fires;
    # a server that never closes them, the leak in DESIGN.md, keeps them for good.)
    local = bool(target.pids)
    held_before = wait_sockets_released(target.port, 0, params.socket_wait_s) if local else 0
    if params.warmup_s > 0:
        run_closed_loop(
            target.host,
            target.port,
            _scripts(scenario, target, fixture, tag + "w", params.connections),
            duration_s=params.warmup_s,
        )
    scripts = _scripts(scenario, target, fixture, tag + "m", params.connections)
    window = CpuWindow(target.pids, idle_pids=target.idle_pids)
    stats = run_closed_loop(target.host, target.port, scripts, duration_s=params.duration_s)
    cpu = window.stop()
    summary = stats.summary()
    if held_before and params.socket_wait_s >= LEAK_WAIT_S:
        cpu.flags.append(
            f"server held {held_before} connections of an earlier run for more than "
            f"{params.socket_wait_s:g} s after their clients closed (a connection leak?)"
        )
    return {
        **summary,
        "connections": len(scripts),
        "cpu": cpu.as_dict(),
        "server_cpu_us_per_request": (
            round(cpu.server * cpu.wall_s / stats.requests * 1e6, 1) if stats.requests else None
        ),
        "sockets_held_before": held_before,
        "flags": cpu.flags,
    }


# ---------------------------------------------------------------------------- wake


Match = Callable[[Any], bool]


def _room(body: Any, room_id: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return room if isinstance(room, dict) else {}


def typing_match(room_id: str, writer: str, typing: bool) -> Match:
    def match(body: Any) -> bool:
        for event in _room(body, room_id).get("ephemeral", {}).get("events", []):
            if event.get("type") == "m.typing":
                users = event.get("content", {}).get("user_ids", [])
                if (writer in users) == typing:
                    return True
        return False

    return match


def message_match(room_id: str, text: str) -> Match:
    def match(body: Any) -> bool:
        for event in _room(body, room_id).get("timeline", {}).get("events", []):
            if event.get("content", {}).get("body") == text:
                return True
        return False

    return match


def presence_match(writer: str, presence: str) -> Match:
    def match(body: Any) -> bool:
        if not isinstance(body, dict):
            return False
        for event in body.get("presence", {}).get("events", []):
            if event.get("sender") == writer and event.get("content", {}).get("presence") == (
                presence
            ):
                return True
        return False

    return match


@dataclass
class _Round:
    match: Match
    t_start: float = 0.0
    t_answer: float = 0.0
    seen: dict[int, float] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)


async def _wake_rounds(
    scenario: str, target: Target, fixture: Fixture, params: Params, rounds: int
) -> dict[str, Any]:
    writer = fixture.accounts[0]
    listeners = fixture.accounts[1:]
    since = list(fixture.since[1:])
    room_id = fixture.room_id or ""
    polled_at: list[float | None] = [None] * len(listeners)
    current: list[_Round | None] = [None]
    statuses: dict[str, int] = {}
    nonce = secrets.token_hex(3)

    async def listener(index: int) -> None:
        conn = HttpConn(target.host, target.port)
        account = listeners[index]
        try:
            while True:
                polled_at[index] = time.perf_counter()
                try:
                    status, raw = await conn.request(
                        "GET",
                        sync_path(since[index], LONG_POLL_MS),
                        token=account.token,
                        timeout_s=LONG_POLL_MS / 1000 + 10,
                    )
                except HttpError:
                    statuses["transport"] = statuses.get("transport", 0) + 1
                    polled_at[index] = None
                    await trio.sleep(0.1)
                    continue
                now = time.perf_counter()
                polled_at[index] = None
                if status != 200:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    await trio.sleep(0.1)
                    continue
                body = json.loads(raw)
                since[index] = body.get("next_batch", since[index])
                state = current[0]
                if state is not None and index not in state.seen and state.match(body):
                    state.seen[index] = now
                    if len(state.seen) == len(listeners):
                        state.done.set()
        finally:
            await conn.aclose()

    writer_conn = HttpConn(target.host, target.port)
    results: list[dict[str, Any]] = []
    try:
        async with trio.open_nursery() as nursery:
            for index in range(len(listeners)):
                nursery.start_soon(listener, index)
            # Round 0 is a warm-up (listeners catch up with what setup left), not kept.
            for number in range(rounds + 1):
                with trio.move_on_after(params.round_timeout_s):
                    while True:
                        now = time.perf_counter()
                        if all(t is not None and now - t >= params.settle_s for t in polled_at):
                            break
                        await trio.sleep(0.01)
                method, path, body, match = _change(
                    scenario, room_id, writer, number, f"{nonce}-{number}"
                )
                state = _Round(match)
                current[0] = state
                state.t_start = time.perf_counter()
                try:
                    status, _ = await writer_conn.request(
                        method, path, token=writer.token, body=body
                    )
                except HttpError:
                    status = 0
                state.t_answer = time.perf_counter()
                if status != 200:
                    key = str(status) if status else "transport"
                    statuses[f"writer {key}"] = statuses.get(f"writer {key}", 0) + 1
                with trio.move_on_after(params.round_timeout_s):
                    await state.done.wait()
                current[0] = None
                if number == 0:
                    continue
                results.append(
                    {
                        "writer_ms": round((state.t_answer - state.t_start) * 1000, 3),
                        "listeners": sorted(state.seen),
                        "from_start_ms": [
                            round((state.seen[i] - state.t_start) * 1000, 3)
                            for i in sorted(state.seen)
                        ],
                        "from_answer_ms": [
                            round((state.seen[i] - state.t_answer) * 1000, 3)
                            for i in sorted(state.seen)
                        ],
                        "missing": len(listeners) - len(state.seen),
                    }
                )
            nursery.cancel_scope.cancel()
    finally:
        await writer_conn.aclose()
    # The next measurement on this fixture starts where this one ended.
    fixture.since[1:] = since
    return {"rounds": results, "errors": statuses}


def _change(
    scenario: str, room_id: str, writer: Account, number: int, text: str
) -> tuple[str, str, object, Match]:
    if scenario == "wake_typing":
        typing = number % 2 == 0
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = 30000
        path = room_path(room_id, f"typing/{q(writer.user_id)}")
        return "PUT", path, body, typing_match(room_id, writer.user_id, typing)
    if scenario == "wake_message":
        path = room_path(room_id, f"send/m.room.message/wake-{text}")
        body = {"msgtype": "m.text", "body": f"wake {text}"}
        return "PUT", path, body, message_match(room_id, f"wake {text}")
    presence = "unavailable" if number % 2 == 0 else "online"
    path = f"{CLIENT}/presence/{q(writer.user_id)}/status"
    return "PUT", path, {"presence": presence}, presence_match(writer.user_id, presence)


def _ms_stats(values: list[float]) -> dict[str, float | int]:
    data = sorted(values)
    return {
        "n": len(data),
        "p50_ms": round(percentile(data, 50), 3),
        "p99_ms": round(percentile(data, 99), 3),
        "max_ms": round(data[-1], 3) if data else 0.0,
    }


def measure_wake(
    scenario: str, target: Target, fixture: Fixture, params: Params, rounds: int
) -> dict[str, Any]:
    window = CpuWindow(target.pids, idle_pids=target.idle_pids)
    raw = trio.run(_wake_rounds, scenario, target, fixture, params, rounds)
    cpu = window.stop()
    per_round = raw["rounds"]
    from_start = [v for r in per_round for v in r["from_start_ms"]]
    from_answer = [v for r in per_round for v in r["from_answer_ms"]]
    all_seen = [
        max(r["from_start_ms"]) for r in per_round if r["missing"] == 0 and r["from_start_ms"]
    ]
    missing = sum(r["missing"] for r in per_round)
    listeners = len(fixture.accounts) - 1
    errors = dict(raw["errors"])
    if missing:
        errors["not woken"] = missing
    return {
        "listeners": listeners,
        "rounds_run": len(per_round),
        "listener_from_start": _ms_stats(from_start),
        "listener_from_answer": _ms_stats(from_answer),
        "all_seen": {**_ms_stats(all_seen), "rounds_all_seen": len(all_seen)},
        "writer": _ms_stats([r["writer_ms"] for r in per_round]),
        "server_cpu_ms_per_round": (
            round(cpu.server * cpu.wall_s / len(per_round) * 1000, 2) if per_round else None
        ),
        "errors": errors,
        "cpu": cpu.as_dict(),
        "flags": cpu.flags,
        "per_round": per_round,
    }


# ---------------------------------------------------------------------------- chat


async def _chat(target: Target, fixture: Fixture, params: Params) -> dict[str, Any]:
    senders = fixture.accounts[: params.chat_senders]
    readers = fixture.accounts[params.chat_senders :]
    reader_since = list(fixture.since[params.chat_senders :])
    room_id = fixture.room_id or ""
    sent_at: dict[str, float] = {}
    latencies: dict[str, list[float]] = {"send": [], "typing": [], "sync": [], "messages": []}
    delivery: list[float] = []
    statuses: dict[str, int] = {}
    requests = 0
    nonce = secrets.token_hex(3)
    deadline = time.perf_counter() + params.chat_duration_s

    async def call(
        conn: HttpConn, kind: str, method: str, path: str, token: str, body: object = None
    ) -> bytes | None:
        nonlocal requests
        t0 = time.perf_counter()
        try:
            status, raw = await conn.request(
                method, path, token=token, body=body, timeout_s=LONG_POLL_MS / 1000 + 10
            )
        except HttpError:
            statuses["transport"] = statuses.get("transport", 0) + 1
            await trio.sleep(0.05)
            return None
        requests += 1
        latencies[kind].append(time.perf_counter() - t0)
        if status != 200:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            return None
        return raw

    async def sender(index: int) -> None:
        conn = HttpConn(target.host, target.port)
        account = senders[index]
        typing_path = room_path(room_id, f"typing/{q(account.user_id)}")
        counter = 0
        try:
            while time.perf_counter() < deadline:
                counter += 1
                text = f"chat {nonce} {index} {counter}"
                on = {"typing": True, "timeout": 30000}
                await call(conn, "typing", "PUT", typing_path, account.token, on)
                sent_at[text] = time.perf_counter()
                path = room_path(room_id, f"send/m.room.message/chat-{nonce}-{index}-{counter}")
                body = {"msgtype": "m.text", "body": text}
                await call(conn, "send", "PUT", path, account.token, body)
                await call(conn, "typing", "PUT", typing_path, account.token, {"typing": False})
        finally:
            await conn.aclose()

    async def reader(index: int) -> None:
        conn = HttpConn(target.host, target.port)
        account = readers[index]
        responses = 0
        messages_path = room_path(room_id, "messages?" + urlencode({"dir": "b", "limit": "20"}))
        try:
            while time.perf_counter() < deadline:
                path = sync_path(reader_since[index], LONG_POLL_MS)
                raw = await call(conn, "sync", "GET", path, account.token)
                now = time.perf_counter()
                if raw is None:
                    continue
                body = json.loads(raw)
                reader_since[index] = body.get("next_batch", reader_since[index])
                for event in _room(body, room_id).get("timeline", {}).get("events", []):
                    started = sent_at.get(event.get("content", {}).get("body", ""))
                    if started is not None:
                        delivery.append(now - started)
                responses += 1
                if responses % 10 == 0:
                    await call(conn, "messages", "GET", messages_path, account.token)
        finally:
            await conn.aclose()

    started = time.perf_counter()
    with trio.move_on_after(params.chat_duration_s + 5):
        async with trio.open_nursery() as nursery:
            for index in range(len(readers)):
                nursery.start_soon(reader, index)
            for index in range(len(senders)):
                nursery.start_soon(sender, index)
            await trio.sleep(params.chat_duration_s + 0.5)
            # Readers still in a long-poll after the senders stopped: done.
            nursery.cancel_scope.cancel()
    fixture.since[params.chat_senders :] = reader_since
    wall = min(time.perf_counter() - started, params.chat_duration_s + 0.5)
    return {
        "wall_s": wall,
        "requests": requests,
        "messages": len(sent_at),
        "delivery": delivery,
        "latencies": latencies,
        "errors": statuses,
        "readers": len(readers),
    }


def measure_chat(target: Target, fixture: Fixture, params: Params) -> dict[str, Any]:
    window = CpuWindow(target.pids, idle_pids=target.idle_pids)
    raw = trio.run(_chat, target, fixture, params)
    cpu = window.stop()
    wall = raw["wall_s"]
    expected = raw["messages"] * raw["readers"]
    return {
        "duration_s": round(wall, 3),
        "rps": round(raw["requests"] / wall, 1),
        "messages_per_s": round(raw["messages"] / params.chat_duration_s, 1),
        "deliveries_per_s": round(len(raw["delivery"]) / params.chat_duration_s, 1),
        "delivered_fraction": round(len(raw["delivery"]) / expected, 3) if expected else None,
        "delivery": _ms_stats([v * 1000 for v in raw["delivery"]]),
        "latency": {k: _ms_stats([v * 1000 for v in vs]) for k, vs in raw["latencies"].items()},
        "errors": raw["errors"],
        "cpu": cpu.as_dict(),
        "flags": cpu.flags,
    }


# ---------------------------------------------------------------------------- dispatch


def measure(
    scenario: str, target: Target, fixture: Fixture, params: Params, rounds: int = 0
) -> dict[str, Any]:
    kind = kind_of(scenario)
    if kind == "throughput":
        return measure_throughput(scenario, target, fixture, params)
    if kind == "wake":
        default = params.fanout_rounds if scenario == "fanout_presence" else params.wake_rounds
        return measure_wake(scenario, target, fixture, params, rounds or default)
    return measure_chat(target, fixture, params)
