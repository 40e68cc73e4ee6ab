"""A TCP proxy a test can cut, stall and restore, to simulate a store going away."""

from __future__ import annotations

import trio


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target.

    `cut()` drops every connection and refuses new ones (accepted, then closed at once):
    a store that went away. `stall()` stops forwarding in both directions without
    closing anything, and new connections are accepted but not forwarded: a network
    partition as the client sees it (its kernel still ACKs, nothing ever answers, no
    reset). `restore()` forwards again: stalled connections resume where they stopped.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._open = True
        self._flowing = trio.Event()
        self._flowing.set()
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    def cut(self) -> None:
        self._open = False
        for scope in list(self._scopes):
            scope.cancel()
        self._flowing.set()

    def stall(self) -> None:
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def restore(self) -> None:
        self._open = True
        self._flowing.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    await self._flowing.wait()
                    if not self._open:
                        return
                    try:
                        upstream = await trio.open_tcp_stream(*self.target)
                    except OSError:
                        return
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, nursery)
                        nursery.start_soon(self._pump, upstream, client, nursery)
                finally:
                    self._scopes.discard(scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, nursery: trio.Nursery
    ) -> None:
        try:
            while True:
                data = await source.receive_some(65536)
                # Stalled: hold the data, or the end of the stream, and read no more
                # until restored (a partition passes no FIN either).
                await self._flowing.wait()
                if not data:
                    break
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel()
