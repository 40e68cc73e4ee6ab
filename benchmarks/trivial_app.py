"""The baseline for `http_bench`: one Quart-Trio GET route returning a small JSON object.

Served exactly like the homeserver: Hypercorn's trio worker with
`homeserver.server.hypercorn_config` and the `homeserver.asgi.HomeserverASGI` wrapper, so
the only difference a benchmark sees is the work the homeserver's routes do.

    python -m benchmarks.trivial_app --port 8010 [--unwrapped]

`--unwrapped` serves the bare Quart-Trio app (no HomeserverASGI): the connection leak in
DESIGN.md comes back, which shows that http_bench's socket check catches it.
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from typing import Any, cast

import trio
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from homeserver.asgi import ASGIApp, HomeserverASGI
from homeserver.config import Config
from homeserver.server import hypercorn_config

log = logging.getLogger("benchmarks.trivial_app")

TRIVIAL_PATH = "/trivial"


def create_app() -> QuartTrio:
    app = QuartTrio(__name__)

    @app.route(TRIVIAL_PATH, methods=["GET"])
    async def trivial() -> dict[str, object]:
        """GET /trivial"""
        return {"ok": True, "server": "trivial"}

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
            lambda *, task_status: hypercorn_serve(
                app,
                hypercorn_config(config),
                shutdown_trigger=_until_signal,
                task_status=task_status,
            )
        )
        log.info(
            "trivial app listening on %s (%s)",
            ", ".join(binds),
            "unwrapped" if unwrapped else "HomeserverASGI",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trivial_app")
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
