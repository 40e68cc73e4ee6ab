"""`homeserver serve`: the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from homeserver.config import Config, ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the homeserver")
    serve.add_argument("--config", metavar="FILE", help="TOML config file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (default 8008)")
    serve.add_argument("--server-name", dest="server_name", help="server name (default localhost)")
    serve.add_argument("--storage", help="storage URL (default memory://)")
    serve.add_argument(
        "--registration",
        choices=["open", "disabled"],
        help="whether anyone may register (default open)",
    )
    return parser


def build_config(args: argparse.Namespace) -> Config:
    overrides = {
        "host": args.host,
        "port": args.port,
        "server_name": args.server_name,
        "storage": args.storage,
        "registration": args.registration,
    }
    return load_config(args.config, overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"homeserver: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from homeserver.server import serve

    try:
        trio.run(serve, config)
    except OSError as exc:
        print(f"homeserver: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
