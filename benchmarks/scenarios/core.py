"""What every scenario shares: the scenario names and kinds, `Params`, the per-target
`Fixture` and its `setup()`, and small helpers for /sync bodies and latency figures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.httpload import HttpConn
from benchmarks.matrix import (
    Account,
    create_room,
    has_sessions,
    initial_syncs,
    join_all,
    register_many,
)
from benchmarks.report import percentile
from benchmarks.targets import Target

THROUGHPUT = ("versions", "whoami", "typing", "presence", "send", "login", "session_churn")
WAKE = ("wake_typing", "wake_message", "fanout_presence")
CHAT = ("chat",)
SCENARIOS: tuple[str, ...] = THROUGHPUT + WAKE + CHAT
LONG_POLL_MS = 30_000


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


# ---------------------------------------------------------------------------- helpers


def _room(body: Any, room_id: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return room if isinstance(room, dict) else {}


def _ms_stats(values: list[float]) -> dict[str, float | int]:
    data = sorted(values)
    return {
        "n": len(data),
        "p50_ms": round(percentile(data, 50), 3),
        "p99_ms": round(percentile(data, 99), 3),
        "max_ms": round(data[-1], 3) if data else 0.0,
    }
