"""Load generators for the HTTP benchmark: wrk (preferred) and a bounded Python fallback.

Both keep `connections` HTTP/1.1 keep-alive connections busy for a fixed time, one
request in flight per connection, and return a `LoadResult`.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

REQUEST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Target:
    """One route to load. With `unique_txn` a fresh txnId is appended to `path` per request."""

    name: str
    port: int
    method: str
    path: str
    token: str | None = None
    body: bytes | None = None
    unique_txn: bool = False

    def request_path(self, txn: str) -> str:
        return self.path + txn if self.unique_txn else self.path


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    # Responses with a status outside 2xx (wrk: status >= 400, its "Non-2xx or 3xx").
    non2xx: int
    socket_errors: dict[str, int]
    # CPU seconds the load generator itself used (it shares the machine with the server).
    tool_cpu_s: float = 0.0


# ---------------------------------------------------------------------------- wrk

WRK_RESULT_MARKER = "HTTP_BENCH_RESULT "
# Arguments after `--`: method, path, token or "-", txnId prefix, body. `request()` is
# only added for unique txnIds, so for the GET targets wrk sends its pre-built request
# without calling into Lua per request. `setup` runs before each thread's `init`.
_WRK_SCRIPT = r"""
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  wrk.method = args[1]
  wrk.path = args[2]
  if args[3] ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
  txn_prefix = args[4] .. "-" .. thread_index .. "-"
  counter = 0
  if args[5] ~= "" then
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = args[5]
  end
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
_WRK_UNIQUE_TXN = r"""
function request()
  counter = counter + 1
  return wrk.format(nil, wrk.path .. txn_prefix .. counter)
end
"""


class LoadError(RuntimeError):
    """The load generator failed."""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_version() -> str:
    proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "wrk"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    target: Target,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    txn_prefix: str,
    workdir: Path,
) -> LoadResult:
    script = workdir / f"{target.name}.lua"
    script.write_text(_WRK_SCRIPT + (_WRK_UNIQUE_TXN if target.unique_txn else ""))
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={round(REQUEST_TIMEOUT_S)}s",
        "-s",
        str(script),
        f"http://127.0.0.1:{target.port}",
        "--",
        target.method,
        target.path,
        target.token or "-",
        txn_prefix,
        (target.body or b"").decode(),
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


# ---------------------------------------------------------------------------- Python


@dataclass
class _Stats:
    latencies_s: list[float] = field(default_factory=list)
    non2xx: int = 0
    errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )


class _ConnectionLost(Exception):
    pass


async def _read_response(stream: trio.SocketStream, buf: bytearray) -> tuple[int, bool]:
    """Read one response (Content-Length or chunked body); returns (status, keep-alive)."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        await _receive_into(stream, buf)
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    status = int(head[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = headers.get("connection") != "close"
    if "chunked" not in headers.get("transfer-encoding", ""):
        await _read_exactly(stream, buf, int(headers.get("content-length", "0")))
        return status, keep_alive
    while True:
        while (eol := buf.find(b"\r\n")) < 0:
            await _receive_into(stream, buf)
        size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
        del buf[: eol + 2]
        await _read_exactly(stream, buf, size + 2)  # the chunk and its CRLF
        if size == 0:  # no trailers from these servers
            return status, keep_alive


async def _receive_into(stream: trio.SocketStream, buf: bytearray) -> None:
    chunk = await stream.receive_some(65536)
    if not chunk:
        raise _ConnectionLost
    buf += chunk


async def _read_exactly(stream: trio.SocketStream, buf: bytearray, length: int) -> None:
    """Consume `length` bytes from the connection (the body is not needed)."""
    while len(buf) < length:
        await _receive_into(stream, buf)
    del buf[:length]


def _request_bytes(target: Target, txn: str, *, close: bool = False) -> bytes:
    lines = [
        f"{target.method} {target.request_path(txn)} HTTP/1.1",
        f"Host: 127.0.0.1:{target.port}",
    ]
    if close:
        lines.append("Connection: close")
    if target.token:
        lines.append(f"Authorization: Bearer {target.token}")
    body = target.body or b""
    if target.body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(target: Target, txn_prefix: str, deadline: float, stats: _Stats) -> None:
    counter = 0
    while trio.current_time() < deadline:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", target.port)
        except OSError:
            stats.errors["connect"] += 1
            await trio.sleep(0.01)
            continue
        async with stream:
            buf = bytearray()
            while trio.current_time() < deadline:
                counter += 1
                request = _request_bytes(target, f"{txn_prefix}-{counter}")
                started = time.perf_counter()
                try:
                    await stream.send_all(request)
                except trio.BrokenResourceError:
                    stats.errors["write"] += 1
                    break
                with trio.move_on_after(REQUEST_TIMEOUT_S) as scope:
                    try:
                        status, keep_alive = await _read_response(stream, buf)
                    except (_ConnectionLost, trio.BrokenResourceError, ValueError, IndexError):
                        stats.errors["read"] += 1
                        break
                if scope.cancelled_caught:
                    stats.errors["timeout"] += 1
                    break
                stats.latencies_s.append(time.perf_counter() - started)
                if not 200 <= status < 300:
                    stats.non2xx += 1
                if not keep_alive:
                    break


async def _python_load(
    target: Target, duration_s: float, connections: int, txn_prefix: str
) -> tuple[_Stats, float]:
    stats = _Stats()
    started = trio.current_time()
    deadline = started + duration_s
    # Connections stop issuing requests at the deadline; a stuck one is cut off after.
    with trio.move_on_after(duration_s + REQUEST_TIMEOUT_S + 1):
        async with trio.open_nursery() as nursery:
            for index in range(connections):
                nursery.start_soon(_connection, target, f"{txn_prefix}-{index}", deadline, stats)
    return stats, trio.current_time() - started


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    rank = round(pct / 100 * len(sorted_values)) - 1
    return sorted_values[min(len(sorted_values) - 1, max(0, rank))]


def run_python_load(
    target: Target, *, duration_s: float, connections: int, txn_prefix: str
) -> LoadResult:
    cpu_before = time.process_time()
    stats, elapsed = trio.run(_python_load, target, duration_s, connections, txn_prefix)
    tool_cpu_s = time.process_time() - cpu_before
    lat = sorted(stats.latencies_s)

    def ms(seconds: float) -> float:
        return round(seconds * 1000, 3)

    return LoadResult(
        requests=len(lat),
        duration_s=round(elapsed, 3),
        rps=round(len(lat) / elapsed, 1),
        p50_ms=ms(_percentile(lat, 50)),
        p90_ms=ms(_percentile(lat, 90)),
        p99_ms=ms(_percentile(lat, 99)),
        max_ms=ms(lat[-1] if lat else 0.0),
        mean_ms=ms(sum(lat) / len(lat) if lat else 0.0),
        non2xx=stats.non2xx,
        socket_errors=stats.errors,
        tool_cpu_s=round(tool_cpu_s, 2),
    )


# ---------------------------------------------------------------------------- close probe


@dataclass
class CloseProbe:
    """Did the server close connections itself? (The leak in DESIGN.md: it did not.)

    A client that disconnects frees a leaked connection, so socket counts after a load
    run cannot show that leak; this probe asks the server to close instead.
    """

    connections: int
    # Connections the server closed after answering a `Connection: close` request.
    closed_by_server: int
    # Connection sockets the server still held while the probe's clients stayed connected.
    held_while_open: int
    ok: bool


async def _close_probe(
    target: Target,
    count: int,
    timeout_s: float,
    txn_prefix: str,
    held: Callable[[], int],
    baseline: int,
) -> CloseProbe:
    closed = 0

    async def one(index: int, stream: trio.SocketStream) -> None:
        nonlocal closed
        with trio.move_on_after(timeout_s):
            with contextlib.suppress(trio.BrokenResourceError):  # a reset is a close too
                await stream.send_all(_request_bytes(target, f"{txn_prefix}-{index}", close=True))
                while await stream.receive_some(65536):
                    pass
            closed += 1

    streams: list[trio.SocketStream] = []
    try:
        for _ in range(count):
            try:
                streams.append(await trio.open_tcp_stream("127.0.0.1", target.port))
            except OSError as exc:
                raise LoadError(f"close probe: cannot connect to {target.name}: {exc}") from None
        async with trio.open_nursery() as nursery:
            for index, stream in enumerate(streams):
                nursery.start_soon(one, index, stream)
        # Seeing EOF means the server shut down its sending side; closing the socket
        # itself can take it another moment. (Polling: the kernel's tables send no events.)
        for _ in range(round(timeout_s / 0.02)):
            if held() <= baseline:
                break
            await trio.sleep(0.02)
        held_now = held()
    finally:
        for stream in streams:
            await stream.aclose()
    return CloseProbe(count, closed, held_now, closed == count and held_now <= baseline)


def close_probe(
    target: Target,
    *,
    count: int,
    timeout_s: float,
    txn_prefix: str,
    held: Callable[[], int],
    baseline: int,
) -> CloseProbe:
    """Send `count` `Connection: close` requests on fresh connections and wait up to
    `timeout_s` for the server to close each; then, before the clients let go, check
    that the server holds no more than `baseline` connection sockets (`held()`)."""
    return trio.run(_close_probe, target, count, timeout_s, txn_prefix, held, baseline)
