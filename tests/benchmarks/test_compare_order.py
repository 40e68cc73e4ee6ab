"""`compare` interleaves its targets: per scenario, A B C in every round."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import compare
from benchmarks.machine import Progress
from benchmarks.scenarios import core as sc
from benchmarks.targets import Target

pytestmark = pytest.mark.bench_smoke


def test_schedule_is_a_b_a_b_per_scenario() -> None:
    assert compare.schedule(["s1", "s2"], ["A", "B"], 3) == [
        ("s1", 0, "A"),
        ("s1", 0, "B"),
        ("s1", 1, "A"),
        ("s1", 1, "B"),
        ("s1", 2, "A"),
        ("s1", 2, "B"),
        ("s2", 0, "A"),
        ("s2", 0, "B"),
        ("s2", 1, "A"),
        ("s2", 1, "B"),
        ("s2", 2, "A"),
        ("s2", 2, "B"),
    ]


def test_run_comparison_measures_in_the_stated_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    @contextlib.contextmanager
    def fake_launch(spec: str, workdir: Path) -> Iterator[Target]:
        yield Target(spec, "synapse", "127.0.0.1", 1)

    async def fake_setup(scenario: str, target: Target, params: sc.Params) -> sc.Fixture:
        return sc.Fixture([], "!room:x", sessions=True)

    calls: list[tuple[str, str]] = []

    def fake_measure(
        scenario: str, target: Target, fixture: sc.Fixture, params: sc.Params, rounds: int
    ) -> dict[str, Any]:
        calls.append((scenario, target.name))
        return {"rps": 1.0, "p50_ms": 1.0, "p99_ms": 2.0, "cpu": {}, "flags": []}

    monkeypatch.setattr(compare, "launch", fake_launch)
    monkeypatch.setattr(sc, "setup", fake_setup)
    raw = compare.run_comparison(
        ["A", "B", "C"],
        ["whoami", "send"],
        3,
        sc.Params.quick(),
        Progress(enabled=False),
        tmp_path,
        measure=fake_measure,
    )
    expected = [(s, t) for s in ("whoami", "send") for _ in range(3) for t in ("A", "B", "C")]
    assert calls == expected
    assert [tuple(step) for step in raw["order"]] == [
        (s, r, t) for s in ("whoami", "send") for r in range(3) for t in ("A", "B", "C")
    ]


def test_wake_rounds_are_split_over_the_comparison_rounds() -> None:
    params = sc.Params()
    assert compare.wake_rounds_per_round("wake_typing", params, 3) == 17
    assert compare.wake_rounds_per_round("fanout_presence", params, 3) == 7
    assert compare.wake_rounds_per_round("wake_message", params, 1) == 50


def test_speed_ratio_is_above_one_when_better() -> None:
    assert compare.speed_ratio("whoami", 200.0, 100.0) == 2.0
    assert compare.speed_ratio("wake_typing", 5.0, 10.0) == 2.0
    assert compare.speed_ratio("chat", 50.0, 100.0) == 0.5
    assert compare.speed_ratio("whoami", None, 100.0) is None
