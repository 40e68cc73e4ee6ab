"""HTTP benchmark per storage backend: whoami, sync (with since) and send, end to end.

    python -m benchmarks.backends_http [--quick] [--backends ...] [--duration S]
                                       [--connections N] [--warmup S]

For each backend it starts the homeserver (`python -m homeserver serve`, as http_bench
does) on a fresh store (benchmarks/stores.py), registers a user, creates a room, sends
20 messages and takes a sync token before the last 10. Then, with wrk (or the Python
generator) and `--connections` keep-alive connections:

- `whoami`  GET /_matrix/client/v3/account/whoami
- `sync`    GET /_matrix/client/v3/sync?since=<token>&timeout=0: an incremental sync
            answering the same 10 messages every time (run before `send`, so the room
            does not change under it)
- `send`    PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}, a new txnId
            per request

Every request runs in the device's implicit session (sessions on, the default).
Writes results/backends_http_<UTC>.{json,md,png} and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.http_bench import MESSAGE_BODY, expect_ok
from benchmarks.live import (
    CLIENT,
    BenchError,
    HttpFigure,
    LiveServer,
    create_room,
    homeserver,
    measure,
    pick_tool,
    register,
    room_path,
    target_runner,
)
from benchmarks.loadgen import LoadError, Target
from benchmarks.procs import ProcessError
from benchmarks.report import (
    Panel,
    Run,
    bar_chart,
    common_arguments,
    fmt,
    markdown_table,
    run_main,
)
from benchmarks.stores import BACKENDS, StoreUnavailable, fresh_store, parse_backends

TARGETS = ("whoami", "sync", "send")
SYNC_MESSAGES = 10


def make_targets(server: LiveServer) -> dict[str, Target]:
    account = register(server, f"bench{int(time.time())}")
    room_id = create_room(server, account, name="backends bench", preset="private_chat")
    send_path = room_path(room_id, "send/m.room.message/")

    def send(txn: str) -> None:
        body = json.loads(MESSAGE_BODY)
        expect_ok(server.port, "PUT", send_path + txn, body, account.token)

    for i in range(SYNC_MESSAGES):
        send(f"setup-a{i}")
    since = expect_ok(server.port, "GET", f"{CLIENT}/sync?timeout=0", None, account.token)
    token = since["next_batch"]
    for i in range(SYNC_MESSAGES):
        send(f"setup-b{i}")
    sync_path = f"{CLIENT}/sync?since={token}&timeout=0"
    reply = expect_ok(server.port, "GET", sync_path, None, account.token)
    timeline = reply["rooms"]["join"][room_id]["timeline"]["events"]
    if len(timeline) != SYNC_MESSAGES:
        raise BenchError(f"sync since {token} returned {len(timeline)} events, not 10")
    return {
        "whoami": Target("whoami", server.port, "GET", f"{CLIENT}/account/whoami", account.token),
        "sync": Target("sync", server.port, "GET", sync_path, account.token),
        "send": Target(
            "send", server.port, "PUT", send_path, account.token, MESSAGE_BODY, unique_txn=True
        ),
    }


def bench_backend(
    backend: str, url: str, workdir: Path, args: argparse.Namespace, tool: str
) -> list[HttpFigure]:
    figures = []
    with homeserver(f"homeserver-{backend}", url, workdir) as server:
        targets = make_targets(server)
        for name in TARGETS:
            run = target_runner(
                targets[name],
                connections=args.connections,
                threads=args.threads,
                workdir=workdir,
                tag=f"{backend}-{name}-{int(time.time())}",
                tool=tool,
            )
            figure = measure(server, name, run, duration_s=args.duration, warmup_s=args.warmup)
            print(
                f"  {name:7} {figure.rps:>8,.0f} req/s  p50 {figure.p50_ms:6.2f} ms  "
                f"p99 {figure.p99_ms:7.2f} ms  server CPU {figure.server_cpu:.2f}  "
                f"non-2xx {figure.non2xx}",
                file=sys.stderr,
            )
            figures.append(figure)
    return figures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.backends_http",
        description="whoami, sync and send over HTTP on each storage backend.",
    )
    common_arguments(parser)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--duration", type=float, default=None, help="seconds per target (10)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (1)")
    parser.add_argument("--connections", type=int, default=None, help="connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    return parser


def run(args: argparse.Namespace, backends: list[str]) -> int:
    tool = pick_tool(args.tool)
    args.duration = args.duration or (1.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.0 if args.quick else 1.0)
    args.connections = args.connections or (4 if args.quick else 32)
    bench = Run(
        "backends_http",
        args.out,
        args.quick,
        {
            "backends": backends,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "tool": tool,
            "wrk_threads": args.threads,
            "sync": f"since a token {SYNC_MESSAGES} messages back, timeout=0",
        },
    )
    bench.begin(args.wait_quiet)
    results: dict[str, list[HttpFigure]] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="backends_http_") as tmp:
        for backend in backends:
            print(f"{backend}:", file=sys.stderr)
            workdir = Path(tmp) / backend
            workdir.mkdir()
            try:
                with fresh_store(backend, workdir, "http") as url:
                    results[backend] = bench_backend(backend, url, workdir, args, tool)
            except StoreUnavailable as exc:
                print(f"  skipped: {exc}", file=sys.stderr)
                skipped[backend] = str(exc)

    markdown = render(results, skipped, args, bench.summary_line())
    paths = bench.write(
        {
            "results": {b: [f.as_dict() for f in figures] for b, figures in results.items()},
            "skipped": skipped,
        },
        markdown,
    )
    panels = [
        Panel(
            title=f"requests/s ({args.connections} connections)",
            groups=list(TARGETS),
            series={b: [_get(figs, t, "rps") for t in TARGETS] for b, figs in results.items()},
            ylabel="requests/s",
        ),
        Panel(
            title="server CPU per request",
            groups=list(TARGETS),
            series={
                b: [_get(figs, t, "server_cpu_us_per_request") for t in TARGETS]
                for b, figs in results.items()
            },
            ylabel="µs of server CPU per request",
        ),
    ]
    paths.append(bar_chart(bench.path(".png"), "Homeserver over HTTP, per backend", panels))
    print(markdown)
    print("\nresults: " + ", ".join(str(p) for p in paths))
    return 0


def _get(figures: Sequence[HttpFigure], target: str, attr: str) -> float | None:
    figure = next((f for f in figures if f.target == target), None)
    value = getattr(figure, attr) if figure is not None else None
    return float(value) if value is not None else None


def render(
    results: dict[str, list[HttpFigure]],
    skipped: dict[str, str],
    args: argparse.Namespace,
    machine: str,
) -> str:
    rows = []
    for target in TARGETS:
        for backend, figures in results.items():
            f = next(f for f in figures if f.target == target)
            rows.append(
                [
                    target,
                    backend,
                    fmt(f.rps),
                    fmt(f.p50_ms, 2),
                    fmt(f.p99_ms, 2),
                    fmt(f.server_cpu, 2),
                    fmt(f.server_cpu_us_per_request),
                    fmt(f.other_cpu, 2),
                    f.non2xx + f.socket_errors,
                ]
            )
    headers = [
        "target",
        "backend",
        "req/s",
        "p50 ms",
        "p99 ms",
        "server CPU",
        "CPU µs/req",
        "other CPU",
        "errors",
    ]
    lines = [
        f"HTTP per backend: {args.connections} connections, {args.duration:g} s per target "
        f"after {args.warmup:g} s warm-up. {machine}.",
        "",
        markdown_table(headers, rows),
    ]
    lines += [f"- {backend} skipped: {reason}" for backend, reason in skipped.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        backends = parse_backends(args.backends)
    except ValueError as exc:
        parser.error(str(exc))
    return run_main(
        "backends_http", lambda: run(args, backends), (BenchError, ProcessError, LoadError)
    )


if __name__ == "__main__":
    raise SystemExit(main())
