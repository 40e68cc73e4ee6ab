"""Throughput scenarios (closed loop, one user per connection): versions, whoami,
typing, presence, send, login, session_churn."""

from __future__ import annotations

import json
import secrets
from typing import Any

from benchmarks.httpload import Script, request_bytes, run_closed_loop
from benchmarks.machine import CpuWindow
from benchmarks.matrix import CLIENT, PASSWORD, Account, q, room_path
from benchmarks.procs import wait_sockets_released
from benchmarks.scenarios.core import Fixture, Params
from benchmarks.targets import Target

# Hypercorn's keep-alive timeout (5 s) plus a margin: longer is a leak.
LEAK_WAIT_S = 6.0


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
