"""What the HTTP benchmark needs from the OS: server subprocesses, socket and CPU counts.

Linux only: sockets are counted from /proc/net/tcp{,6}, CPU time from /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# TCP states in /proc/net/tcp (include/net/tcp_states.h).
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


class ProcessError(RuntimeError):
    """A server subprocess did not start or died."""


class ServerProcess:
    """A server subprocess logging to a file; stopped with SIGINT, then killed on timeout."""

    def __init__(
        self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_marker: str) -> None:
        """Start it and wait until its log contains `ready_marker`."""
        with open(self.log_path, "wb") as log_file:
            # A file, not a pipe: nobody has to drain it while the load runs.
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own session: a terminal Ctrl-C reaches only us, and we stop it.
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready_marker in self.log_text():
                return
            if self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self.proc.returncode} before listening:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)
        raise ProcessError(f"{self.name} did not log {ready_marker!r} in time:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} was not started")
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ProcessError(f"{self.name} is not running (exit {code}):\n{self.log_tail()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGINT, then SIGKILL after STOP_TIMEOUT_S; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        return self.proc.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- sockets


def server_socket_states(port: int) -> dict[str, int]:
    """Connection sockets on local `port` that a process still holds open, by TCP state.

    The listener is left out, and so are sockets the kernel finishes alone after the
    process closed them (TIME_WAIT, orphaned FIN_WAIT2: inode 0). A leaked connection
    shows up as ESTABLISHED while its client waits, as CLOSE_WAIT once the client has gone.
    """
    counts: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            fields = line.split()
            if len(fields) < 10 or int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            state = TCP_STATES.get(fields[3].upper(), fields[3])
            if state != "LISTEN" and fields[9] != "0":
                counts[state] = counts.get(state, 0) + 1
    return counts


def held_sockets(port: int) -> int:
    return sum(server_socket_states(port).values())


@dataclass
class SocketCheck:
    """The server's connection sockets right after a load run and once settled."""

    baseline: int
    right_after: int
    after: int
    by_state: dict[str, int]
    settle_s: float
    ok: bool


def wait_for_baseline(port: int, baseline: int, timeout_s: float) -> SocketCheck:
    """Poll until the server holds no more sockets than `baseline`, or `timeout_s` passes."""
    started = time.monotonic()
    right_after: int | None = None
    while True:
        states = server_socket_states(port)
        held = sum(states.values())
        if right_after is None:
            right_after = held
        elapsed = time.monotonic() - started
        if held <= baseline or elapsed >= timeout_s:
            return SocketCheck(
                baseline, right_after, held, states, round(elapsed, 2), held <= baseline
            )
        time.sleep(0.05)


# ---------------------------------------------------------------------------- CPU


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; the fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def system_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def busy_cores(interval_s: float) -> float:
    """How many cores were busy on average over the next `interval_s` seconds."""
    before = system_busy_s()
    time.sleep(interval_s)
    return (system_busy_s() - before) / interval_s
