"""What the benchmarks need from the OS: server subprocesses, CPU and memory from /proc.

Linux only. Servers run in their own session with their output in a log file; they
are stopped by PID (SIGINT, then SIGKILL after a timeout), never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Processes that do a server's storage work when it uses PostgreSQL or Redis: their CPU
# is the target's, not noise (`/proc/<pid>/comm`).
SERVICE_COMMANDS = ("postgres", "redis-server")


class ProcessError(RuntimeError):
    """A server subprocess did not start or died."""


class ServerProcess:
    """A server subprocess logging to a file; stopped with SIGINT, then killed."""

    def __init__(
        self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: str | None = None, port: int | None = None) -> None:
        """Start it and wait until its log contains `ready` (or `port` accepts)."""
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
            if ready is not None and ready in self.log_text():
                return
            if port is not None and port_open(port):
                return
            if self.proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self.proc.returncode} before listening:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)
        self.stop()
        raise ProcessError(f"{self.name} did not start in time:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ProcessError(f"{self.name} was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
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
        return stop_pid_process(self.proc)


def stop_pid_process(proc: subprocess.Popen[bytes] | None) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    return proc.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- CPU, memory


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (all its threads); 0 if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may contain spaces; the fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


def service_pids(commands: Iterable[str] = SERVICE_COMMANDS) -> list[int]:
    """PIDs of the database services on this machine (PostgreSQL backends, Redis)."""
    wanted = tuple(commands)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            if comm.startswith(wanted):
                pids.append(int(entry))
    return pids


def services_cpu_s() -> float:
    return sum(process_cpu_s(pid) for pid in service_pids())


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


# ---------------------------------------------------------------------------- sockets

# TCP states in /proc/net/tcp (include/net/tcp_states.h): LISTEN is 0A.
_LISTEN = "0A"


def held_sockets(port: int) -> int:
    """Connection sockets on local `port` that a process still holds open. The listener
    is left out, and so are sockets the kernel finishes alone after the process closed
    them (TIME_WAIT, orphaned FIN_WAIT2: inode 0). A server that does not close its
    connections (the leak in DESIGN.md) keeps them here in CLOSE_WAIT."""
    count = 0
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
            if fields[3].upper() != _LISTEN and fields[9] != "0":
                count += 1
    return count


def wait_sockets_released(port: int, baseline: int, timeout_s: float) -> int:
    """Poll until the server holds at most `baseline` connections (or the timeout);
    returns what it holds then."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = held_sockets(port)
        if held <= baseline or time.monotonic() >= deadline:
            return held
        time.sleep(0.02)
