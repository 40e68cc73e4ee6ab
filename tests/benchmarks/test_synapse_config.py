"""The Synapse helper's generated config (Synapse itself is not installed here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.synapse import SYNAPSE_VERSION, synapse_config, write_config
from benchmarks.synapse.helper import RATE_LIMITS, default_home

pytestmark = pytest.mark.bench_smoke


def test_config_listens_on_loopback_only_with_the_client_api(tmp_path: Path) -> None:
    config = synapse_config(tmp_path, port=18008)
    [listener] = config["listeners"]
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert listener["port"] == 18008 and listener["tls"] is False
    assert [r["names"] for r in listener["resources"]] == [["client"]]
    assert config["database"] == {
        "name": "sqlite3",
        "args": {"database": str(tmp_path / "homeserver.db")},
    }


def test_config_opens_registration_and_turns_presence_on(tmp_path: Path) -> None:
    config = synapse_config(tmp_path, port=1)
    assert config["enable_registration"] is True
    assert config["enable_registration_without_verification"] is True
    assert config["presence"] == {"enabled": True}
    assert config["bcrypt_rounds"] <= 6
    assert config["report_stats"] is False and config["trusted_key_servers"] == []


def test_every_rate_limit_is_raised(tmp_path: Path) -> None:
    config = synapse_config(tmp_path, port=1)
    for name in ("rc_message", "rc_presence", "rc_login", "rc_joins", "rc_registration"):
        assert name in config
    for name, value in RATE_LIMITS.items():
        assert config[name] == value
        leaves = [value] if "per_second" in value else list(value.values())
        for leaf in leaves:
            if isinstance(leaf, dict) and "per_second" in leaf:
                assert leaf["per_second"] >= 1e5 and leaf["burst_count"] >= 1e5, name


def test_postgresql_database(tmp_path: Path) -> None:
    config = synapse_config(tmp_path, port=1, database="postgresql://bob:pw@127.0.0.1:5432/syn")
    assert config["database"]["name"] == "psycopg2"
    args = config["database"]["args"]
    assert (args["user"], args["password"], args["dbname"], args["port"]) == (
        "bob",
        "pw",
        "syn",
        5432,
    )
    with pytest.raises(ValueError):
        synapse_config(tmp_path, port=1, database="mysql://x")


def test_write_config_writes_json_yaml_and_a_warning_log_config(tmp_path: Path) -> None:
    path = write_config(tmp_path / "syn", port=18008)
    config = json.loads(path.read_text())
    assert config["listeners"][0]["port"] == 18008
    log_config = json.loads(Path(config["log_config"]).read_text())
    assert log_config["root"]["level"] == "WARNING"
    assert (tmp_path / "syn" / "media_store").is_dir()


def test_version_is_pinned() -> None:
    assert SYNAPSE_VERSION == "1.163.2"
    assert default_home().name == f"synapse-{SYNAPSE_VERSION}"
