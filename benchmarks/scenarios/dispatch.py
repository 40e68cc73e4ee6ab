"""`measure()`: one round of any scenario, by its kind."""

from __future__ import annotations

from typing import Any

from benchmarks.scenarios.chat import measure_chat
from benchmarks.scenarios.core import Fixture, Params, kind_of
from benchmarks.scenarios.throughput import measure_throughput
from benchmarks.scenarios.wake import measure_wake
from benchmarks.targets import Target


def measure(
    scenario: str, target: Target, fixture: Fixture, params: Params, rounds: int = 0
) -> dict[str, Any]:
    kind = kind_of(scenario)
    if kind == "throughput":
        return measure_throughput(scenario, target, fixture, params)
    if kind == "wake":
        default = params.fanout_rounds if scenario == "fanout_presence" else params.wake_rounds
        return measure_wake(scenario, target, fixture, params, rounds or default)
    return measure_chat(target, fixture, params)
