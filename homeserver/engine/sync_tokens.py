"""/sync tokens: a durable stream position and an ephemeral one, "s<pos>_<ephemeral>"."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.errors import InvalidParam


@dataclass(frozen=True, slots=True)
class SyncToken:
    """Where a client is: everything up to the durable stream position `pos`, and
    (None: unknown) the ephemeral stream position `ephemeral` (typing, presence).
    Written "s<pos>_<ephemeral>";
    "s<pos>" (a /messages token, or from before the ephemeral stream) is accepted."""

    pos: int
    ephemeral: int | None = None


def parse_sync_token(token: str) -> SyncToken:
    body, sep, ephemeral = token.partition("_")
    digits = body[1:]
    # isascii(): str.isdigit() also accepts digits that int() rejects, such as "²".
    valid = (
        token.startswith("s")
        and digits.isascii()
        and digits.isdigit()
        and len(digits) <= 19
        and (not sep or (ephemeral.isascii() and ephemeral.isdigit() and len(ephemeral) <= 19))
    )
    if not valid:
        raise InvalidParam(f"Invalid stream token {token!r}")
    return SyncToken(int(digits), int(ephemeral) if sep else None)


def parse_stream_token(token: str) -> int:
    """The durable stream position of a token (a /messages `from` or `to` may be a
    /sync `next_batch`)."""
    return parse_sync_token(token).pos


def stream_token(pos: int) -> str:
    return f"s{pos}"


def sync_token(token: SyncToken) -> str:
    if token.ephemeral is None:
        return stream_token(token.pos)
    return f"s{token.pos}_{token.ephemeral}"
