"""Install, configure, start and stop Synapse for benchmarks (127.0.0.1 only).

The config is written as JSON, which is valid YAML, so generating it needs neither
Synapse nor PyYAML (the smoke tests check it without installing Synapse).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.procs import ProcessError, ServerProcess, port_open

SYNAPSE_VERSION = "1.163.2"
# Registration and login hash passwords with bcrypt at this cost (Synapse's default is
# 12: ~4 registrations/s on 2 cores). It only affects setup and the `login` scenario.
BENCH_BCRYPT_ROUNDS = 4
# Every rate limit Synapse has, raised so that it measures work rather than throttling.
_UNLIMITED = {"per_second": 1_000_000, "burst_count": 1_000_000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_send_to_device": _UNLIMITED,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 1_000_000,
        "sleep_delay": 0,
        "reject_limit": 1_000_000,
        "concurrent": 1_000_000,
    },
}


def default_home(version: str = SYNAPSE_VERSION) -> Path:
    """Where the venv and the servers' data live (outside the repository)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "trio-homeserver-bench" / f"synapse-{version}"


def venv_python(home: Path) -> Path:
    return home / "bin" / "python"


def installed_version(home: Path) -> str | None:
    python = venv_python(home)
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def install(
    home: Path | None = None, version: str = SYNAPSE_VERSION, *, postgres: bool = False
) -> Path:
    """A venv at `home` with matrix-synapse==version (and psycopg2 for PostgreSQL);
    installed from PyPI unless it is already there. Returns the venv's python."""
    home = home or default_home(version)
    if installed_version(home) != version or (postgres and not _has_psycopg2(home)):
        print(f"installing matrix-synapse {version} into {home} ...", file=sys.stderr)
        if not venv_python(home).exists():
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=300)
        spec = f"matrix-synapse[postgres]=={version}" if postgres else f"matrix-synapse=={version}"
        subprocess.run(
            [str(venv_python(home)), "-m", "pip", "install", "-q", spec],
            check=True,
            timeout=1800,
        )
        found = installed_version(home)
        if found != version:
            raise ProcessError(f"installed synapse reports version {found!r}, wanted {version}")
    return venv_python(home)


def _has_psycopg2(home: Path) -> bool:
    proc = subprocess.run(
        [str(venv_python(home)), "-c", "import psycopg2"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.returncode == 0


def synapse_config(
    data_dir: Path,
    *,
    port: int,
    server_name: str = "bench.local",
    database: str = "sqlite",
    bcrypt_rounds: int = BENCH_BCRYPT_ROUNDS,
) -> dict[str, Any]:
    """The homeserver config: a client-only HTTP listener on 127.0.0.1, SQLite (or
    `database` = a postgresql:// URL), open registration without verification,
    presence on, every rc_* limit raised, root log level WARNING, no metrics, no stats."""
    if database == "sqlite":
        db: dict[str, Any] = {
            "name": "sqlite3",
            "args": {"database": str(data_dir / "homeserver.db")},
        }
    elif database.startswith("postgresql://"):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(database)
        db = {
            "name": "psycopg2",
            "args": {
                "user": unquote(parts.username or "postgres"),
                "password": unquote(parts.password or ""),
                "dbname": parts.path.lstrip("/"),
                "host": parts.hostname or "127.0.0.1",
                "port": parts.port or 5432,
                "cp_min": 5,
                "cp_max": 10,
            },
        }
    else:
        raise ValueError(f"synapse database: 'sqlite' or a postgresql:// URL, not {database!r}")
    config: dict[str, Any] = {
        "server_name": server_name,
        "pid_file": str(data_dir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": db,
        "log_config": str(data_dir / "log.config"),
        "media_store_path": str(data_dir / "media_store"),
        "signing_key_path": str(data_dir / "signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "report_stats": False,
        "enable_metrics": False,
        "url_preview_enabled": False,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "registration_shared_secret": secrets.token_urlsafe(24),
        "macaroon_secret_key": secrets.token_urlsafe(24),
        "form_secret": secrets.token_urlsafe(24),
        "bcrypt_rounds": bcrypt_rounds,
        "presence": {"enabled": True},
        "federation_domain_whitelist": [],
        "allow_public_rooms_without_auth": False,
        **RATE_LIMITS,
    }
    return config


def log_config() -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {"precise": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "precise"},
        },
        "root": {"level": "WARNING", "handlers": ["console"]},
        "disable_existing_loggers": False,
    }


def write_config(data_dir: Path, **kwargs: Any) -> Path:
    """Write homeserver.yaml and log.config (JSON, which YAML reads) into `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "media_store").mkdir(exist_ok=True)
    config = synapse_config(data_dir, **kwargs)
    path = data_dir / "homeserver.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")
    (data_dir / "log.config").write_text(json.dumps(log_config(), indent=2) + "\n")
    return path


class SynapseServer:
    """A Synapse process on 127.0.0.1:`port`, started and stopped by PID."""

    def __init__(self, python: Path, config_path: Path, port: int) -> None:
        self.python = python
        self.config_path = config_path
        self.port = port
        data_dir = config_path.parent
        env = {**os.environ, "SYNAPSE_CACHE_FACTOR": os.environ.get("SYNAPSE_CACHE_FACTOR", "0.5")}
        self.process = ServerProcess(
            "synapse",
            [str(python), "-m", "synapse.app.homeserver", "-c", str(config_path)],
            cwd=data_dir,
            env=env,
            log_path=data_dir / "synapse.log",
        )

    def generate_keys(self) -> None:
        subprocess.run(
            [
                str(self.python),
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(self.config_path),
                "--generate-keys",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        if port_open(self.port):
            raise ProcessError(f"port {self.port} is already in use")
        if not (self.config_path.parent / "signing.key").exists():
            self.generate_keys()
        self.process.start(port=self.port)
        # Listening is not ready: wait until the client API answers.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _versions_ok(self.port):
                return
            self.process.check_alive()
            time.sleep(0.2)
        raise ProcessError(f"synapse did not answer /versions:\n{self.process.log_tail()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int | None:
        proc = self.process.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode


def _versions_ok(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/_matrix/client/versions")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
