"""The change feed: every committed change /sync reports, and every cache invalidation,
published once as a small record that the notifier and the read model consume.

A call site publishes right after the store returned (`ChangeFeed.publish`); the feed
stamps the change with its origin (the publishing process) and a sequence number,
contiguous per origin from 1, and hands it to every consumer, in order. Consumers
(`ChangeConsumer`, usually a `FeedConsumer`) never trust the stream blindly: the
sequence makes a lost change detectable, and a consumer that detects one (a jump in an
origin's sequence), or is told of one (`missed`: a reconnect, or its own failure on a
change), re-reads from the store instead (`FeedConsumer.on_gap`): the notifier counts
every user as "maybe" changed, the read model drops its caches.

`InProcessFeed` is the feed of one process: publishing delivers synchronously. A
cross-process feed (PostgreSQL LISTEN/NOTIFY, Redis pub/sub: the scale-out issue)
implements the same protocol: `publish` still delivers locally at once and queues the
change for its sender (the publisher never waits on the network); its listener hands
other origins' changes to `receive`, and calls `reset` when it reconnects (whatever
was sent meanwhile is lost: every consumer hears `missed(None)`). A transport that
echoes a process's own changes back is harmless: `receive` drops them, and a consumer
ignores a sequence number it has already seen.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from backends.records import JsonDict

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Change",
    "ChangeConsumer",
    "ChangeFeed",
    "FeedConsumer",
    "InProcessFeed",
    "Stream",
    "new_origin",
    "small",
]

log = logging.getLogger("homeserver.changefeed")

Stream = Literal["durable", "ephemeral", "none"]
STREAMS: frozenset[str] = frozenset(get_args(Stream))

# A payload rides with the change only if its JSON is at most this long (PostgreSQL's
# NOTIFY takes at most 8000 bytes; the rest of the record needs room too).
MAX_PAYLOAD_BYTES = 2048

# The kinds published today. /sync changes: "room_event" (durable; room_id; payload
# {"state": [[type, state_key], ...]} when state changed, or {"state": None} when the
# keys do not fit), "account_data" (durable; room_id; payload {"type"}), "presence"
# (ephemeral: the published presence, for its audience; durable: the store's copy,
# nobody woken; payload {"user_id"} of whose presence it is), "typing" (ephemeral;
# room_id), "server_event" (durable; recipients, or everyone). Invalidations (stream
# "none"): "token_revoked" (user_ids: the owner; payload {"device_id"}: the device's
# earlier tokens are revoked), "device_deleted" (user_ids: the owner; payload
# {"device_id"}, or None: every device of the user; its tokens and sessions are
# gone), "membership" (room_id; user_ids: whose membership of it changed).
KINDS = frozenset(
    {
        "room_event",
        "account_data",
        "presence",
        "typing",
        "server_event",
        "token_revoked",
        "device_deleted",
        "membership",
    }
)


def new_origin() -> str:
    """An id for the publishing process: host, pid and a random part (a restarted
    process, or a second engine in one process, is a new origin)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _payload_size(payload: JsonDict) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def small(payload: JsonDict, otherwise: JsonDict | None = None) -> JsonDict | None:
    """`payload` if it is small enough to ride with a change, else `otherwise`."""
    return payload if _payload_size(payload) <= MAX_PAYLOAD_BYTES else otherwise


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change (or invalidation), as the feed carries it.

    - `origin`: the id of the process that published it (`ChangeFeed.origin`).
    - `seq`: its number among that origin's changes: 1, 2, 3, ... with no hole, so a
      consumer that sees a jump knows it missed some.
    - `stream`: "durable" (a position of the store's stream), "ephemeral" (of the
      publishing process's ephemeral stream: typing, published presence) or "none"
      (an invalidation: nothing for /sync).
    - `pos`: the stream position of the change (the highest, if it took several);
      at least 1, and 0 for stream "none".
    - `kind`: what changed (see `KINDS`; a consumer ignores kinds it does not know).
    - `room_id`: the room it is about, if one.
    - `user_ids`: the users it concerns: whose /sync it wakes, or for an invalidation
      whose cached entries it affects.
    - `everyone`: it concerns every user (a broadcast); then `user_ids` is empty.
    - `payload`: details a consumer may need, only if small (`MAX_PAYLOAD_BYTES` of
      JSON); never a secret (an access token, ...): a cross-process feed sends it over
      the network. Not to be mutated.
    """

    origin: str
    seq: int
    stream: Stream
    pos: int
    kind: str
    room_id: str | None = None
    user_ids: tuple[str, ...] = ()
    everyone: bool = False
    payload: JsonDict | None = None

    def __post_init__(self) -> None:
        if not self.origin:
            raise ValueError("a change needs its origin")
        if self.seq < 1:
            raise ValueError(f"a change's seq starts at 1, not {self.seq}")
        if self.stream not in STREAMS:
            raise ValueError(f"unknown stream {self.stream!r}")
        if self.stream == "none" and self.pos != 0:
            raise ValueError("a change outside the streams has position 0")
        if self.stream != "none" and self.pos < 1:
            raise ValueError(f"a stream position is at least 1, not {self.pos}")
        if not self.kind:
            raise ValueError("a change needs its kind")
        if not isinstance(self.user_ids, tuple) or not all(
            isinstance(u, str) for u in self.user_ids
        ):
            raise TypeError("user_ids must be a tuple of user ids")
        if self.everyone and self.user_ids:
            raise ValueError("a change for everyone names no users")
        if self.payload is not None and _payload_size(self.payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"a change's payload is at most {MAX_PAYLOAD_BYTES} bytes of JSON")


class ChangeConsumer(Protocol):
    """What a feed delivers to. Both methods are synchronous and should be quick; an
    exception is logged by the feed and counts as a gap (`missed(change.origin)`)."""

    def deliver(self, change: Change) -> None:
        """The next change, in the feed's order (per origin: in seq order, possibly
        with holes where changes were lost, possibly repeated)."""

    def missed(self, origin: str | None) -> None:
        """Changes from `origin` (None: from any origin) may have been lost."""


class ChangeFeed(Protocol):
    @property
    def origin(self) -> str:
        """The id this process publishes under."""

    def publish(
        self,
        *,
        stream: Stream,
        pos: int,
        kind: str,
        room_id: str | None = None,
        user_ids: Iterable[str] = (),
        everyone: bool = False,
        payload: JsonDict | None = None,
    ) -> Change:
        """Publish a change already committed (see `Change` for the fields); it is
        stamped with this origin and the next seq. Never blocks, and a consumer's
        failure never reaches the publisher."""

    def subscribe(self, consumer: ChangeConsumer) -> None:
        """Deliver every change from now on to `consumer` (after those subscribed
        before it)."""

    def unsubscribe(self, consumer: ChangeConsumer) -> None: ...


class InProcessFeed:
    """The feed of one process: `publish` delivers to every consumer before it
    returns (a change published by a consumer while it is being delivered to is
    delivered right after, so every consumer sees every origin's changes in order)."""

    def __init__(self, origin: str | None = None) -> None:
        self._origin = origin or new_origin()
        self._seq = 0
        self._consumers: list[ChangeConsumer] = []
        self._pending: deque[Change] = deque()
        self._delivering = False

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def last_seq(self) -> int:
        """The seq of the last change this process published (0: none yet)."""
        return self._seq

    def subscribe(self, consumer: ChangeConsumer) -> None:
        if consumer not in self._consumers:
            self._consumers.append(consumer)

    def unsubscribe(self, consumer: ChangeConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def publish(
        self,
        *,
        stream: Stream,
        pos: int,
        kind: str,
        room_id: str | None = None,
        user_ids: Iterable[str] = (),
        everyone: bool = False,
        payload: JsonDict | None = None,
    ) -> Change:
        change = Change(
            origin=self._origin,
            seq=self._seq + 1,
            stream=stream,
            pos=pos,
            kind=kind,
            room_id=room_id,
            user_ids=tuple(user_ids),
            everyone=everyone,
            payload=payload,
        )
        self._seq = change.seq  # only once valid: a refused change leaves no hole
        self._dispatch(change)
        return change

    def receive(self, change: Change) -> None:
        """A change from another process (what a cross-process feed's listener hands
        over): delivered to every consumer as it is. This process's own, echoed back by
        a transport, were delivered when published and are dropped."""
        if change.origin != self._origin:
            self._dispatch(change)

    def reset(self) -> None:
        """The transport lost changes (a reconnect): every consumer re-reads."""
        for consumer in list(self._consumers):
            self._missed(consumer, None)

    def _dispatch(self, change: Change) -> None:
        self._pending.append(change)
        if self._delivering:
            return  # the delivery in progress takes it next
        self._delivering = True
        try:
            while self._pending:
                next_change = self._pending.popleft()
                for consumer in list(self._consumers):
                    try:
                        consumer.deliver(next_change)
                    except Exception:
                        log.exception(
                            "change feed: %r failed on %s #%d from %s; it re-reads",
                            consumer,
                            next_change.kind,
                            next_change.seq,
                            next_change.origin,
                        )
                        self._missed(consumer, next_change.origin)
        finally:
            self._delivering = False

    @staticmethod
    def _missed(consumer: ChangeConsumer, origin: str | None) -> None:
        try:
            consumer.missed(origin)
        except Exception:
            log.exception("change feed: %r failed to handle a gap", consumer)


class FeedConsumer(ABC):
    """A consumer that checks each origin's sequence: a change after a hole calls
    `on_gap(origin)` (then is applied too), a change already seen is skipped, and
    every other one goes to `apply`. The first change seen from an origin starts its
    count (subscribe before holding anything read from the store: what came before is
    in the store already)."""

    def __init__(self) -> None:
        self._last_seq: dict[str, int] = {}

    def deliver(self, change: Change) -> None:
        last = self._last_seq.get(change.origin)
        if last is not None and change.seq <= last:
            return  # seen already (a transport's redelivery)
        self._last_seq[change.origin] = change.seq
        if last is not None and change.seq != last + 1:
            log.warning(
                "change feed: %d change(s) from %s lost; re-reading",
                change.seq - last - 1,
                change.origin,
            )
            self.on_gap(change.origin)
        self.apply(change)

    def missed(self, origin: str | None) -> None:
        if origin is None:
            # After a reconnect every origin's next change starts its count again.
            self._last_seq.clear()
        self.on_gap(origin)

    def last_seq(self, origin: str) -> int | None:
        """The seq of the last change seen from `origin` (None: none yet)."""
        return self._last_seq.get(origin)

    @abstractmethod
    def apply(self, change: Change) -> None:
        """A change in sequence: follow it."""

    @abstractmethod
    def on_gap(self, origin: str | None) -> None:
        """Changes from `origin` (None: any) may be lost: stop trusting what was
        derived from the feed, and re-read from the store."""
