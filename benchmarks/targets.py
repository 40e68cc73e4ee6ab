"""Benchmark targets: our server on a backend, the Quart-Trio ceiling, Synapse, or any URL.

A target spec is text: `ours:memory`, `ours:sqlite`, `ours:postgresql`, `ours:redis`,
`ceiling`, `synapse` (SQLite), `synapse:postgresql`, or `http://127.0.0.1:8008` (a
homeserver someone else runs; its processes are not sampled). `launch()` starts what
needs starting on a free 127.0.0.1 port and stops it (by PID) on exit.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.procs import ServerProcess, free_port
from benchmarks.stores import BACKENDS, drop_database, fresh_store, make_database
from benchmarks.synapse import (
    SYNAPSE_VERSION,
    SynapseServer,
    default_home,
    install,
    installed_version,
    write_config,
)
from benchmarks.synapse.helper import BENCH_BCRYPT_ROUNDS

REPO_ROOT = Path(__file__).resolve().parent.parent
# Our server for benchmarks: logs at WARNING like Synapse; password hashing kept cheap
# (it only costs setup and the login scenario; Synapse gets bcrypt_rounds=4 likewise).
OURS_ENV = {
    "HOMESERVER_PASSWORD_HASH_TIME_COST": "1",
    "HOMESERVER_PASSWORD_HASH_MEMORY_KIB": "64",
    "HOMESERVER_LOG_LEVEL": "warning",
    "HOMESERVER_SERVER_NAME": "bench.local",
}


@dataclass
class Target:
    name: str
    kind: str  # ours | ceiling | synapse | external
    host: str
    port: int
    pids: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    # The other targets' processes, idle while this one is measured (`compare`).
    idle_pids: list[int] = field(default_factory=list)
    # Whether the target's process still runs (external targets: assumed so).
    alive: Callable[[], bool] = lambda: True

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def matrix(self) -> bool:
        """Whether it is a homeserver (the ceiling only answers /versions)."""
        return self.kind != "ceiling"


def target_name(spec: str) -> str:
    if spec.startswith("ours:"):
        return spec.split(":", 1)[1]
    if spec == "synapse":
        return "synapse-sqlite"
    if spec.startswith("synapse:"):
        return "synapse-" + spec.split(":", 1)[1]
    if spec.startswith(("http://", "https://")):
        return spec.split("://", 1)[1].rstrip("/")
    return spec


def parse_targets(text: str) -> list[str]:
    specs = [part.strip() for part in text.split(",") if part.strip()]
    for spec in specs:
        valid = (
            spec == "ceiling"
            or spec in ("synapse", "synapse:sqlite", "synapse:postgresql")
            or (spec.startswith("ours:") and spec.split(":", 1)[1] in BACKENDS)
            or spec.startswith("http://")
        )
        if not valid:
            raise ValueError(
                f"unknown target {spec!r}: ours:<{'|'.join(BACKENDS)}>, ceiling, "
                "synapse[:postgresql], or http://host:port"
            )
    if not specs:
        raise ValueError("no targets")
    if len({target_name(s) for s in specs}) != len(specs):
        raise ValueError("a target is named twice")
    return specs


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)


@contextlib.contextmanager
def launch(spec: str, workdir: Path) -> Iterator[Target]:
    name = target_name(spec)
    if spec.startswith("http://"):
        parts = urlsplit(spec)
        host = parts.hostname or "127.0.0.1"
        yield Target(name, "external", host, parts.port or 80, [], {"url": spec})
        return
    if spec == "ceiling":
        yield from _ceiling(workdir)
        return
    if spec.startswith("ours:"):
        yield from _ours(spec.split(":", 1)[1], workdir)
        return
    yield from _synapse(spec, workdir)


def _start(process: ServerProcess, port: int) -> None:
    try:
        process.start(port=port)
    except BaseException:
        print(f"--- {process.name}'s log:\n{process.log_tail()}", file=sys.stderr)
        raise


def _ceiling(workdir: Path) -> Iterator[Target]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    argv = [sys.executable, "-m", "benchmarks.ceiling", "--port", str(port)]
    process = ServerProcess("ceiling", argv, cwd=workdir, env=env, log_path=workdir / "ceiling.log")
    _start(process, port)
    try:
        yield Target(
            "ceiling",
            "ceiling",
            "127.0.0.1",
            port,
            [process.pid],
            {"app": "benchmarks.ceiling (Quart-Trio + HomeserverASGI, one route)"},
            alive=process.alive,
        )
    finally:
        process.stop()


def _ours(backend: str, workdir: Path) -> Iterator[Target]:
    with fresh_store(backend, workdir, "cmp") as url:
        port = free_port()
        env = {**os.environ, **OURS_ENV, "PYTHONPATH": _pythonpath()}
        argv = [sys.executable, "-m", "homeserver", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--storage", url]
        process = ServerProcess(
            backend, argv, cwd=workdir, env=env, log_path=workdir / f"ours-{backend}.log"
        )
        _start(process, port)
        try:
            yield Target(
                backend,
                "ours",
                "127.0.0.1",
                port,
                [process.pid],
                {"backend": backend, "storage": _redacted(url), "env": OURS_ENV},
                alive=process.alive,
            )
        finally:
            process.stop()


def _redacted(url: str) -> str:
    from backends import redact_url

    return redact_url(url)


def _synapse(spec: str, workdir: Path) -> Iterator[Target]:
    database = spec.split(":", 1)[1] if ":" in spec else "sqlite"
    home = default_home()
    python = install(home, postgres=database == "postgresql")
    port = free_port()
    data_dir = workdir / f"synapse-{database}"
    with contextlib.ExitStack() as stack:
        db_setting = "sqlite"
        if database == "postgresql":
            db_url = make_database("synapse", collate_c=True)
            stack.callback(drop_database, db_url)
            db_setting = db_url
        config = write_config(data_dir, port=port, database=db_setting)
        server = SynapseServer(python, config, port)
        try:
            server.start()
        except BaseException:
            print(f"--- synapse's log:\n{server.process.log_tail()}", file=sys.stderr)
            raise
        stack.callback(server.stop)
        yield Target(
            target_name(spec),
            "synapse",
            "127.0.0.1",
            port,
            [server.pid],
            {
                "synapse_version": installed_version(home) or SYNAPSE_VERSION,
                "database": database,
                "bcrypt_rounds": BENCH_BCRYPT_ROUNDS,
                "rc_limits": "all raised to 1e6/s",
                "log_level": "WARNING",
                "presence": True,
                "cache_factor": os.environ.get("SYNAPSE_CACHE_FACTOR", "0.5"),
            },
            alive=server.process.alive,
        )
