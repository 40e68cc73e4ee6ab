"""The chat scenario: a few senders (typing on, message, typing off) and many readers
(long-poll /sync, and every 10th response a /messages page)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import trio

from benchmarks.httpload import HttpConn, HttpError
from benchmarks.machine import CpuWindow
from benchmarks.matrix import q, room_path, sync_path
from benchmarks.scenarios.core import LONG_POLL_MS, Fixture, Params, _ms_stats, _room
from benchmarks.targets import Target


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
