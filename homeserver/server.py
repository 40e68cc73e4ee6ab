"""The composition root: open storage, build the engine and app, serve with Hypercorn."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import cast

import trio
from hypercorn.config import Config as HypercornConfig

from backends import open_storage
from homeserver.app import create_app
from homeserver.asgi import ASGIApp, HomeserverASGI
from homeserver.config import Config
from homeserver.engine import Engine
from homeserver.fastpath import FastPath
from homeserver.heap import freeze_startup_heap
from homeserver.http_worker import serve as serve_connections

log = logging.getLogger("homeserver")


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    hc.keep_alive_timeout = config.keep_alive_timeout_s
    hc.accesslog = None
    # Hypercorn announces "Running on ..." itself at INFO; our own line says more.
    error_log = logging.getLogger("hypercorn.error")
    error_log.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    hc.errorlog = error_log
    hc.include_server_header = False
    # Bodies past the limit are refused by the app with M_TOO_LARGE; this only bounds
    # what Hypercorn buffers.
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            return


async def serve(
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    freeze_heap: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until `shutdown_trigger` returns (default: SIGINT or SIGTERM).

    Reports the bound addresses through `task_status` once it listens. With
    `freeze_heap` (the CLI's own process), what exists once it listens is exempted from
    the garbage collector's full passes (`homeserver.heap`).
    """
    async with open_storage(
        config.storage, migrate=config.migrate_on_start, timeouts=config.storage_timeouts
    ) as storage:
        for warning in storage.warnings:
            log.warning("%s", warning)
        engine = Engine(config, storage)
        # The hot routes are served by the fast path, the rest by Quart (same logic).
        app = HomeserverASGI(FastPath(engine, cast(ASGIApp, create_app(engine))))
        http_config = hypercorn_config(config)
        async with trio.open_nursery() as nursery:

            async def until_shutdown() -> None:
                await (shutdown_trigger or _until_signal)()
                # Told while connections are still open, before Hypercorn drains them.
                await engine.event_sources.server_state("draining")
                app.drain(http_config.graceful_timeout)

            async def serve_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve_connections(
                    app,
                    http_config,
                    shutdown_trigger=until_shutdown,
                    task_status=task_status,
                )
                # HTTP has drained: stop the engine's loops too.
                nursery.cancel_scope.cancel()

            await nursery.start(engine.run)
            await engine.event_sources.server_state("starting")
            binds: list[str] = await nursery.start(serve_http)
            await engine.event_sources.server_state("running")
            log.info(
                "homeserver listening on %s (server_name=%s, storage=%s)",
                ", ".join(binds),
                config.server_name,
                storage.description,
            )
            if freeze_heap:
                log.debug("froze %d startup objects", freeze_startup_heap())
            task_status.started(binds)
