"""The machine a run is on, who used its CPU during a measurement, and progress lines.

Every measured window records the cores used by the target server, by the database
services it talks to (PostgreSQL, Redis), by the load generator (this process) and by
everything else. A window where the load generator or "everything else" used more than
NOISE_CORES is flagged: either the generator may have been the bottleneck, or other
work competed with the server (a noisy machine).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.procs import (
    process_cpu_s,
    process_rss_bytes,
    services_cpu_s,
    system_busy_s,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOISE_CORES = 0.3
PACKAGES = ("trio", "quart", "quart-trio", "hypercorn", "h11", "sqlalchemy", "psycopg", "coredis")


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as fh:
            return [float(v) for v in fh.read().split()[:3]]
    except OSError:
        return []


def wait_for_quiet(max_wait_s: float, threshold: float = 0.5) -> bool:
    """Wait (at most `max_wait_s`) until the 1-minute load average is below `threshold`."""
    started = time.monotonic()
    while (load := loadavg()) and load[0] >= threshold:
        waited = time.monotonic() - started
        if waited >= max_wait_s:
            print(f"the machine is still busy (load {load[0]:.2f}); going on", file=sys.stderr)
            return False
        print(f"waiting for a quiet machine: load {load[0]:.2f} ({waited:.0f} s)", file=sys.stderr)
        time.sleep(min(10.0, max_wait_s - waited))
    return True


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def source_revision() -> str | None:
    """The checkout's commit, with "+dirty" when the working tree has changes (read-only)."""

    def git(*argv: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *argv],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return proc.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    versions: dict[str, str] = {}
    for dist in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "loadavg_at_start": loadavg(),
        "source": source_revision(),
    }


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('cpus')} CPUs ({machine.get('cpu_model')}), "
        f"Python {machine.get('python')}, {machine.get('platform')}"
    )


@dataclass
class CpuUse:
    """Average cores used during one measured window, and the flags it raised."""

    wall_s: float
    server: float
    services: float
    loadgen: float
    other: float
    idle_targets: float
    server_rss_mib: float
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CpuWindow:
    """Measure who used the CPU between `__init__` and `stop()`.

    `server_pids` are the target's processes, `idle_pids` those of the other targets
    (idle meanwhile, but e.g. Synapse does background work); the load generator is
    this process (time.process_time covers all its threads)."""

    def __init__(
        self,
        server_pids: list[int],
        *,
        idle_pids: list[int] | None = None,
        noise_cores: float = NOISE_CORES,
    ) -> None:
        self.server_pids = server_pids
        self.idle_pids = idle_pids or []
        self.noise_cores = noise_cores
        self._wall = time.monotonic()
        self._own = time.process_time()
        self._busy = system_busy_s()
        self._server = sum(process_cpu_s(pid) for pid in server_pids)
        self._services = services_cpu_s()
        self._idle = sum(process_cpu_s(pid) for pid in self.idle_pids)

    def stop(self) -> CpuUse:
        wall = max(1e-6, time.monotonic() - self._wall)
        own = (time.process_time() - self._own) / wall
        busy = (system_busy_s() - self._busy) / wall
        server = (sum(process_cpu_s(pid) for pid in self.server_pids) - self._server) / wall
        services = max(0.0, services_cpu_s() - self._services) / wall
        idle = max(0.0, sum(process_cpu_s(pid) for pid in self.idle_pids) - self._idle) / wall
        other = max(0.0, busy - own - server - services - idle)
        rss = sum(process_rss_bytes(pid) for pid in self.server_pids) / 2**20
        flags = []
        if own > self.noise_cores:
            flags.append(f"load generator used {own:.2f} cores (> {self.noise_cores})")
        # An external target's own CPU is part of "other": no noise verdict then.
        if other > self.noise_cores and self.server_pids:
            flags.append(f"noisy machine: other processes used {other:.2f} cores")
        if idle > self.noise_cores:
            flags.append(f"the idle targets used {idle:.2f} cores")
        return CpuUse(
            wall_s=round(wall, 3),
            server=round(server, 3),
            services=round(services, 3),
            loadgen=round(own, 3),
            other=round(other, 3),
            idle_targets=round(idle, 3),
            server_rss_mib=round(rss, 1),
            flags=flags,
        )


class Progress:
    """One line per scenario and round on stderr, with the elapsed time."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            minutes, seconds = divmod(int(elapsed), 60)
            print(f"[{minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)
