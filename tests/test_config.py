"""Configuration (defaults < TOML file < environment < explicit overrides) and the CLI."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from backends import StorageTimeouts
from homeserver.config import Config, ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "homeserver.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- sources and precedence ----------------------------------------------------------------


def test_defaults() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.host == "127.0.0.1"
    assert config.port == 8008
    assert config.server_name == "localhost"
    assert config.storage == "sqlite:///homeserver.db"
    assert config.registration == "open"
    assert config.max_request_bytes == 1_048_576
    assert config.log_level == "info"
    assert config.default_room_version == "10"
    assert config.storage_connect_timeout_ms == 5000
    assert config.storage_timeout_ms == 5000
    assert config.request_timeout_ms == 30_000
    assert config.storage_timeouts == StorageTimeouts(connect_ms=5000, operation_ms=5000)


def test_timeouts_from_file_and_environment(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        "storage_connect_timeout_ms = 2000\nstorage_timeout_ms = 1500\nrequest_timeout_ms = 0\n",
    )
    config = load_config(path, env={"HOMESERVER_STORAGE_TIMEOUT_MS": "750"})
    assert config.storage_connect_timeout_ms == 2000
    assert config.storage_timeout_ms == 750
    assert config.request_timeout_ms == 0  # no request deadline
    # What open_storage gets.
    assert config.storage_timeouts == StorageTimeouts(connect_ms=2000, operation_ms=750)


def test_config_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_toml_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
host = "0.0.0.0"
port = 8448
server_name = "example.org"
storage = "memory://"
registration = "disabled"
max_request_bytes = 65536
keep_alive_timeout_s = 2.5
log_level = "debug"
sync_timeout_cap_ms = 60000
default_room_version = "11"
""",
    )
    config = load_config(path, env={})
    assert config == Config(
        host="0.0.0.0",
        port=8448,
        server_name="example.org",
        storage="memory://",
        registration="disabled",
        max_request_bytes=65536,
        keep_alive_timeout_s=2.5,
        log_level="debug",
        sync_timeout_cap_ms=60000,
        default_room_version="11",
    )
    # Keys the file leaves out keep their defaults.
    assert config.password_hash_time_cost == Config().password_hash_time_cost


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = 9000\nserver_name = "file.example"\n')
    config = load_config(path, env={"HOMESERVER_PORT": "9001"})
    assert config.port == 9001
    assert config.server_name == "file.example"


def test_env_values_are_parsed(tmp_path: Path) -> None:
    config = load_config(
        env={
            "HOMESERVER_PORT": "8448",
            "HOMESERVER_SERVER_NAME": "env.example",
            "HOMESERVER_KEEP_ALIVE_TIMEOUT_S": "2.5",
            "HOMESERVER_REGISTRATION": "disabled",
            "HOMESERVER_MAX_REQUEST_BYTES": "4096",
        }
    )
    assert config.port == 8448
    assert config.server_name == "env.example"
    assert config.keep_alive_timeout_s == 2.5
    assert config.registration == "disabled"
    assert config.max_request_bytes == 4096


def test_env_ignores_unrelated_variables() -> None:
    # The test suite's own HOMESERVER_TEST_* variables must not break the server.
    config = load_config(
        env={
            "HOMESERVER_TEST_POSTGRES_URL": "postgresql://x",
            "HOMESERVER_REQUIRE_SERVICES": "1",
            "PORT": "1234",
            "homeserver_port": "1234",
        }
    )
    assert config == Config()


def test_overrides_beat_env_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 9000\n")
    config = load_config(path, env={"HOMESERVER_PORT": "9001"}, overrides={"port": 9002})
    assert config.port == 9002
    # A None override (a flag not given on the command line) does not override.
    config = load_config(path, env={"HOMESERVER_PORT": "9001"}, overrides={"port": None})
    assert config.port == 9001


def test_reads_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMESERVER_SERVER_NAME", "from-environ.example")
    assert load_config().server_name == "from-environ.example"


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = 8008\nserver_nmae = "typo.example"\n')
    with pytest.raises(ConfigError, match="'server_nmae'") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match="'colour'"):
        load_config(env={}, overrides={"colour": "blue"})


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_config(missing, env={})


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = = 8008\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


BAD_VALUES: list[tuple[str, Any]] = [
    ("port", "abc"),
    ("port", 70000),
    ("port", 65536),
    ("port", -1),
    ("port", True),
    ("port", 80.5),
    ("port", ""),
    ("registration", "maybe"),
    ("registration", True),
    ("registration", "OPEN"),
    ("server_name", "bad name"),
    ("server_name", "exa_mple.org"),
    ("server_name", "example.org\n"),
    ("server_name", "example.org:port"),
    ("server_name", "a" * 231),
    ("server_name", ""),
    ("storage", "mysql://localhost/db"),
    ("storage", "memory"),
    ("storage", ""),
    ("host", ""),
    ("max_request_bytes", 100),
    ("max_request_bytes", "lots"),
    ("keep_alive_timeout_s", 0),
    ("keep_alive_timeout_s", -1),
    ("keep_alive_timeout_s", "soon"),
    ("keep_alive_timeout_s", "nan"),
    ("log_level", "loud"),
    ("password_hash_time_cost", 0),
    ("password_hash_memory_kib", 8),
    ("sync_timeout_cap_ms", -1),
    ("default_room_version", "9"),
    ("default_room_version", 10),
    ("storage_connect_timeout_ms", 0),
    ("storage_connect_timeout_ms", "soon"),
    ("storage_timeout_ms", 0),
    ("storage_timeout_ms", -5),
    ("storage_timeout_ms", 1.5),
    ("storage_timeout_ms", 600_001),
    ("request_timeout_ms", -1),
    ("request_timeout_ms", True),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(env={}, overrides={key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [("port", "abc"), ("port", "70000"), ("registration", "maybe"), ("server_name", "bad name")],
)
def test_bad_env_value_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(env={f"HOMESERVER_{key.upper()}": value})


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('port = "abc"', "port"),
        ("port = 70000", "port"),
        ('registration = "maybe"', "registration"),
        ('server_name = "bad name"', "server_name"),
        ('storage = "mysql://x"', "storage"),
        ("port = [8008]", "port"),
    ],
)
def test_bad_file_value_names_the_key(tmp_path: Path, line: str, key: str) -> None:
    path = write_toml(tmp_path, line + "\n")
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("port", 0, 0),
        ("port", 65535, 65535),
        ("port", "8448", 8448),
        ("port", 8448.0, 8448),
        ("server_name", "example.org:8448", "example.org:8448"),
        ("server_name", "[::1]:8448", "[::1]:8448"),
        ("server_name", "127.0.0.1", "127.0.0.1"),
        ("storage", "sqlite:///tmp/hs.db", "sqlite:///tmp/hs.db"),
        ("max_request_bytes", 1024, 1024),
        ("keep_alive_timeout_s", "0.5", 0.5),
        ("log_level", "warning", "warning"),
        ("storage_connect_timeout_ms", 1, 1),
        ("storage_timeout_ms", "250", 250),
        ("request_timeout_ms", 0, 0),
        ("request_timeout_ms", 3_600_000, 3_600_000),
    ],
)
def test_good_values(key: str, value: Any, expected: Any) -> None:
    config = load_config(env={}, overrides={key: value})
    assert getattr(config, key) == expected


# -- the command line ----------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """The environment without HOMESERVER_* variables, so only the flags count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESERVER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=clean_env(),
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--port", "abc"], "port"),
        (["--port", "70000"], "port"),
        (["--server-name", "bad name"], "server_name"),
        (["--storage", "mysql://x"], "storage"),
    ],
)
def test_cli_bad_flag_is_one_clear_line(args: list[str], key: str) -> None:
    result = run_cli("serve", *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"'{key}'" in lines[0]
    assert lines[0].startswith("homeserver:")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_bad_config_file_is_one_clear_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'colour = "blue"\n')
    result = run_cli("serve", "--config", str(path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'colour'" in lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.e2e
async def test_cli_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    """The README's first command: default storage is a SQLite file in the working
    directory, one line says where the server listens, Ctrl-C stops it."""
    port = free_port()
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "homeserver",
            "serve",
            "--port",
            str(port),
            "--server-name",
            "cli.example",
        ],
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert process.stderr is not None
    output = b""
    try:
        with trio.fail_after(30):
            while b"listening on" not in output:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, f"server exited before listening: {output.decode()!r}"
                output += chunk
            while not output.split(b"listening on", 1)[1].count(b"\n"):
                output += await process.stderr.receive_some(4096)
        line = next(ln for ln in output.decode().splitlines() if "listening on" in ln)
        assert f"127.0.0.1:{port}" in line
        assert "cli.example" in line
        assert "sqlite:///homeserver.db" in line
        assert (tmp_path / "homeserver.db").is_file()

        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(f"http://127.0.0.1:{port}/_matrix/client/versions")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/json"
        assert "v1.11" in reply.json()["versions"]
        assert reply.headers["access-control-allow-origin"] == "*"

        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            returncode = await process.wait()
        assert returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
        await process.stderr.aclose()
