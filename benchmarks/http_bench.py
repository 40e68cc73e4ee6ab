"""HTTP benchmark: the homeserver's hot routes against a trivial Quart-Trio route.

    python -m benchmarks.http_bench [--duration S] [--connections N] [--storage URL] [--out DIR]

In one run on one machine it starts the homeserver and `benchmarks.trivial_app` as
subprocesses on free 127.0.0.1 ports, registers a user and creates a room, then loads
each target in turn (a warm-up, then the measured run):

- `trivial` GET /trivial on the trivial app (same Hypercorn config, same ASGI wrapper)
- `whoami`  GET /_matrix/client/v3/account/whoami (Bearer token)
- `send`    PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}, with a
            unique txnId per request

After each run it guards against the connection leak in DESIGN.md: the server's
connection sockets must return to the baseline once the clients have gone, and the
server must itself close connections that ask for `Connection: close` (see README.md).
Then it writes `results/http_<timestamp>.json` and prints a Markdown table. The load
tool is wrk; when it is not installed, a bounded Python generator (trio, raw HTTP/1.1
keep-alive sockets) stands in and the output says so.

Exit status: 0 on success, 1 when the benchmark could not run, 3 when a socket check
failed (a connection leak).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.loadgen import (
    REQUEST_TIMEOUT_S,
    CloseProbe,
    LoadError,
    LoadResult,
    Target,
    close_probe,
    run_python_load,
    run_wrk,
    wrk_available,
    wrk_version,
)
from benchmarks.procs import (
    ProcessError,
    ServerProcess,
    SocketCheck,
    busy_cores,
    free_port,
    held_sockets,
    process_cpu_s,
    system_busy_s,
    wait_for_baseline,
)
from benchmarks.trivial_app import TRIVIAL_PATH
from homeserver.config import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CLIENT = "/_matrix/client/v3"
TARGET_NAMES = ("trivial", "whoami", "send")
MESSAGE_BODY = b'{"msgtype":"m.text","body":"benchmark message"}'
# Light argon2id for the one registration (HOMESERVER_<KEY> overrides, see config.py).
SERVER_ENV = {
    "HOMESERVER_PASSWORD_HASH_TIME_COST": "1",
    "HOMESERVER_PASSWORD_HASH_MEMORY_KIB": "64",
    "HOMESERVER_LOG_LEVEL": "info",
}
# Hypercorn closes a connection that ends before its first request only when its
# keep-alive timer fires (wrk opens one such connection per run), so a healthy server
# may need up to keep_alive_timeout_s to get back to the baseline; a leak never does.
SETTLE_MARGIN_S = 3.0
# The close probe: this many `Connection: close` requests, each closed by the server
# within PROBE_TIMEOUT_S (a healthy server closes at once).
PROBE_CONNECTIONS = 8
PROBE_TIMEOUT_S = 2.0
# Warn when something else keeps this much CPU busy before the run.
BUSY_WARNING_CORES = 0.25


class BenchError(RuntimeError):
    """The benchmark could not be set up or run."""


@dataclass
class CpuUse:
    """Average cores used during a measured run."""

    server: float
    load_tool: float
    # Everything else on the machine (other processes, the idle second server).
    other: float
    # req/s divided by the server's cores: what one request costs the server, which
    # holds up better than req/s when other processes compete for the CPU.
    requests_per_cpu_s: float


@dataclass
class TargetResult:
    name: str
    method: str
    path: str
    server: str
    load: LoadResult
    cpu: CpuUse
    sockets: SocketCheck
    close_probe: CloseProbe
    ratio_to_trivial: float | None = None


# ---------------------------------------------------------------------------- setup


def call(
    port: int, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, Any]:
    """One request on its own connection; returns (status, parsed JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Connection": "close"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def expect_ok(
    port: int, method: str, path: str, body: object = None, token: str | None = None
) -> Any:
    try:
        status, payload = call(port, method, path, body, token)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise BenchError(f"{method} {path}: {exc!r}") from None
    if not 200 <= status < 300:
        raise BenchError(f"{method} {path} -> {status}: {payload}")
    return payload


def make_targets(hs_port: int, trivial_port: int) -> dict[str, Target]:
    """Register a user, create a room and describe the three targets."""
    login = expect_ok(
        hs_port,
        "POST",
        f"{CLIENT}/register",
        {
            "username": f"bench{secrets.token_hex(4)}",
            "password": secrets.token_urlsafe(12),
            "auth": {"type": "m.login.dummy"},
        },
    )
    token: str = login["access_token"]
    room = expect_ok(hs_port, "POST", f"{CLIENT}/createRoom", {"name": "http bench"}, token)
    room_id: str = room["room_id"]
    send_path = f"{CLIENT}/rooms/{quote(room_id, safe='')}/send/m.room.message/"
    return {
        "trivial": Target("trivial", trivial_port, "GET", TRIVIAL_PATH),
        "whoami": Target("whoami", hs_port, "GET", f"{CLIENT}/account/whoami", token),
        "send": Target("send", hs_port, "PUT", send_path, token, MESSAGE_BODY, unique_txn=True),
    }


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in ("trio", "quart", "quart-trio", "hypercorn", "h11"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


# ---------------------------------------------------------------------------- measuring


def _load(
    target: Target,
    args: argparse.Namespace,
    *,
    tool: str,
    duration_s: float,
    txn_prefix: str,
    workdir: Path,
) -> LoadResult:
    if tool == "wrk":
        return run_wrk(
            target,
            duration_s=duration_s,
            connections=args.connections,
            threads=args.threads,
            txn_prefix=txn_prefix,
            workdir=workdir,
        )
    return run_python_load(
        target, duration_s=duration_s, connections=args.connections, txn_prefix=txn_prefix
    )


def measure(
    target: Target,
    server: ServerProcess,
    args: argparse.Namespace,
    *,
    tool: str,
    run_tag: str,
    workdir: Path,
    baseline: int,
    settle_timeout_s: float,
) -> TargetResult:
    """Warm up, load `target` while counting CPU, then check the server's sockets."""
    if args.warmup > 0:
        _load(
            target,
            args,
            tool=tool,
            duration_s=args.warmup,
            txn_prefix=f"{run_tag}-warmup",
            workdir=workdir,
        )
    server_cpu, system_cpu, started = process_cpu_s(server.pid), system_busy_s(), time.monotonic()
    measured = _load(
        target,
        args,
        tool=tool,
        duration_s=args.duration,
        txn_prefix=f"{run_tag}-run",
        workdir=workdir,
    )
    wall = time.monotonic() - started
    server_cores = (process_cpu_s(server.pid) - server_cpu) / wall
    tool_cores = measured.tool_cpu_s / wall
    other_cores = (system_busy_s() - system_cpu) / wall - server_cores - tool_cores
    cpu = CpuUse(
        server=round(server_cores, 2),
        load_tool=round(tool_cores, 2),
        other=round(max(0.0, other_cores), 2),
        requests_per_cpu_s=round(measured.rps / server_cores) if server_cores else 0,
    )
    sockets = wait_for_baseline(target.port, baseline, settle_timeout_s)
    probe = close_probe(
        target,
        count=min(PROBE_CONNECTIONS, args.connections),
        timeout_s=PROBE_TIMEOUT_S,
        txn_prefix=f"{run_tag}-probe",
        held=functools.partial(held_sockets, target.port),
        baseline=baseline,
    )
    server.check_alive()
    return TargetResult(
        target.name, target.method, target.path, server.name, measured, cpu, sockets, probe
    )


# ---------------------------------------------------------------------------- reporting


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
        return commit + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def markdown_table(results: list[TargetResult]) -> str:
    rows = [
        "| target | req/s | p50 ms | p99 ms | vs trivial | non-2xx | socket errors "
        "| server CPU | req per CPU-s | other CPU | sockets after (baseline) | server-closed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in results:
        ratio = "-" if r.ratio_to_trivial is None else f"{r.ratio_to_trivial:.2f}"
        sockets = f"{r.sockets.after} ({r.sockets.baseline}), settled in {r.sockets.settle_s:g} s"
        if not r.sockets.ok:
            sockets += f" LEAK {r.sockets.by_state}"
        rows.append(
            f"| {r.name} | {r.load.rps:,.0f} | {r.load.p50_ms:.2f} | {r.load.p99_ms:.2f} "
            f"| {ratio} | {r.load.non2xx} | {sum(r.load.socket_errors.values())} "
            f"| {r.cpu.server:.2f} | {r.cpu.requests_per_cpu_s:,.0f} | {r.cpu.other:.2f} "
            f"| {sockets} "
            f"| {r.close_probe.closed_by_server}/{r.close_probe.connections}"
            f"{'' if r.close_probe.ok else ' LEAK'} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http_bench",
        description="Benchmark the homeserver's HTTP routes against a trivial Quart-Trio route.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target (10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per target (1)")
    parser.add_argument("--storage", default="memory://", help="homeserver storage URL")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON")
    parser.add_argument(
        "--tool",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk if installed, else Python (auto)",
    )
    parser.add_argument(
        "--targets", default=",".join(TARGET_NAMES), help="comma-separated subset, in order"
    )
    parser.add_argument(
        "--trivial-unwrapped",
        action="store_true",
        help="serve the trivial app without HomeserverASGI (its sockets should then leak)",
    )
    return parser


@contextlib.contextmanager
def _stopping(servers: list[ServerProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            code = server.stop()
            print(f"stopped {server.name} (exit {code})", file=sys.stderr)


def _check_args(args: argparse.Namespace) -> list[str]:
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1 or args.threads < 1:
        raise BenchError("need --duration > 0, --warmup >= 0, --connections and --threads >= 1")
    wanted = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(TARGET_NAMES))
    if unknown or not wanted:
        raise BenchError(f"--targets: choose from {', '.join(TARGET_NAMES)}")
    return wanted


def run(args: argparse.Namespace) -> int:
    wanted = _check_args(args)
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if wrk_available() else "python"
    if tool == "wrk" and not wrk_available():
        raise BenchError("wrk is not installed (apt-get install -y wrk); or use --tool python")
    tool_desc = (
        f"{wrk_version()}, {min(args.threads, args.connections)} threads"
        if tool == "wrk"
        else "Python fallback (trio, raw HTTP/1.1 keep-alive sockets)"
    )
    # The servers run in a temporary directory (a relative sqlite:/// path lands there
    # and goes with it); PYTHONPATH lets them import this checkout.
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, **SERVER_ENV, "PYTHONPATH": pythonpath}
    try:
        server_config = load_config(env=env, overrides={"storage": args.storage})
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    settle_timeout_s = server_config.keep_alive_timeout_s + SETTLE_MARGIN_S
    print(f"load tool: {tool_desc}", file=sys.stderr)
    busy_before = round(busy_cores(1.0), 2)
    if busy_before > BUSY_WARNING_CORES:
        print(
            f"warning: {busy_before} cores were busy before the benchmark started; "
            "figures will be low and noisy",
            file=sys.stderr,
        )

    run_tag = f"b{int(time.time())}{secrets.token_hex(2)}"
    started_at = datetime.now(UTC)
    servers: list[ServerProcess] = []
    results: list[TargetResult] = []
    with tempfile.TemporaryDirectory(prefix="http_bench_") as tmp, _stopping(servers):
        workdir = Path(tmp)
        hs_port, trivial_port = free_port(), free_port()
        hs_argv = ["serve", "--host", "127.0.0.1", "--port", str(hs_port)]
        homeserver = ServerProcess(
            "homeserver",
            [sys.executable, "-m", "homeserver", *hs_argv, "--storage", args.storage],
            cwd=workdir,
            env=env,
            log_path=workdir / "homeserver.log",
        )
        trivial_argv = [sys.executable, "-m", "benchmarks.trivial_app", "--port", str(trivial_port)]
        if args.trivial_unwrapped:
            trivial_argv.append("--unwrapped")
        trivial = ServerProcess(
            "trivial_app", trivial_argv, cwd=workdir, env=env, log_path=workdir / "trivial.log"
        )
        for server in (homeserver, trivial):
            servers.append(server)
            server.start("listening on")

        all_targets = make_targets(hs_port, trivial_port)
        targets = [all_targets[name] for name in wanted]
        # One request each first: a target answering non-2xx is a setup bug, not a figure.
        for target in targets:
            body = json.loads(target.body) if target.body else None
            path = target.request_path(f"{run_tag}-check")
            expect_ok(target.port, target.method, path, body, target.token)
        baselines = {
            port: wait_for_baseline(port, 0, settle_timeout_s).after
            for port in (hs_port, trivial_port)
        }

        for target in targets:
            server = trivial if target.port == trivial_port else homeserver
            print(
                f"{target.name}: warm-up {args.warmup:g}s, then {args.duration:g}s",
                file=sys.stderr,
            )
            results.append(
                measure(
                    target,
                    server,
                    args,
                    tool=tool,
                    run_tag=run_tag,
                    workdir=workdir,
                    baseline=baselines[target.port],
                    settle_timeout_s=settle_timeout_s,
                )
            )

    trivial_rps = next((r.load.rps for r in results if r.name == "trivial"), None)
    for r in results:
        if trivial_rps:
            r.ratio_to_trivial = round(r.load.rps / trivial_rps, 3)
    machine = machine_info()
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "tool": tool_desc,
        "source": source_revision(),
        "machine": {**machine, "busy_cores_before": busy_before},
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "storage": args.storage,
            "trivial_unwrapped": args.trivial_unwrapped,
            "socket_settle_timeout_s": settle_timeout_s,
        },
        "results": [asdict(r) for r in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"http_{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out_file.write_text(json.dumps(report, indent=2) + "\n")

    print(
        f"\nHTTP benchmark: {tool_desc}; {args.connections} connections; {args.duration:g} s "
        f"per target after {args.warmup:g} s warm-up; storage {args.storage}; "
        f"{machine['cpus']} CPUs ({machine['cpu_model'] or 'unknown model'}); "
        f"Python {machine['python']}; {busy_before} cores busy before start\n"
    )
    print(markdown_table(results))
    print(f"\nresults: {out_file}")
    leaks = 0
    for r in results:
        if not r.sockets.ok:
            leaks += 1
            print(
                f"LEAK: {r.server} still held {r.sockets.after} connection sockets "
                f"{settle_timeout_s:g} s after the {r.name} run (baseline {r.sockets.baseline}, "
                f"states {r.sockets.by_state})",
                file=sys.stderr,
            )
        if not r.close_probe.ok:
            leaks += 1
            print(
                f"LEAK: {r.server} closed {r.close_probe.closed_by_server} of "
                f"{r.close_probe.connections} `Connection: close` connections within "
                f"{PROBE_TIMEOUT_S:g} s and held {r.close_probe.held_while_open} sockets "
                f"(baseline {r.sockets.baseline}) after the {r.name} run",
                file=sys.stderr,
            )
    return 3 if leaks else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers (in their own sessions) get stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except (BenchError, ProcessError, LoadError) as exc:
        print(f"http_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("http_bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
