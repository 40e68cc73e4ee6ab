"""Invite benchmark (issue 5): invite throughput with and without spam-policy plugins, and
whether a slow plugin slows other endpoints.

    python -m benchmarks.invite_bench [--quick] [--backends memory,postgresql]
                                      [--configs none,builtins,slow,blocking]

For each backend and plugin configuration it starts the homeserver on a fresh store
(benchmarks/stores.py), with the plugins in a TOML config:

- `none`      no plugin
- `builtins`  the four built-ins, in this order: InviteRateLimit (inviter, room and
              invitee buckets, so generous that nothing is refused: this measures the
              overhead, three token-bucket round trips to the store per invite),
              BlockList (users, server globs, a room; none matches), ContentFilter
              (reason length, URL policy, two regexes; nothing matches) and
              FirstContact (redact: every invite here is a first contact, so each is
              delivered redacted)
- `slow`      benchmarks.slow_plugin:SlowInvites, whose check_invite awaits
              trio.sleep(0.005)
- `blocking`  a control: benchmarks.slow_plugin:BlockingInvites calls time.sleep(0.005)
              in check_invite, blocking the event loop; what the benchmark shows when a
              plugin does slow other endpoints

Set-up: 4 inviters with 2 rooms each (name and topic set), 50 invitees. The load cycles
through every (room, invitee) pair: POST /rooms/{roomId}/invite {"user_id", "reason"}.
An invitee invited again is simply re-invited (a new invite member event). Per config:

1. `invite`: invites alone (wrk, `--connections`), after a warm-up that covers every pair;
2. `whoami`: GET /account/whoami alone (a user outside the invites; `--whoami-connections`);
3. `whoami + invite`: whoami measured while the invite load runs (it starts 1 s before
   and ends 1 s after).

The claim to check: whoami under the `slow` invite load stays close to whoami under the
`none` invite load. Writes results/invites_<UTC>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import trio

from benchmarks.live import (
    CLIENT,
    Account,
    BenchError,
    HttpFigure,
    LiveServer,
    Request,
    check_requests,
    create_room,
    homeserver,
    measure,
    register,
    room_path,
    run_wrk_requests,
    target_runner,
)
from benchmarks.loadgen import REQUEST_TIMEOUT_S, LoadError, LoadResult, Target, wrk_available
from benchmarks.procs import ProcessError
from benchmarks.report import (
    Panel,
    Run,
    bar_chart,
    common_arguments,
    fmt,
    markdown_table,
    percentile,
    run_main,
)
from benchmarks.stores import StoreUnavailable, fresh_store, parse_backends

CONFIGS = ("none", "builtins", "slow", "blocking")
GENEROUS = "{ capacity = 1000000000, per_second = 1000000000 }"
PLUGIN_TOML = {
    "none": None,
    "builtins": f"""
[[plugins]]
module = "plugins.builtin.ratelimit:InviteRateLimit"
[plugins.config]
inviter = {GENEROUS}
room = {GENEROUS}
invitee = {GENEROUS}

[[plugins]]
module = "plugins.builtin.blocklist:BlockList"
[plugins.config]
users = ["@spammer:spam.example"]
servers = ["*.spam.example", "evil.example"]
rooms = ["!blocked:localhost"]

[[plugins]]
module = "plugins.builtin.content:ContentFilter"
[plugins.config]
max_reason_length = 300
long_reason_action = "redact"
urls = "redact"
patterns = ["(?i)free +crypto", {{ regex = "(?i)casino", action = "drop" }}]

[[plugins]]
module = "plugins.builtin.first_contact:FirstContact"
config = {{ action = "redact" }}
""",
    "slow": """
[[plugins]]
module = "benchmarks.slow_plugin:SlowInvites"
config = { delay_ms = 5 }
""",
    "blocking": """
[[plugins]]
module = "benchmarks.slow_plugin:BlockingInvites"
config = { delay_ms = 5 }
""",
}
REASON = "Join us for the weekly planning meeting"


def set_up(server: LiveServer, inviters: int, rooms_each: int, invitees: int) -> list[Request]:
    """Accounts and rooms; the invite requests, one per (room, invitee) pair."""
    rooms: list[tuple[Account, str]] = []
    for i in range(inviters):
        inviter = register(server, f"inviter{i}")
        for r in range(rooms_each):
            room_id = create_room(
                server,
                inviter,
                name=f"Planning {i}-{r}",
                topic="Weekly planning for the team",
                preset="private_chat",
            )
            rooms.append((inviter, room_id))
    targets = [register(server, f"invitee{v}") for v in range(invitees)]
    requests = []
    for v, invitee in enumerate(targets):
        for inviter, room_id in rooms:
            body = json.dumps({"user_id": invitee.user_id, "reason": f"{REASON} ({v})"})
            requests.append(
                Request("POST", room_path(room_id, "invite"), inviter.token, body.encode())
            )
    return requests


# Open-loop invites: at most this many in flight (beyond, a send is skipped and counted).
MAX_IN_FLIGHT = 256


async def _paced(
    port: int, requests: Sequence[Request], rate: float, duration_s: float
) -> LoadResult:
    """Send invites at a fixed `rate` for `duration_s`, whatever the answers take (an
    open loop, unlike wrk); latency counts from each request's scheduled time."""
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "skipped": 0}
    non2xx = 0
    in_flight = 0
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:

        async def one(request: Request, scheduled: float) -> None:
            nonlocal in_flight, non2xx
            headers = {"Authorization": f"Bearer {request.token}"}
            if request.body is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = await client.request(
                    request.method, request.path, content=request.body, headers=headers
                )
                latencies.append(trio.current_time() - scheduled)
                if not 200 <= response.status_code < 300:
                    non2xx += 1
            except httpx.TimeoutException:
                errors["timeout"] += 1
            except httpx.ConnectError:
                errors["connect"] += 1
            except httpx.HTTPError:
                errors["read"] += 1
            finally:
                in_flight -= 1

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(max(1, round(duration_s * rate))):
                scheduled = start + index / rate
                await trio.sleep_until(scheduled)
                if in_flight >= MAX_IN_FLIGHT:
                    errors["skipped"] += 1
                    continue
                in_flight += 1
                nursery.start_soon(one, requests[index % len(requests)], scheduled)
        elapsed = trio.current_time() - start
    latencies.sort()

    def ms(pct: float) -> float:
        return round(percentile(latencies, pct) * 1000, 3)

    return LoadResult(
        requests=len(latencies),
        duration_s=round(elapsed, 3),
        rps=round(len(latencies) / elapsed, 1),
        p50_ms=ms(50),
        p90_ms=ms(90),
        p99_ms=ms(99),
        max_ms=ms(100),
        mean_ms=round(sum(latencies) / len(latencies) * 1000, 3) if latencies else 0.0,
        non2xx=non2xx,
        socket_errors=errors,
    )


def bench_config(
    backend: str,
    config: str,
    url: str,
    workdir: Path,
    args: argparse.Namespace,
    paced_rate: float | None,
) -> dict[str, Any]:
    """Measure one plugin config. `paced_rate`: invites/s of the open-loop part (None:
    a fraction of this config's own closed-loop throughput)."""
    with homeserver(
        f"invites-{backend}-{config}", url, workdir, config_toml=PLUGIN_TOML[config]
    ) as server:
        requests = set_up(server, args.inviters, args.rooms_each, args.invitees)
        check_requests(server, requests[:3])
        observer = register(server, "observer")
        whoami = Target("whoami", server.port, "GET", f"{CLIENT}/account/whoami", observer.token)
        whoami_run = target_runner(
            whoami,
            connections=args.whoami_connections,
            threads=1,
            workdir=workdir,
            tag=f"{backend}-{config}-whoami",
            tool="wrk",
        )

        def invite_run(duration_s: float) -> LoadResult:
            return run_wrk_requests(
                server.port,
                f"invite-{config}",
                requests,
                duration_s=duration_s,
                connections=args.connections,
                threads=args.threads,
                workdir=workdir,
            )

        # Warm-up until every pair was invited once (the rooms' state has its final
        # size), at most 10 rounds.
        covered = 0
        for _ in range(10):
            covered += invite_run(max(args.warmup, 1.0)).requests
            if covered >= len(requests):
                break
        invites = measure(server, "invite", invite_run, duration_s=args.duration, warmup_s=0)
        _log(config, invites)
        alone = measure(
            server, "whoami", whoami_run, duration_s=args.duration, warmup_s=args.warmup
        )
        _log(config, alone)
        with ThreadPoolExecutor(max_workers=1) as pool:
            background = pool.submit(invite_run, args.duration + 2)
            time.sleep(1.0)
            loaded = measure(
                server, "whoami+invite", whoami_run, duration_s=args.duration, warmup_s=0
            )
            during = background.result(timeout=args.duration + 60)
        _log(config, loaded)
        print(f"    invites during: {during.rps:,.0f}/s", file=sys.stderr)
        rate = paced_rate or max(1.0, round(invites.rps * args.paced_fraction, 1))
        with ThreadPoolExecutor(max_workers=1) as pool:
            background = pool.submit(
                trio.run, _paced, server.port, requests, rate, args.duration + 2
            )
            time.sleep(1.0)
            paced = measure(
                server, "whoami+paced", whoami_run, duration_s=args.duration, warmup_s=0
            )
            paced_invites = background.result(timeout=args.duration + 60)
        _log(config, paced)
        print(
            f"    paced invites: {paced_invites.rps:,.1f}/s (asked {rate:g}/s), p50 "
            f"{paced_invites.p50_ms:.1f} ms, p99 {paced_invites.p99_ms:.1f} ms, "
            f"errors {paced_invites.socket_errors}",
            file=sys.stderr,
        )
        return {
            "paced_rate": rate,
            "whoami_under_paced_invites": paced.as_dict(),
            "paced_invites": {
                "rps": paced_invites.rps,
                "p50_ms": paced_invites.p50_ms,
                "p99_ms": paced_invites.p99_ms,
                "non2xx": paced_invites.non2xx,
                "errors": paced_invites.socket_errors,
            },
            "invite": invites.as_dict(),
            "whoami": alone.as_dict(),
            "whoami_under_invites": loaded.as_dict(),
            "invites_during": {
                "rps": during.rps,
                "p50_ms": during.p50_ms,
                "p99_ms": during.p99_ms,
                "non2xx": during.non2xx,
            },
            "invite_pairs": len(requests),
        }


def _log(config: str, f: HttpFigure) -> None:
    print(
        f"  {config:9} {f.target:14} {f.rps:>8,.0f} req/s  p50 {f.p50_ms:6.2f} ms  "
        f"p99 {f.p99_ms:7.2f} ms  non-2xx {f.non2xx}",
        file=sys.stderr,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.invite_bench",
        description="Invite throughput with and without spam-policy plugins.",
    )
    common_arguments(parser)
    parser.add_argument("--backends", default="memory,postgresql", help="comma-separated")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--duration", type=float, default=None, help="seconds per load (10)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (2)")
    parser.add_argument("--connections", type=int, default=None, help="invite connections (32)")
    parser.add_argument("--whoami-connections", type=int, default=None, help="whoami (4)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads for invites (2)")
    parser.add_argument(
        "--paced-fraction",
        type=float,
        default=0.3,
        help="open-loop invite rate, as a fraction of the no-plugin throughput (0.3)",
    )
    parser.add_argument("--inviters", type=int, default=None, help="(4)")
    parser.add_argument("--rooms-each", type=int, default=2, help="rooms per inviter (2)")
    parser.add_argument("--invitees", type=int, default=None, help="(50)")
    return parser


def run(args: argparse.Namespace, backends: list[str], configs: list[str]) -> int:
    if not wrk_available():
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    quick = args.quick
    args.duration = args.duration or (1.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.connections = args.connections or (4 if quick else 32)
    args.whoami_connections = args.whoami_connections or (2 if quick else 4)
    args.inviters = args.inviters or (1 if quick else 4)
    args.invitees = args.invitees or (5 if quick else 50)
    bench = Run(
        "invites",
        args.out,
        quick,
        {
            "backends": backends,
            "configs": configs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "invite_connections": args.connections,
            "whoami_connections": args.whoami_connections,
            "inviters": args.inviters,
            "rooms_per_inviter": args.rooms_each,
            "invitees": args.invitees,
            "paced_fraction": args.paced_fraction,
            "plugin_toml": {c: PLUGIN_TOML[c] for c in configs},
        },
    )
    bench.begin(args.wait_quiet)
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="invite_bench_") as tmp:
        for backend in backends:
            results[backend] = {}
            paced_rate: float | None = None
            for config in configs:
                print(f"{backend}, plugins: {config}", file=sys.stderr)
                workdir = Path(tmp) / f"{backend}-{config}"
                workdir.mkdir()
                try:
                    with fresh_store(backend, workdir, "invites") as url:
                        results[backend][config] = bench_config(
                            backend, config, url, workdir, args, paced_rate
                        )
                    if config == "none":
                        # Every config of this backend gets the same open-loop rate.
                        paced_rate = results[backend][config]["paced_rate"]
                except StoreUnavailable as exc:
                    print(f"  skipped: {exc}", file=sys.stderr)
                    skipped[backend] = str(exc)
                    break
    results = {b: r for b, r in results.items() if r}
    markdown = render(results, args, skipped, bench.summary_line())
    paths = bench.write({"results": results, "skipped": skipped}, markdown)
    panels = []
    for backend, by_config in results.items():
        names = list(by_config)
        panels.append(
            Panel(
                title=f"{backend}: invites/s by plugin config",
                groups=names,
                series={
                    "invites alone": [by_config[c]["invite"]["rps"] for c in names],
                    "invites with whoami": [by_config[c]["invites_during"]["rps"] for c in names],
                },
                ylabel="invites/s",
            )
        )
        for pct in ("p50", "p99"):
            panels.append(
                Panel(
                    title=f"{backend}: whoami {pct} alone, under an invite flood, under paced "
                    "invites",
                    groups=names,
                    series={
                        label: [by_config[c][key][f"{pct}_ms"] for c in names]
                        for label, key in (
                            ("whoami alone", "whoami"),
                            ("+ invite flood", "whoami_under_invites"),
                            ("+ paced invites", "whoami_under_paced_invites"),
                        )
                    },
                    ylabel=f"ms ({pct}, log scale)",
                    log=True,
                    label=lambda v: f"{v:,.1f}",
                )
            )
    if panels:
        paths.append(bar_chart(bench.path(".png"), "Invites and spam-policy plugins", panels))
    print(markdown)
    print("\nresults: " + ", ".join(str(p) for p in paths))
    return 0


def render(
    results: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    skipped: dict[str, str],
    machine: str,
) -> str:
    rows = []
    for backend, by_config in results.items():
        for config, r in by_config.items():
            inv, alone, loaded, during = (
                r["invite"],
                r["whoami"],
                r["whoami_under_invites"],
                r["invites_during"],
            )
            rows.append(
                [
                    backend,
                    config,
                    fmt(inv["rps"]),
                    f"{fmt(inv['p50_ms'], 1)} / {fmt(inv['p99_ms'], 1)}",
                    fmt(inv["server_cpu_us_per_request"]),
                    fmt(alone["rps"]),
                    f"{fmt(alone['p50_ms'], 2)} / {fmt(alone['p99_ms'], 2)}",
                    fmt(loaded["rps"]),
                    f"{fmt(loaded['p50_ms'], 2)} / {fmt(loaded['p99_ms'], 2)}",
                    fmt(during["rps"]),
                    inv["non2xx"] + alone["non2xx"] + loaded["non2xx"] + during["non2xx"],
                ]
            )
    headers = [
        "backend",
        "plugins",
        "invites/s",
        "invite p50 / p99 ms",
        "CPU µs/invite",
        "whoami req/s alone",
        "whoami p50 / p99 ms alone",
        "whoami req/s + invites",
        "whoami p50 / p99 ms + invites",
        "invites/s + whoami",
        "non-2xx",
    ]
    paced_rows = []
    for backend, by_config in results.items():
        for config, r in by_config.items():
            alone, paced, invites = r["whoami"], r["whoami_under_paced_invites"], r["paced_invites"]
            paced_rows.append(
                [
                    backend,
                    config,
                    f"{fmt(invites['rps'], 1)} ({fmt(r['paced_rate'], 1)})",
                    f"{fmt(invites['p50_ms'], 1)} / {fmt(invites['p99_ms'], 1)}",
                    fmt(paced["rps"]),
                    f"{fmt(paced['p50_ms'], 2)} / {fmt(paced['p99_ms'], 2)}",
                    f"{fmt(alone['p50_ms'], 2)} / {fmt(alone['p99_ms'], 2)}",
                    fmt(paced["server_cpu"], 2),
                    paced["non2xx"] + invites["non2xx"] + sum(invites["errors"].values()),
                ]
            )
    paced_headers = [
        "backend",
        "plugins",
        "invites/s (asked)",
        "invite p50 / p99 ms",
        "whoami req/s",
        "whoami p50 / p99 ms",
        "whoami alone p50 / p99 ms",
        "server CPU",
        "errors",
    ]
    lines = [
        f"Invites: {args.connections} invite connections, {args.whoami_connections} whoami "
        f"connections, {args.duration:g} s per load; {args.inviters * args.rooms_each} rooms "
        f"x {args.invitees} invitees. {machine}.",
        "",
        "**Closed loop** (wrk keeps every connection busy: the invite load saturates the server)",
        "",
        markdown_table(headers, rows),
        "",
        f"**Open loop**: invites at a fixed rate ({args.paced_fraction:g} x the no-plugin "
        "throughput of the backend) while wrk measures whoami",
        "",
        markdown_table(paced_headers, paced_rows),
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
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or set(configs) - set(CONFIGS):
        parser.error(f"--configs: choose from {', '.join(CONFIGS)}")
    return run_main(
        "invite_bench", lambda: run(args, backends, configs), (BenchError, ProcessError, LoadError)
    )


if __name__ == "__main__":
    raise SystemExit(main())
