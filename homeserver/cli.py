"""The command line: `homeserver serve` runs the server, `homeserver migrate` brings a
SQL database to the current schema, `homeserver bench ...` runs the benchmarks (from a
source checkout: see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from typing import Any

import trio

from backends import StorageError, migrate_storage, redact_url
from homeserver.config import Config, ConfigError, load_config
from plugins.loader import PluginLoadError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the homeserver")
    serve.add_argument("--config", metavar="FILE", help="TOML config file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (default 8008)")
    serve.add_argument("--server-name", dest="server_name", help="server name (default localhost)")
    serve.add_argument("--storage", help="storage URL (default sqlite:///homeserver.db)")
    serve.add_argument(
        "--registration",
        choices=["open", "disabled"],
        help="whether anyone may register (default open)",
    )
    serve.add_argument(
        "--admin",
        action="append",
        metavar="USER_ID",
        help="a user who may use the admin API (repeatable; adds to the config's admins)",
    )
    migrate = sub.add_parser(
        "migrate", help="bring the SQL database to the current schema, then exit"
    )
    migrate.add_argument("--config", metavar="FILE", help="TOML config file")
    migrate.add_argument("--storage", help="storage URL (default sqlite:///homeserver.db)")
    sub.add_parser(
        "bench",
        help="benchmarks: store | http | compare | scale | synapse | readme-table "
        "(`homeserver bench --help`)",
        add_help=False,
    )
    return parser


def build_config(args: argparse.Namespace) -> Config:
    names = ("host", "port", "server_name", "storage", "registration")
    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in names}
    config = load_config(args.config, overrides=overrides)
    extra_admins = getattr(args, "admin", None)
    if extra_admins:
        admins = [*config.admins, *extra_admins]
        config = load_config(args.config, overrides={**overrides, "admins": admins})
    return config


def _fail(message: str, code: int = 1) -> int:
    print(f"homeserver: {message}", file=sys.stderr)
    return code


async def _migrate(url: str) -> str | None:
    return await migrate_storage(url)


def _bench(argv: Sequence[str]) -> int:
    """`homeserver bench ...` is `python -m benchmarks ...` (not installed with the package)."""
    from pathlib import Path

    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "benchmarks" / "cli.py").exists():
        return _fail("bench: the benchmarks live in the source checkout (benchmarks/)")
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from benchmarks.cli import main as bench_main

    return bench_main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.log_level != "debug":
        # Alembic narrates every migration step; coredis logs a traceback for every
        # failed connection attempt, which our backend already reports as one line.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("coredis").setLevel(logging.CRITICAL)
    storage = redact_url(config.storage)
    if args.command == "migrate":
        try:
            revision = trio.run(_migrate, config.storage)
        except StorageError as exc:
            return _fail(f"cannot migrate storage {storage}: {exc}")
        if revision is None:
            print(f"{storage}: this backend has no schema to migrate")
        else:
            print(f"{storage}: schema at revision {revision}")
        return 0

    from homeserver.server import serve

    try:
        trio.run(functools.partial(serve, config, freeze_heap=True))
    except PluginLoadError as exc:
        return _fail(str(exc), 2)
    except StorageError as exc:
        return _fail(f"cannot open storage {storage}: {exc}")
    except OSError as exc:
        return _fail(f"cannot start: {exc}")
    return 0
