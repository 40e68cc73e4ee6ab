"""`python -m benchmarks <sub-command>` (also `homeserver bench <sub-command>`).

    store         the storage interface, each backend in turn (1 and 16 tasks)
    http          the HTTP scenarios against one target (ours:<backend>, a URL, synapse)
    compare       the HTTP scenarios against several targets, interleaved, with ratios
    scale         10k / 100k / 1M live sessions per backend
    synapse       install / config / start / stop the reference homeserver
    readme-table  print the README's backend table, generated from benchmarks/RESULTS.md

Every sub-command prints a progress line per step and writes JSON + Markdown + PNG to
`--out` (default benchmarks/results/). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import compare as cmp
from benchmarks import output
from benchmarks import scenarios as sc
from benchmarks.machine import Progress, machine_info, wait_for_quiet
from benchmarks.report import run_main
from benchmarks.stores import BACKENDS, parse_backends
from benchmarks.targets import parse_targets, target_name

# Written by `synapse start` (Synapse writes its own pid_file only when it daemonizes).
PID_FILE = "bench-synapse.pid"
DEFAULT_TARGETS = "synapse,ours:memory,ours:sqlite,ours:postgresql,ours:redis,ceiling"


def _params_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = sc.Params()
    group = parser.add_argument_group("scenario sizes and bounds")
    group.add_argument("--connections", type=int, help=f"throughput ({defaults.connections})")
    group.add_argument(
        "--duration", type=float, help=f"s per throughput run ({defaults.duration_s})"
    )
    group.add_argument("--warmup", type=float, help=f"s before each run ({defaults.warmup_s})")
    group.add_argument("--wake-listeners", type=int, help=f"({defaults.wake_listeners})")
    group.add_argument("--wake-rounds", type=int, help=f"in all ({defaults.wake_rounds})")
    group.add_argument("--fanout-listeners", type=int, help=f"({defaults.fanout_listeners})")
    group.add_argument("--fanout-rounds", type=int, help=f"in all ({defaults.fanout_rounds})")
    group.add_argument("--chat-senders", type=int, help=f"({defaults.chat_senders})")
    group.add_argument("--chat-readers", type=int, help=f"({defaults.chat_readers})")
    group.add_argument("--chat-duration", type=float, help=f"s ({defaults.chat_duration_s})")


def _params(args: argparse.Namespace) -> sc.Params:
    params = sc.Params.quick() if args.quick else sc.Params()
    mapping = {
        "connections": "connections",
        "duration": "duration_s",
        "warmup": "warmup_s",
        "wake_listeners": "wake_listeners",
        "wake_rounds": "wake_rounds",
        "fanout_listeners": "fanout_listeners",
        "fanout_rounds": "fanout_rounds",
        "chat_senders": "chat_senders",
        "chat_readers": "chat_readers",
        "chat_duration": "chat_duration_s",
    }
    for arg, attr in mapping.items():
        value = getattr(args, arg)
        if value is not None:
            setattr(params, attr, value)
    return params


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, ~1 s loads")
    parser.add_argument("--out", type=Path, default=output.DEFAULT_OUT, help="result directory")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the 1-min load average to drop below 0.5",
    )


def _scenarios(text: str) -> list[str]:
    if text == "all":
        return list(sc.SCENARIOS)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in sc.SCENARIOS]
    if unknown or not names:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {', '.join(sc.SCENARIOS)}")
    return [s for s in sc.SCENARIOS if s in names]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    store = sub.add_parser("store", help="the storage interface, each backend")
    _common(store)
    store.add_argument("--backends", default=",".join(BACKENDS))
    store.add_argument("--concurrency", default="1,16", help="task counts (1,16)")
    store.add_argument("--seconds", type=float, help="per op and level (3; quick 0.1)")
    store.add_argument("--max-ops", type=int, help="per op and level (100000; quick 200)")

    http = sub.add_parser("http", help="the HTTP scenarios against one target")
    _common(http)
    http.add_argument(
        "--target",
        default="ours:memory",
        help="ours:<backend>, ceiling, synapse[:postgresql] or http://host:port",
    )
    http.add_argument(
        "--scenarios", default="all", help=f"comma-separated: {','.join(sc.SCENARIOS)}"
    )
    _params_arguments(http)

    compare = sub.add_parser("compare", help="several targets, interleaved, with ratios")
    _common(compare)
    compare.add_argument("--targets", default=DEFAULT_TARGETS, help=f"({DEFAULT_TARGETS})")
    compare.add_argument("--baseline", default="synapse-sqlite", help="target name for ratios")
    compare.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    compare.add_argument("--scenarios", default="all")
    compare.add_argument(
        "--write-results",
        nargs="?",
        type=Path,
        const=output.RESULTS_MD,
        metavar="PATH",
        help="also rewrite benchmarks/RESULTS.md (or PATH)",
    )
    _params_arguments(compare)

    scale = sub.add_parser("scale", help="many live sessions per backend")
    _common(scale)
    scale.add_argument("--backends", default=",".join(BACKENDS))
    scale.add_argument("--sizes", default="10000,100000,1000000")
    scale.add_argument("--insert-cap", type=float, default=120.0, help="s per size (120)")
    scale.add_argument("--touch-seconds", type=float, default=2.0)

    synapse = sub.add_parser("synapse", help="the reference homeserver")
    synapse.add_argument("action", choices=["install", "config", "start", "stop"])
    synapse.add_argument("--dir", type=Path, help="data directory (config, start, stop)")
    synapse.add_argument("--port", type=int, default=8448)
    synapse.add_argument("--database", default="sqlite", help="sqlite or a postgresql:// URL")
    synapse.add_argument("--postgres", action="store_true", help="install psycopg2 too")

    readme = sub.add_parser("readme-table", help="the README's backend table from RESULTS.md")
    readme.add_argument("--results", type=Path, default=output.RESULTS_MD)
    return top


# ---------------------------------------------------------------------------- commands


def cmd_store(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmarks.store import run_store

    backends = parse_backends(args.backends)
    concurrency = [int(v) for v in args.concurrency.split(",") if v.strip()]
    seconds = args.seconds if args.seconds is not None else (0.1 if args.quick else 3.0)
    max_ops = args.max_ops if args.max_ops is not None else (200 if args.quick else 100_000)
    started = datetime.now(UTC)
    machine = machine_info()
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        results, skipped = run_store(backends, concurrency, seconds, max_ops, Path(tmp), progress)
    doc = output.document(
        "store",
        started,
        machine,
        output.command_line(argv),
        {
            "settings": {
                "backends": backends,
                "concurrency": concurrency,
                "seconds": seconds,
                "max_ops": max_ops,
            },
            "results": results,
            "skipped": skipped,
        },
        args.quick,
    )
    return _write(
        args.out,
        "store",
        started,
        doc,
        output.store_markdown(doc),
        [lambda stem: output.store_chart(doc, stem.with_suffix(".png"))],
    )


def cmd_scale(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from benchmarks.scale import run_scale

    backends = parse_backends(args.backends)
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    cap = 5.0 if args.quick and args.insert_cap == 120.0 else args.insert_cap
    touch_s = 0.2 if args.quick else args.touch_seconds
    started = datetime.now(UTC)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        results, skipped = run_scale(backends, sizes, cap, touch_s, Path(tmp), Progress())
    doc = output.document(
        "scale",
        started,
        machine,
        output.command_line(argv),
        {
            "settings": {
                "backends": backends,
                "sizes": sizes,
                "insert_cap_s": cap,
                "touch_s": touch_s,
            },
            "results": results,
            "skipped": skipped,
        },
        args.quick,
    )
    return _write(
        args.out,
        "scale",
        started,
        doc,
        output.scale_markdown(doc),
        [lambda stem: output.scale_chart(doc, stem.with_suffix(".png"))],
    )


def cmd_compare(args: argparse.Namespace, argv: Sequence[str], single: bool) -> int:
    specs = [args.target] if single else parse_targets(args.targets)
    if single:
        parse_targets(args.target)
    names = [target_name(s) for s in specs]
    rounds = 1 if single else args.rounds
    if rounds < 1:
        raise ValueError("--rounds: at least 1")
    scenario_names = _scenarios(args.scenarios)
    params = _params(args)
    baseline = None if single else args.baseline
    started = datetime.now(UTC)
    machine = machine_info()
    progress = Progress()
    progress(
        f"{'http' if single else 'compare'}: {len(scenario_names)} scenarios x {len(names)} "
        f"targets x {rounds} rounds; machine {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"load {machine['loadavg_at_start']}"
    )
    raw = cmp.run_comparison(specs, scenario_names, rounds, params, progress)
    summary = cmp.summarize(raw)
    doc = output.document(
        "http" if single else "compare",
        started,
        machine,
        output.command_line(argv),
        {**raw, "baseline": baseline, "summary": summary},
        args.quick,
    )
    stem = args.out / f"{'http' if single else 'compare'}_{output.utc_stamp(started)}"
    charts = output.compare_charts(doc, stem)
    markdown = output.compare_markdown(doc, baseline, charts)
    json_path = output.write_json(stem.with_suffix(".json"), doc)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    paths = [json_path, stem.with_suffix(".md"), *charts]
    if not single and args.write_results is not None:
        paths.append(output.write_results_md(markdown, charts, json_path, args.write_results))
    print("results: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    flagged = [f for by in summary.values() for s in by.values() for f in s.get("flags", [])]
    if flagged:
        print(
            f"WARNING: {len(flagged)} noise flag(s); see the 'Noise flags' section", file=sys.stderr
        )
    return 0


def _write(
    out: Path, name: str, started: datetime, doc: dict[str, Any], markdown: str, charts: list[Any]
) -> int:
    stem = out / f"{name}_{output.utc_stamp(started)}"
    paths = [output.write_json(stem.with_suffix(".json"), doc)]
    stem.with_suffix(".md").write_text(markdown)
    paths.append(stem.with_suffix(".md"))
    paths += [make(stem) for make in charts]
    print(markdown)
    print("results: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def cmd_synapse(args: argparse.Namespace) -> int:
    from benchmarks import synapse

    if args.action == "install":
        python = synapse.install(postgres=args.postgres)
        print(f"matrix-synapse {synapse.installed_version(python.parent.parent)} at {python}")
        return 0
    if args.dir is None:
        raise ValueError("--dir is needed")
    data_dir: Path = args.dir.resolve()
    if args.action == "config":
        path = synapse.write_config(data_dir, port=args.port, database=args.database)
        print(path)
        return 0
    if args.action == "start":
        python = synapse.install(postgres=args.database != "sqlite")
        config = data_dir / "homeserver.yaml"
        if not config.exists():
            synapse.write_config(data_dir, port=args.port, database=args.database)
        server = synapse.SynapseServer(python, config, args.port)
        server.start()
        (data_dir / PID_FILE).write_text(f"{server.pid}\n")
        print(f"synapse running, pid {server.pid}, http://127.0.0.1:{args.port}")
        return 0
    pid_file = data_dir / PID_FILE
    if not pid_file.exists():
        print(f"no {pid_file}: not running?", file=sys.stderr)
        return 1
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"synapse pid {pid} was not running", file=sys.stderr)
    else:
        print(f"sent SIGTERM to synapse pid {pid}")
    pid_file.unlink()
    return 0


def cmd_readme_table(args: argparse.Namespace) -> int:
    print(output.readme_table(args.results.read_text()), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)

    def body() -> int:
        if getattr(args, "wait_quiet", 0) > 0:
            wait_for_quiet(args.wait_quiet)
        if args.command == "store":
            return cmd_store(args, argv)
        if args.command == "scale":
            return cmd_scale(args, argv)
        if args.command in ("http", "compare"):
            return cmd_compare(args, argv, single=args.command == "http")
        if args.command == "synapse":
            return cmd_synapse(args)
        return cmd_readme_table(args)

    return run_main("bench", body, (ValueError, OSError, RuntimeError))
