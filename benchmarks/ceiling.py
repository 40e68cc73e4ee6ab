"""The framework ceiling: bare Quart-Trio routes that return a fixed JSON object.

Served exactly like the homeserver: its Hypercorn trio worker (`homeserver.http_worker`)
with `homeserver.server.hypercorn_config` and the `homeserver.asgi.HomeserverASGI`
wrapper, so the only difference a benchmark sees is the work the homeserver's routes
do. It answers `GET /_matrix/client/versions` with the homeserver's bytes, encoded
once (so the `versions` scenario runs against it unchanged), and `GET /trivial`.

    python -m benchmarks.ceiling --port 8010 [--unwrapped]

`--unwrapped` serves the bare Quart-Trio app (no HomeserverASGI, which leaks
connections: see DESIGN.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from collections.abc import Sequence
from typing import Any, cast

import trio
from quart import Response
from quart_trio import QuartTrio

from homeserver.api.versions import SPEC_VERSIONS
from homeserver.asgi import ASGIApp, HomeserverASGI
from homeserver.config import Config
from homeserver.http_worker import serve as serve_connections
from homeserver.server import hypercorn_config

log = logging.getLogger("benchmarks.ceiling")

TRIVIAL_PATH = "/trivial"
VERSIONS_PATH = "/_matrix/client/versions"
# The same bytes as the homeserver's answer, encoded once: nothing per request.
VERSIONS_BODY = json.dumps({"versions": SPEC_VERSIONS, "unstable_features": {}}).encode()


def create_app() -> QuartTrio:
    app = QuartTrio(__name__)

    @app.route(TRIVIAL_PATH, methods=["GET"])
    async def trivial() -> dict[str, object]:
        """GET /trivial"""
        return {"ok": True, "server": "trivial"}

    @app.route(VERSIONS_PATH, methods=["GET"])
    async def versions() -> Response:
        """GET /_matrix/client/versions"""
        return Response(VERSIONS_BODY, content_type="application/json")

    return app


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def serve(port: int, unwrapped: bool = False) -> None:
    quart_app = create_app()
    app: Any = quart_app if unwrapped else HomeserverASGI(cast(ASGIApp, quart_app))
    config = Config(port=port)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda *, task_status: serve_connections(
                app,
                hypercorn_config(config),
                shutdown_trigger=_until_signal,
                task_status=task_status,
            )
        )
        log.info(
            "ceiling app listening on %s (%s)",
            ", ".join(binds),
            "unwrapped" if unwrapped else "HomeserverASGI",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--unwrapped", action="store_true", help="serve without HomeserverASGI (leaks sockets)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    trio.run(serve, args.port, args.unwrapped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
