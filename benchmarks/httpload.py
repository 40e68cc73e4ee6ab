"""HTTP/1.1 clients for the load generator: raw sockets with keep-alive, nothing else.

- `run_closed_loop`: N connections, one request in flight on each, for a fixed time.
  A small epoll loop on plain sockets (no async framework), so that a request costs
  the generator a few tens of microseconds: it must not be the bottleneck. Each
  connection has a `Script` that writes its next request from the last response.
- `HttpConn`: one keep-alive connection for Trio code (setup, long-polls, writers).

Both speak only what Matrix servers answer with: Content-Length or chunked bodies.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from benchmarks.report import percentile

REQUEST_TIMEOUT_S = 10.0
MAX_SAMPLES = 500_000

# A connection's script: given the last response (None before the first), the next
# request's bytes.
Script = Callable[[int | None, bytes], bytes]


def request_bytes(
    method: str,
    path: str,
    *,
    host: str,
    token: str | None = None,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    elif method in ("POST", "PUT"):
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class _Incomplete(Exception):
    pass


def parse_response(buf: bytearray) -> tuple[int, bytes, bool] | None:
    """(status, body, keep_alive) of the first complete response in `buf` (consumed),
    or None if it is not complete yet."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    start = end + 4
    if not chunked:
        size = length or 0
        if len(buf) < start + size:
            return None
        body = bytes(buf[start : start + size])
        del buf[: start + size]
        return status, body, keep_alive
    pos = start
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        if len(buf) < eol + 2 + size + 2:
            return None
        parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
        pos = eol + 2 + size + 2
        if size == 0:
            del buf[:pos]
            return status, b"".join(parts), keep_alive


@dataclass
class LoadStats:
    """What one closed-loop run measured."""

    requests: int
    duration_s: float
    latencies_s: list[float]
    statuses: Counter[int] = field(default_factory=Counter)
    socket_errors: Counter[str] = field(default_factory=Counter)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def errors_by_status(self) -> dict[str, int]:
        out = {str(s): n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300}
        out.update({k: v for k, v in sorted(self.socket_errors.items()) if v})
        return out

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_s
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 3),
            "p90_ms": round(percentile(lat, 90) * 1000, 3),
            "p99_ms": round(percentile(lat, 99) * 1000, 3),
            "max_ms": round((lat[-1] if lat else 0.0) * 1000, 3),
            "errors": self.errors_by_status(),
        }


class _Conn:
    __slots__ = ("buf", "last", "script", "sent_at", "sock")

    def __init__(self, sock: socket.socket, script: Script) -> None:
        self.sock = sock
        self.script = script
        self.buf = bytearray()
        self.sent_at = 0.0
        self.last: tuple[int | None, bytes] = (None, b"")


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=REQUEST_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Blocking from here: epoll says when to read, and requests fit the send buffer.
    sock.settimeout(None)
    return sock


def run_closed_loop(
    host: str,
    port: int,
    scripts: list[Script],
    *,
    duration_s: float,
    max_requests: int = 10_000_000,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> LoadStats:
    """Keep one request in flight on each of len(scripts) connections until
    `duration_s` passed or `max_requests` were sent; then wait (at most `timeout_s`)
    for the last answers. Latency = send to complete response."""
    poller = select.epoll()
    conns: dict[int, _Conn] = {}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    sent = 0
    started = time.perf_counter()
    deadline = started + duration_s

    def send(conn: _Conn) -> None:
        nonlocal sent
        data = conn.script(*conn.last)
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(data)
        sent += 1

    def open_conn(script: Script, last: tuple[int | None, bytes]) -> None:
        try:
            sock = _connect(host, port)
        except OSError:
            errors["connect"] += 1
            return
        conn = _Conn(sock, script)
        conn.last = last
        conns[sock.fileno()] = conn
        poller.register(sock.fileno(), select.EPOLLIN)
        send(conn)

    def close_conn(fd: int) -> _Conn:
        conn = conns.pop(fd)
        poller.unregister(fd)
        conn.sock.close()
        return conn

    try:
        for script in scripts:
            open_conn(script, (None, b""))
        while conns:
            now = time.perf_counter()
            if now > deadline + timeout_s:
                errors["timeout"] += len(conns)
                break
            for fd, _ in poller.poll(0.05):
                conn = conns.get(fd)
                if conn is None:
                    continue
                try:
                    chunk = conn.sock.recv(262144)
                except OSError:
                    chunk = b""
                if not chunk:
                    errors["read"] += 1
                    lost = close_conn(fd)
                    if time.perf_counter() < deadline:
                        open_conn(lost.script, lost.last)
                    continue
                conn.buf += chunk
                try:
                    parsed = parse_response(conn.buf)
                except (ValueError, IndexError):
                    errors["parse"] += 1
                    close_conn(fd)
                    continue
                if parsed is None:
                    continue
                done_at = time.perf_counter()
                status, body, keep_alive = parsed
                statuses[status] += 1
                if len(latencies) < MAX_SAMPLES:
                    latencies.append(done_at - conn.sent_at)
                conn.last = (status, body)
                if done_at >= deadline or sent >= max_requests:
                    close_conn(fd)
                elif not keep_alive:
                    lost = close_conn(fd)
                    open_conn(lost.script, lost.last)
                else:
                    try:
                        send(conn)
                    except OSError:
                        errors["write"] += 1
                        lost = close_conn(fd)
                        open_conn(lost.script, lost.last)
    finally:
        for fd in list(conns):
            close_conn(fd)
        poller.close()
    wall = time.perf_counter() - started
    latencies.sort()
    return LoadStats(sum(statuses.values()), wall, latencies, statuses, errors)


# ---------------------------------------------------------------------------- Trio


class HttpError(RuntimeError):
    """A request failed at the transport level (not a status code)."""


class HttpConn:
    """One keep-alive HTTP/1.1 connection for Trio tasks; reconnects when closed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._stream: trio.SocketStream | None = None
        self._buf = bytearray()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: object = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> tuple[int, bytes]:
        data = request_bytes(method, path, host=f"{self.host}:{self.port}", token=token, body=body)
        for attempt in range(2):
            fresh = self._stream is None
            if self._stream is None:
                try:
                    self._stream = await trio.open_tcp_stream(self.host, self.port)
                except OSError as exc:
                    raise HttpError(f"connect {self.host}:{self.port}: {exc}") from None
                self._buf = bytearray()
            stream = self._stream
            try:
                with trio.fail_after(timeout_s):
                    await stream.send_all(data)
                    while (parsed := parse_response(self._buf)) is None:
                        chunk = await stream.receive_some(262144)
                        if not chunk:
                            raise trio.BrokenResourceError("closed")
                        self._buf += chunk
            except (trio.BrokenResourceError, OSError) as exc:
                await self.aclose()
                # A keep-alive connection the server closed while idle: retry once.
                if fresh or attempt == 1:
                    raise HttpError(f"{method} {path}: {exc!r}") from None
                continue
            except trio.TooSlowError:
                await self.aclose()
                raise HttpError(f"{method} {path}: no answer in {timeout_s:g} s") from None
            status, body_bytes, keep_alive = parsed
            if not keep_alive:
                await self.aclose()
            return status, body_bytes
        raise HttpError(f"{method} {path}: failed")  # unreachable: the loop returns or raises

    async def json(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: object = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> tuple[int, Any]:
        status, raw = await self.request(method, path, token=token, body=body, timeout_s=timeout_s)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, {"raw": raw[:200].decode(errors="replace")}
