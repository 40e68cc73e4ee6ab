"""A live homeserver for the backend, session and invite benchmarks, and loads against it.

Builds on http_bench's machinery: `procs.ServerProcess` runs the server (its own session,
SIGINT then SIGKILL on stop), `loadgen.run_wrk` / `run_python_load` make the load, and
CPU is sampled from /proc as in http_bench. What it adds:

- `homeserver(...)`: a server on a given storage URL, with extra settings (environment
  `HOMESERVER_<KEY>`) and an optional TOML config (plugins), stopped on exit;
- account and room set-up over HTTP;
- `run_wrk_requests`: wrk cycling through a list of different requests (method, path,
  token, body), for loads such as invites where every request differs in its body.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.http_bench import CLIENT, REPO_ROOT, SERVER_ENV, BenchError, expect_ok
from benchmarks.loadgen import (
    REQUEST_TIMEOUT_S,
    WRK_RESULT_MARKER,
    LoadError,
    LoadResult,
    Target,
    run_python_load,
    run_wrk,
    wrk_available,
)
from benchmarks.procs import ServerProcess, free_port, process_cpu_s, system_busy_s

__all__ = [
    "CLIENT",
    "Account",
    "BenchError",
    "HttpFigure",
    "LiveServer",
    "Request",
    "create_room",
    "homeserver",
    "measure",
    "register",
    "room_path",
    "run_wrk_requests",
]


@dataclass(frozen=True)
class LiveServer:
    name: str
    port: int
    storage: str
    process: ServerProcess


@contextmanager
def homeserver(
    name: str,
    storage_url: str,
    workdir: Path,
    *,
    settings: Mapping[str, str] | None = None,
    config_toml: str | None = None,
) -> Iterator[LiveServer]:
    """A homeserver subprocess on a free 127.0.0.1 port, stopped on exit.

    `settings` become HOMESERVER_<KEY> environment variables (e.g. sessions_enabled);
    `config_toml` is written to a file passed with --config (plugins)."""
    port = free_port()
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, **SERVER_ENV, "PYTHONPATH": pythonpath}
    env.update({f"HOMESERVER_{key.upper()}": value for key, value in (settings or {}).items()})
    argv = [sys.executable, "-m", "homeserver", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--storage", storage_url]
    if config_toml is not None:
        config_path = workdir / f"{name}.toml"
        config_path.write_text(config_toml)
        argv += ["--config", str(config_path)]
    process = ServerProcess(name, argv, cwd=workdir, env=env, log_path=workdir / f"{name}.log")
    try:
        process.start("listening on")
        yield LiveServer(name, port, storage_url, process)
    except BaseException:
        # The server's side of a failure (its log goes with the temporary directory).
        print(f"--- last lines of {name}'s log:\n{process.log_tail()}", file=sys.stderr)
        raise
    finally:
        code = process.stop()
        print(f"stopped {name} (exit {code})", file=sys.stderr)


# ---------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str
    device_id: str


def register(server: LiveServer, localpart: str) -> Account:
    body = {"username": localpart, "password": "bench-password", "auth": {"type": "m.login.dummy"}}
    reply = expect_ok(server.port, "POST", f"{CLIENT}/register", body)
    return Account(reply["user_id"], reply["access_token"], reply["device_id"])


def create_room(server: LiveServer, account: Account, **body: Any) -> str:
    reply = expect_ok(server.port, "POST", f"{CLIENT}/createRoom", body, account.token)
    room_id: str = reply["room_id"]
    return room_id


def room_path(room_id: str, rest: str) -> str:
    return f"{CLIENT}/rooms/{quote(room_id, safe='')}/{rest}"


# ---------------------------------------------------------------------------- load


@dataclass
class HttpFigure:
    """One measured load: throughput, latency and what it cost the server's CPU."""

    target: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    # Cores the server process used on average during the run.
    server_cpu: float
    # Server CPU microseconds per completed request (robust to a shared machine).
    server_cpu_us_per_request: float | None
    # Cores busy apart from the server and the load tool(s).
    other_cpu: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    server: LiveServer,
    name: str,
    run: Callable[[float], LoadResult],
    *,
    duration_s: float,
    warmup_s: float,
) -> HttpFigure:
    """Warm up, then run `run(duration_s)` while sampling the server's CPU."""
    server.process.check_alive()
    if warmup_s > 0:
        run(warmup_s)
    cpu_before, busy_before = process_cpu_s(server.process.pid), system_busy_s()
    started = time.monotonic()
    result = run(duration_s)
    wall = time.monotonic() - started
    server_cpu_s = process_cpu_s(server.process.pid) - cpu_before
    other = (system_busy_s() - busy_before - server_cpu_s - result.tool_cpu_s) / wall
    server.process.check_alive()
    return HttpFigure(
        target=name,
        requests=result.requests,
        duration_s=result.duration_s,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p90_ms=result.p90_ms,
        p99_ms=result.p99_ms,
        max_ms=result.max_ms,
        non2xx=result.non2xx,
        socket_errors=sum(result.socket_errors.values()),
        server_cpu=round(server_cpu_s / wall, 2),
        server_cpu_us_per_request=(
            round(server_cpu_s / result.requests * 1e6, 1) if result.requests else None
        ),
        other_cpu=round(max(0.0, other), 2),
    )


def target_runner(
    target: Target, *, connections: int, threads: int, workdir: Path, tag: str, tool: str
) -> Callable[[float], LoadResult]:
    """A `run(duration_s)` for one fixed Target, with wrk or the Python generator."""
    counter = 0

    def run(duration_s: float) -> LoadResult:
        nonlocal counter
        counter += 1
        prefix = f"{tag}-{counter}"
        if tool == "wrk":
            return run_wrk(
                target,
                duration_s=duration_s,
                connections=connections,
                threads=threads,
                txn_prefix=prefix,
                workdir=workdir,
            )
        return run_python_load(
            target, duration_s=duration_s, connections=connections, txn_prefix=prefix
        )

    return run


def pick_tool(tool: str) -> str:
    if tool == "auto":
        return "wrk" if wrk_available() else "python"
    if tool == "wrk" and not wrk_available():
        raise BenchError("wrk is not installed (apt-get install -y wrk); or use --tool python")
    return tool


# ---------------------------------------------------------------------------- wrk, many requests


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    token: str | None = None
    body: bytes | None = None


def _lua_string(text: str) -> str:
    """A Lua string literal (decimal escapes for anything but plain printable ASCII)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte}")
    return '"' + "".join(out) + '"'


# Each thread walks the list from its own offset with a stride of the thread count, so
# the threads send disjoint requests until the list wraps around. `done()` prints the
# same result line as loadgen's script, parsed the same way.
_WRK_REQUESTS_SCRIPT = r"""
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  stride = tonumber(args[1])
  prepared = {}
  for i, r in ipairs(REQUESTS) do
    local headers = {}
    if r[3] ~= "" then headers["Authorization"] = "Bearer " .. r[3] end
    if r[4] ~= "" then headers["Content-Type"] = "application/json" end
    local body = nil
    if r[4] ~= "" then body = r[4] end
    prepared[i] = wrk.format(r[1], r[2], headers, body)
  end
  count = #prepared
  next_index = thread_index
end

function request()
  local r = prepared[(next_index % count) + 1]
  next_index = next_index + stride
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "MARKER{\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,"
      .. "\"connect\":%d,\"read\":%d,\"write\":%d,\"timeout\":%d,"
      .. "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"mean_us\":%.1f}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
""".replace("MARKER", WRK_RESULT_MARKER)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk_requests(
    port: int,
    name: str,
    requests: Sequence[Request],
    *,
    duration_s: float,
    connections: int,
    threads: int,
    workdir: Path,
) -> LoadResult:
    """Load `port` with wrk for `duration_s`, cycling through `requests`."""
    if not requests:
        raise LoadError("run_wrk_requests: no requests")
    threads = min(threads, connections)
    entries = ",\n".join(
        "{"
        + ", ".join(
            _lua_string(value)
            for value in (r.method, r.path, r.token or "", (r.body or b"").decode())
        )
        + "}"
        for r in requests
    )
    script = workdir / f"{name}.lua"
    script.write_text(f"REQUESTS = {{\n{entries}\n}}\n" + _WRK_REQUESTS_SCRIPT)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={round(REQUEST_TIMEOUT_S)}s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
        "--",
        str(threads),
    ]
    cpu_before = _children_cpu_s()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired:
        raise LoadError(f"wrk did not finish within {duration_s + 30:g}s") from None
    if proc.returncode != 0:
        raise LoadError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(WRK_RESULT_MARKER)), None)
    if line is None:
        raise LoadError(f"wrk printed no result line:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line[len(WRK_RESULT_MARKER) :])
    duration = data["duration_us"] / 1e6
    return LoadResult(
        requests=data["requests"],
        duration_s=round(duration, 3),
        rps=round(data["requests"] / duration, 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=round(data["mean_us"] / 1000, 3),
        non2xx=data["non2xx"],
        socket_errors={k: data[k] for k in ("connect", "read", "write", "timeout")},
        tool_cpu_s=round(_children_cpu_s() - cpu_before, 2),
    )


def check_requests(server: LiveServer, requests: Sequence[Request]) -> None:
    """Send each request once; a non-2xx answer is a set-up bug, not a figure."""
    for r in requests:
        body = json.loads(r.body) if r.body else None
        expect_ok(server.port, r.method, r.path, body, r.token)
