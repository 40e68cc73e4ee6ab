"""Every sub-command of `python -m benchmarks`, briefly, against the memory backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import scenarios as sc
from benchmarks.cli import main
from homeserver.cli import main as homeserver_main

pytestmark = pytest.mark.bench_smoke

MACHINE_KEYS = {"cpus", "cpu_model", "python", "platform", "packages", "loadavg_at_start"}
CPU_KEYS = {"wall_s", "server", "services", "loadgen", "other", "idle_targets", "server_rss_mib"}
SMALL = [
    "--quick",
    "--connections",
    "2",
    "--duration",
    "0.3",
    "--warmup",
    "0",
    "--wake-rounds",
    "2",
    "--fanout-listeners",
    "3",
    "--fanout-rounds",
    "2",
    "--chat-duration",
    "0.5",
]


def only(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, (pattern, [p.name for p in directory.iterdir()])
    return found[0]


def load(directory: Path, prefix: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(only(directory, f"{prefix}_*.json").read_text())
    assert doc["schema"] == 1
    assert doc["benchmark"] == prefix
    assert set(doc["machine"]) >= MACHINE_KEYS
    assert doc["machine"]["cpus"] >= 1
    assert doc["command"].startswith("python -m benchmarks ")
    assert only(directory, f"{prefix}_*.md").read_text().strip()
    return doc


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_store_writes_json_table_and_chart(tmp_path: Path) -> None:
    argv = ["store", "--quick", "--backends", "memory", "--seconds", "0.01"]
    assert main([*argv, "--max-ops", "20", "--out", str(tmp_path)]) == 0
    doc = load(tmp_path, "store")
    ops = {(s["op"], s["concurrency"]) for s in doc["results"]["memory"]}
    assert ops == {(op, level) for op in OPS for level in (1, 16)}
    for stats in doc["results"]["memory"]:
        assert stats["ops"] > 0 and stats["ops_per_s"] > 0 and stats["p99_us"] >= stats["p50_us"]
    assert_png(only(tmp_path, "store_*.png"))


OPS = (
    "session_start",
    "session_touch",
    "session_end",
    "presence_set",
    "presence_get",
    "typing_set",
    "typing_expire",
    "token_lookup",
    "event_append",
    "sync_read",
    "membership_check",
    "invite_check",
)


def test_scale_writes_json_table_and_chart(tmp_path: Path) -> None:
    argv = ["scale", "--quick", "--backends", "memory", "--sizes", "500,1000"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    doc = load(tmp_path, "scale")
    sizes = doc["results"]["memory"]
    assert [r["size"] for r in sizes] == [500, 1000]
    for r in sizes:
        assert r["reached"] and r["swept"] == r["inserted"] == r["size"]
        assert {"bytes_per_session", "touch_per_s", "idle_tick_p50_us", "sweep_s"} <= set(r)
    assert_png(only(tmp_path, "scale_*.png"))


def test_http_runs_every_scenario_against_memory(tmp_path: Path) -> None:
    assert main(["http", "--target", "ours:memory", *SMALL, "--out", str(tmp_path)]) == 0
    doc = load(tmp_path, "http")
    assert doc["targets"] == ["memory"]
    assert set(doc["summary"]) == set(sc.SCENARIOS)
    for scenario in sc.SCENARIOS:
        rounds = doc["raw"][scenario]["memory"]
        assert len(rounds) == 1, scenario
        figures = rounds[0]
        assert set(figures["cpu"]) >= CPU_KEYS, scenario
        assert isinstance(figures["flags"], list)
        kind = sc.kind_of(scenario)
        if kind == "throughput":
            assert figures["requests"] > 0 and figures["errors"] == {}, (scenario, figures)
        elif kind == "wake":
            assert figures["rounds_run"] == 2 and figures["errors"] == {}, (scenario, figures)
            assert figures["listener_from_start"]["n"] == 2 * figures["listeners"]
            assert figures["all_seen"]["rounds_all_seen"] == 2
        else:
            assert figures["messages_per_s"] > 0 and figures["delivery"]["n"] > 0
    assert doc["setup_s"]["memory"].keys() == {"throughput", "wake", "fanout_presence", "chat"}
    assert_png(only(tmp_path, "http_*_bars.png"))
    assert_png(only(tmp_path, "http_*_wake.png"))


def test_compare_writes_ratios_results_and_readme_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["compare", "--targets", "ours:memory,ceiling", "--baseline", "memory"]
    argv += ["--rounds", "2", "--scenarios", "versions,whoami,wake_typing", *SMALL]
    assert main([*argv, "--out", str(tmp_path), "--write-results", str(results)]) == 0
    doc = load(tmp_path, "compare")
    assert doc["targets"] == ["memory", "ceiling"]
    assert doc["order"] == [
        ["versions", 0, "memory"],
        ["versions", 0, "ceiling"],
        ["versions", 1, "memory"],
        ["versions", 1, "ceiling"],
        ["whoami", 0, "memory"],
        ["whoami", 1, "memory"],
        ["wake_typing", 0, "memory"],
        ["wake_typing", 1, "memory"],
    ]
    assert "ceiling" in doc["skipped"]["whoami"]
    assert len(doc["raw"]["versions"]["ceiling"]) == 2
    text = results.read_text()
    assert "## Headline" in text and "(1.00)" in text
    assert_png(only(tmp_path, "compare_*_bars.png"))
    assert "compare_" in text and ".png)" in text
    capsys.readouterr()
    assert main(["readme-table", "--results", str(results)]) == 0
    table = capsys.readouterr().out
    assert "| scenario | memory |" in table
    assert "versions (req/s)" in table
    assert "wake_typing all seen (p50 ms, last listener)" in table
    # The same through the server's command line.
    assert homeserver_main(["bench", "readme-table", "--results", str(results)]) == 0
    assert capsys.readouterr().out == table


def test_synapse_config_sub_command_writes_a_config(tmp_path: Path) -> None:
    assert main(["synapse", "config", "--dir", str(tmp_path), "--port", "18123"]) == 0
    config = json.loads((tmp_path / "homeserver.yaml").read_text())
    assert config["listeners"][0]["port"] == 18123
    assert config["listeners"][0]["bind_addresses"] == ["127.0.0.1"]
