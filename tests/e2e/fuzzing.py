"""What the fuzz run (test_fuzz.py) stands on: the server as a plain subprocess whose
stderr goes to a file, a raw HTTP/1.1 client that sends exactly the bytes it is given,
and the app's route table read from its url_map.

The client is our own on purpose: httpx normalises `..` out of paths and refuses
non-ASCII ones, and it cannot send a wrong Content-Length or pipelined garbage.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from werkzeug.exceptions import HTTPException

from backends.memory import open_memory_storage
from homeserver.app import HomeserverApp, create_app
from homeserver.engine import Engine
from tests.helpers import make_config

REQUEST_TIMEOUT_S = 10.0
_LISTENING = re.compile(r"listening on http://([0-9.]+):([0-9]+)")


class Hang(AssertionError):
    """The server did not answer (or close) within the time bound."""


# --- the server process ---------------------------------------------------------------


class FuzzServer:
    """`python -m homeserver serve` on the memory backend, stderr to `log_path`."""

    def __init__(self, log_path: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HOMESERVER_")}
        environ.update(
            HOMESERVER_PASSWORD_HASH_TIME_COST="1",
            HOMESERVER_PASSWORD_HASH_MEMORY_KIB="64",
            **(env or {}),
        )
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        argv = [sys.executable, "-m", "homeserver", "serve", "--port", "0"]
        self.process = subprocess.Popen(
            [*argv, "--storage", "memory://", *extra],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=environ,
            cwd=log_path.parent,
        )
        self.host, self.port = self._wait_listening()
        # What made the process die, for every test that runs after it did.
        self.death: str | None = None

    def _wait_listening(self) -> tuple[str, int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match is not None:
                return match.group(1), int(match.group(2))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log_path.read_text(errors='replace')}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (a graceful shutdown), SIGKILL after `timeout_s`; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return self.process.returncode


# --- a raw HTTP/1.1 client ------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes

    @property
    def from_app(self) -> bool:
        """Responses that went through our ASGI layer carry its CORS headers; Hypercorn's
        own error responses (malformed requests) do not."""
        return "access-control-allow-origin" in self.headers


class _Reader:
    """Reads from `sock` until `deadline` (Hang past it). With `idle_s`, a connection
    quiet for that long counts as ended (`left_open`) instead."""

    def __init__(self, sock: socket.socket, deadline: float, idle_s: float | None = None) -> None:
        self.sock = sock
        self.deadline = deadline
        self.idle_s = idle_s
        self.buffer = b""
        self.received = b""  # everything, for reports
        self.eof = False
        self.left_open = False

    def fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Hang(f"no complete response within {REQUEST_TIMEOUT_S} s")
        wait = remaining if self.idle_s is None else min(remaining, self.idle_s)
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            if wait < remaining:
                self.eof = self.left_open = True
                return
            raise Hang(f"no complete response within {REQUEST_TIMEOUT_S} s") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buffer += chunk
        self.received += chunk

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if self.eof:
                return None
            self.fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if self.eof:
                return None
            self.fill()
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def rest(self) -> bytes:
        while not self.eof:
            self.fill()
        out, self.buffer = self.buffer, b""
        return out


class BadResponse(AssertionError):
    """The server sent something that is not HTTP/1.1."""


def _read_reply(reader: _Reader, *, head: bool) -> Reply | None:
    """One final response (1xx are skipped); None when the connection ended first."""
    while True:
        raw = reader.until(b"\r\n\r\n")
        if raw is None:
            if reader.buffer:
                raise BadResponse(f"truncated response head: {reader.buffer[:300]!r}")
            return None
        lines = raw.split(b"\r\n")
        match = re.match(rb"HTTP/1\.[01] ([0-9]{3})", lines[0])
        if match is None:
            raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:300]!r}")
        status = int(match.group(1))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if 100 <= status < 200 and status != 101:
            continue
        break
    if head or status in (101, 204, 304):
        return Reply(status, headers, b"")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = reader.until(b"\r\n")
            if size_line is None:
                raise BadResponse("truncated chunked body")
            size = int(size_line.split(b";")[0], 16)
            chunk = reader.exactly(size + 2)
            if chunk is None:
                raise BadResponse("truncated chunked body")
            if size == 0:
                break
            body += chunk[:-2]
        return Reply(status, headers, body)
    if "content-length" in headers:
        length = int(headers["content-length"])
        body_or_none = reader.exactly(length)
        if body_or_none is None:
            raise BadResponse(f"body shorter than its Content-Length {length}")
        return Reply(status, headers, body_or_none)
    return Reply(status, headers, reader.rest())


def exchange(
    host: str, port: int, request: bytes, *, head: bool = False, timeout: float = REQUEST_TIMEOUT_S
) -> Reply:
    """Send one request on a new connection and read its response."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = _read_reply(_Reader(sock, deadline), head=head)
    if reply is None:
        raise BadResponse("the server closed the connection without a response")
    return reply


@dataclass
class Conversation:
    """Everything the server sent on one connection until it closed it (or went quiet)."""

    replies: list[Reply] = field(default_factory=list)
    trailing: bytes = b""  # bytes that were not an HTTP/1.x response (e.g. HTTP/2 frames)
    left_open: bool = False  # quiet for IDLE_S without closing (a kept-alive connection)
    received: bytes = b""  # every byte the server sent


IDLE_S = 1.0


def converse(
    host: str,
    port: int,
    chunks: list[bytes],
    *,
    half_close: bool = True,
    timeout: float = REQUEST_TIMEOUT_S,
) -> Conversation:
    """Send `chunks` as separate segments, half-close (unless told not to: Hypercorn
    drops the rest of a response when the client's EOF arrives while it is being sent),
    and read every response until
    the server closes the connection or stays quiet for IDLE_S. (Hypercorn may keep a
    connection open after the client's EOF until its keep-alive timeout; that is not
    what the fuzz is after, so a quiet connection is not waited out.)"""
    deadline = time.monotonic() + timeout
    out = Conversation()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already refused and closed; read what it said
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        reader = _Reader(sock, deadline, idle_s=IDLE_S)
        while True:
            while len(reader.buffer) < 5 and not reader.eof:
                reader.fill()
            if not reader.buffer:
                break
            if not reader.buffer.startswith(b"HTTP/"):
                out.trailing = reader.rest()
                break
            try:
                reply = _read_reply(reader, head=False)
            except BadResponse:
                # Cut short: Hypercorn drops the rest of a response when the client's
                # EOF arrives while it is being sent. Nothing of it to judge.
                out.trailing = reader.buffer + reader.rest()
                break
            if reply is None:
                break
            out.replies.append(reply)
            if reply.status == 101:
                out.trailing = reader.rest()
                break
        out.left_open = reader.left_open
        out.received = reader.received
    return out


def build_request(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    *,
    chunked: bool = False,
) -> bytes:
    """A well-formed HTTP/1.1 request; Content-Length (or chunked framing) is added."""
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    payload = b""
    if body is not None:
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
            step = max(1, len(body) // 3)
            for start in range(0, len(body), step):
                piece = body[start : start + step]
                payload += b"%x\r\n" % len(piece) + piece + b"\r\n"
            payload += b"0\r\n\r\n"
        else:
            lines.append(b"Content-Length: %d" % len(body))
            payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


# --- the route table ------------------------------------------------------------------

_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
KNOWN_CONVERTERS = frozenset({"default", "string", "path", "any"})


@dataclass(frozen=True)
class Variable:
    name: str
    converter: str  # "default" | "string" | "path" | "any" (KNOWN_CONVERTERS)
    choices: tuple[str, ...] = ()  # for any(...)


@dataclass(frozen=True)
class Target:
    """One url_map rule: the fuzz sends requests at it."""

    rule: str
    endpoint: str
    methods: frozenset[str]
    parts: tuple[str | Variable, ...]

    @property
    def id(self) -> str:
        return f"{'|'.join(sorted(self.methods - {'HEAD', 'OPTIONS'}))} {self.rule}"

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(part for part in self.parts if isinstance(part, Variable))


def _parse_rule(rule: str) -> tuple[str | Variable, ...]:
    parts: list[str | Variable] = []
    position = 0
    for match in _VARIABLE.finditer(rule):
        if match.start() > position:
            parts.append(rule[position : match.start()])
        converter = match.group("converter") or "default"
        choices: tuple[str, ...] = ()
        if converter == "any":
            choices = tuple(
                choice.strip().strip("'\"") for choice in (match.group("args") or "").split(",")
            )
        parts.append(Variable(match.group("name"), converter, choices))
        position = match.end()
    if position < len(rule):
        parts.append(rule[position:])
    return tuple(parts)


@functools.cache
def _app() -> HomeserverApp:
    # No I/O: create_app only registers routes; the engine is never run.
    return create_app(Engine(make_config(), open_memory_storage()))


def app_rules() -> list[tuple[str, str, frozenset[str]]]:
    """(rule, endpoint, methods) of every rule of the app as it is built today."""
    return [
        (rule.rule, rule.endpoint, frozenset(rule.methods or ()))
        for rule in _app().url_map.iter_rules()
    ]


def fuzz_targets() -> list[Target]:
    return [
        Target(rule, endpoint, methods, _parse_rule(rule))
        for rule, endpoint, methods in app_rules()
    ]


def url_adapter_match(path: str, method: str) -> tuple[str, str] | None:
    """Which rule (rule text, endpoint) the app routes `path` to; None if none."""
    adapter = _app().url_map.bind("localhost")
    try:
        rule, _ = adapter.match(path, method, return_rule=True)
    except HTTPException:
        return None
    return rule.rule, rule.endpoint


# --- HTTP/2 (Hypercorn speaks it by prior knowledge and after an h2c upgrade) ----------


def h2_converse(
    host: str,
    port: int,
    paths: list[bytes],
    *,
    upgrade: bool = False,
    garbage: bytes = b"",
    timeout: float = REQUEST_TIMEOUT_S,
) -> list[int]:
    """GET each path over one HTTP/2 connection (then send `garbage`); returns the
    statuses received, until every stream ended or the server ended the connection."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    deadline = time.monotonic() + timeout
    statuses: list[int] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = _Reader(sock, deadline)
        if upgrade:
            settings = conn.initiate_upgrade_connection() or b""
            sock.sendall(
                b"GET " + paths[0] + b" HTTP/1.1\r\nHost: h2c\r\n"
                b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                b"HTTP2-Settings: " + settings + b"\r\n\r\n"
            )
            reply = _read_reply(reader, head=False)
            if reply is None or reply.status != 101:
                return [] if reply is None else [reply.status]
            paths = paths[1:]
            open_streams = {1}
        else:
            conn.initiate_connection()
            open_streams = set()
        for path in paths:
            stream_id = conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":scheme", "http"), (":authority", "h2")]
            conn.send_headers(stream_id, [*headers, (":path", path.decode())], end_stream=True)
            open_streams.add(stream_id)
        sock.sendall((conn.data_to_send() or b"") + garbage)
        pending, reader.buffer = reader.buffer, b""
        while open_streams:
            if not pending:
                reader.fill()
                if reader.eof:
                    break
                pending, reader.buffer = reader.buffer, b""
            try:
                events = conn.receive_data(pending)
            except h2.exceptions.ProtocolError:
                break
            pending = b""
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers or []).get(b":status", b"0")
                    statuses.append(int(status))
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    open_streams.discard(event.stream_id or 0)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    open_streams.clear()
            outgoing = conn.data_to_send()
            if outgoing:
                sock.sendall(outgoing)
    return statuses
