"""Wake-latency scenarios: listeners long-poll /sync in one room while a writer makes
one change per round (wake_typing, wake_message, and the fan-out fanout_presence)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from benchmarks.httpload import HttpConn, HttpError
from benchmarks.machine import CpuWindow
from benchmarks.matrix import CLIENT, Account, q, room_path, sync_path
from benchmarks.scenarios.core import LONG_POLL_MS, Fixture, Params, _ms_stats, _room
from benchmarks.targets import Target

Match = Callable[[Any], bool]


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
