"""`bench compare` / `bench http`: the HTTP scenarios against several targets, interleaved.

For each scenario, round after round, every target in turn (A B C, A B C, ...), so
that drift of the machine over the run touches every target alike. Every target is
started first and runs for the whole comparison (an idle target costs ~0 CPU; the
"other" CPU column shows it). Users and rooms are set up once per target and scenario
group, before the first measured round, and reported apart. A wake scenario's rounds
are split over the comparison rounds (50 wake rounds over 3 rounds: 17 each).
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio

from benchmarks.machine import Progress
from benchmarks.report import percentile
from benchmarks.scenarios import core as sc
from benchmarks.scenarios import dispatch
from benchmarks.targets import Target, launch, target_name


def schedule(
    scenarios: Sequence[str], targets: Sequence[str], rounds: int
) -> list[tuple[str, int, str]]:
    """(scenario, round, target) in run order: per scenario, A B C in every round."""
    return [(s, r, t) for s in scenarios for r in range(rounds) for t in targets]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage-collector pass in the load generator during one measurement.

    A full pass over this process's heap took 60-80 ms (gc.callbacks, 2026-12-08), and
    a pause of the load generator is counted as latency of whichever target it is
    measuring. Measurements are bounded in time; what cycles they leave is collected
    right after."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def wake_rounds_per_round(scenario: str, params: sc.Params, rounds: int) -> int:
    total = params.fanout_rounds if scenario == "fanout_presence" else params.wake_rounds
    return max(1, math.ceil(total / rounds))


def run_comparison(
    specs: Sequence[str],
    scenario_names: Sequence[str],
    rounds: int,
    params: sc.Params,
    progress: Progress,
    workdir: Path | None = None,
    measure: Callable[..., dict[str, Any]] = dispatch.measure,
) -> dict[str, Any]:
    """Run the schedule; returns the raw figures (per round) and what was skipped."""
    names = [target_name(s) for s in specs]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {n: [] for n in names} for s in scenario_names
    }
    skipped: dict[str, dict[str, str]] = {s: {} for s in scenario_names}
    setup_s: dict[str, dict[str, float]] = {n: {} for n in names}
    settings: dict[str, dict[str, Any]] = {}
    order: list[list[Any]] = []
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_")))
        targets: dict[str, Target] = {}
        for spec, name in zip(specs, names, strict=True):
            progress(f"starting target {name} ({spec})")
            targets[name] = stack.enter_context(launch(spec, workdir))
            settings[name] = {"spec": spec, "kind": targets[name].kind, **targets[name].settings}
        for target in targets.values():
            target.idle_pids = [
                pid for other in targets.values() if other is not target for pid in other.pids
            ]
        fixtures: dict[tuple[str, str], sc.Fixture | None] = {}
        dead: dict[str, str] = {}
        plan = schedule(scenario_names, names, rounds)
        for step, (scenario, round_index, name) in enumerate(plan, 1):
            target = targets[name]
            where = f"[{step}/{len(plan)}] {scenario} round {round_index + 1}/{rounds} {name}"
            if name in dead:
                skipped[scenario].setdefault(name, dead[name])
                continue
            key = (name, sc.fixture_key(scenario))
            if key not in fixtures:
                reason = sc.unsupported(scenario, target, None)
                if reason is None:
                    progress(f"{where}: setting up users and rooms")
                    built: sc.Fixture | None = None
                    try:
                        built = trio.run(sc.setup, scenario, target, params)
                    except Exception as exc:  # a target that refuses setup: reported
                        skipped[scenario][name] = f"setup failed: {exc!r}"
                        progress(f"{where}: setup failed: {exc!r}")
                    else:
                        setup_s[name][key[1]] = built.setup_s
                        progress(f"{where}: setup took {built.setup_s:.1f} s (not timed)")
                    fixtures[key] = built
                else:
                    fixtures[key] = None
            fixture = fixtures[key]
            reason = sc.unsupported(scenario, target, fixture)
            if fixture is None and reason is None:
                reason = skipped[scenario].get(name, "setup failed")
            if reason is not None:
                skipped[scenario].setdefault(name, reason)
                if round_index == 0:
                    progress(f"{where}: skipped ({reason})")
                continue
            assert fixture is not None
            order.append([scenario, round_index, name])
            try:
                with collector_paused():
                    figures = measure(
                        scenario,
                        target,
                        fixture,
                        params,
                        wake_rounds_per_round(scenario, params, rounds),
                    )
            except Exception as exc:
                alive = target.alive()
                progress(f"{where}: FAILED: {exc!r}")
                traceback.print_exc()
                if not alive:
                    dead[name] = f"target died: {exc!r}"
                skipped[scenario].setdefault(name, f"failed: {exc!r}")
                continue
            figures["round"] = round_index
            raw[scenario][name].append(figures)
            progress(f"{where}: {describe(scenario, figures)}")
    return {
        "targets": names,
        "settings": settings,
        "setup_s": setup_s,
        "order": order,
        "raw": raw,
        "skipped": skipped,
        "params": asdict(params),
        "rounds": rounds,
    }


def describe(scenario: str, f: dict[str, Any]) -> str:
    kind = sc.kind_of(scenario)
    cpu = f.get("cpu", {})
    tail = (
        f" | server {cpu.get('server', 0):.2f} db {cpu.get('services', 0):.2f} "
        f"gen {cpu.get('loadgen', 0):.2f} other {cpu.get('other', 0):.2f} cores"
    )
    flags = f" | FLAG: {'; '.join(f['flags'])}" if f.get("flags") else ""
    errors = f" | errors {f['errors']}" if f.get("errors") else ""
    if kind == "throughput":
        head = f"{f['rps']:,.0f} req/s p50 {f['p50_ms']:.1f} ms p99 {f['p99_ms']:.1f} ms"
    elif kind == "wake":
        ls, al = f["listener_from_start"], f["all_seen"]
        head = (
            f"listeners p50 {ls['p50_ms']:.1f} p99 {ls['p99_ms']:.1f} ms, all seen p50 "
            f"{al['p50_ms']:.1f} ms ({f['rounds_run']} rounds)"
        )
    else:
        d = f["delivery"]
        head = (
            f"{f['deliveries_per_s']:,.0f} deliveries/s, {f['rps']:,.0f} req/s, delivery p50 "
            f"{d['p50_ms']:.1f} p99 {d['p99_ms']:.1f} ms"
        )
    return head + tail + errors + flags


# ---------------------------------------------------------------------------- aggregation


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _pooled(rounds: Sequence[dict[str, Any]], key: str) -> dict[str, float | int]:
    values = sorted(v for r in rounds for p in r["per_round"] for v in p[key])
    return sc._ms_stats(values)


def _per_listener(rounds: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Each listener's own p50 and p99 over the rounds; then the median and the worst
    listener of those."""
    by_listener: dict[int, list[float]] = {}
    for r in rounds:
        for p in r["per_round"]:
            for index, value in zip(p["listeners"], p["from_start_ms"], strict=True):
                by_listener.setdefault(index, []).append(value)
    p50s = sorted(percentile(sorted(v), 50) for v in by_listener.values())
    p99s = sorted(percentile(sorted(v), 99) for v in by_listener.values())
    if not p50s:
        return {}
    return {
        "median_p50_ms": round(statistics.median(p50s), 3),
        "worst_p50_ms": round(p50s[-1], 3),
        "median_p99_ms": round(statistics.median(p99s), 3),
        "worst_p99_ms": round(p99s[-1], 3),
    }


def summarize(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario and target: medians over rounds (wake latencies: pooled over every
    listener of every round), CPU medians, error totals, flags."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_target in raw["raw"].items():
        kind = sc.kind_of(scenario)
        out[scenario] = {}
        for name, rounds in by_target.items():
            if not rounds:
                continue
            summary: dict[str, Any] = {"rounds": len(rounds)}
            if kind == "throughput":
                for field in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_request"):
                    summary[field] = _median([r.get(field) for r in rounds])
                summary["rps_per_round"] = [r["rps"] for r in rounds]
            elif kind == "wake":
                summary["listener_from_start"] = _pooled(rounds, "from_start_ms")
                summary["listener_from_answer"] = _pooled(rounds, "from_answer_ms")
                all_seen = sorted(
                    max(p["from_start_ms"])
                    for r in rounds
                    for p in r["per_round"]
                    if p["missing"] == 0 and p["from_start_ms"]
                )
                summary["all_seen"] = sc._ms_stats(all_seen)
                summary["per_listener"] = _per_listener(rounds)
                summary["writer"] = sc._ms_stats(
                    sorted(p["writer_ms"] for r in rounds for p in r["per_round"])
                )
                summary["p50_ms"] = summary["listener_from_start"]["p50_ms"]
                summary["all_seen_p50_ms"] = summary["all_seen"]["p50_ms"] if all_seen else None
                summary["p99_ms"] = summary["listener_from_start"]["p99_ms"]
                summary["server_cpu_ms_per_round"] = _median(
                    [r.get("server_cpu_ms_per_round") for r in rounds]
                )
            else:
                for field in ("deliveries_per_s", "messages_per_s", "rps", "delivered_fraction"):
                    summary[field] = _median([r.get(field) for r in rounds])
                summary["p50_ms"] = _median([r["delivery"]["p50_ms"] for r in rounds])
                summary["p99_ms"] = _median([r["delivery"]["p99_ms"] for r in rounds])
            for part in (
                "server",
                "services",
                "loadgen",
                "other",
                "idle_targets",
                "server_rss_mib",
            ):
                summary[f"cpu_{part}"] = _median([r["cpu"][part] for r in rounds])
            errors: dict[str, int] = {}
            for r in rounds:
                for k, v in r.get("errors", {}).items():
                    errors[k] = errors.get(k, 0) + v
            summary["errors"] = errors
            summary["flags"] = sorted({flag for r in rounds for flag in r.get("flags", [])})
            out[scenario][name] = summary
    return out


def headlines(scenario: str) -> list[tuple[str, str, str]]:
    """The rows a scenario has in the headline table: (row label, unit, summary field);
    wake scenarios have two (a listener's p50, and the round's last listener's p50)."""
    kind = sc.kind_of(scenario)
    if kind == "throughput":
        return [(scenario, "req/s", "rps")]
    if kind == "wake":
        return [
            (scenario, "listener p50 ms", "p50_ms"),
            (f"{scenario} all seen", "p50 ms, last listener", "all_seen_p50_ms"),
        ]
    return [(scenario, "deliveries/s", "deliveries_per_s")]


def headline(scenario: str, summary: dict[str, Any], field: str | None = None) -> float | None:
    value = summary.get(field or headlines(scenario)[0][2])
    return float(value) if value is not None else None


HIGHER_IS_BETTER = {"throughput": True, "wake": False, "chat": True}


def speed_ratio(scenario: str, value: float | None, base: float | None) -> float | None:
    """How many times better than the baseline (> 1: better): throughput / baseline's,
    or baseline's latency / latency."""
    if value is None or base is None or value <= 0 or base <= 0:
        return None
    higher = HIGHER_IS_BETTER[sc.kind_of(scenario)]
    return round(value / base if higher else base / value, 2)
