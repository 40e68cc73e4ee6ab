"""The server's own value types: identifiers and who a request is from. The storage
records (events, memberships, sessions, ...) live with the storage interface, in
`backends.records`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Matrix user id grammar (historical characters allowed when reading, strict when
# registering): @localpart:server_name
_USER_ID_RE = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-:\[\]]+$")
_ROOM_ID_RE = re.compile(r"^![^:\s]+:[A-Za-z0-9.\-:\[\]]+$")
LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
MAX_USER_ID_LENGTH = 255


def is_user_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_USER_ID_LENGTH
        and _USER_ID_RE.fullmatch(value) is not None
    )


def is_room_id(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 255 and _ROOM_ID_RE.fullmatch(value) is not None


def server_name_of(user_or_room_id: str) -> str:
    return user_or_room_id.split(":", 1)[1]


def localpart_of(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Requester:
    """Who an authenticated request is from."""

    user_id: str
    device_id: str
    # The session the request runs in; None for session-management requests and
    # when sessions are disabled.
    session_id: str | None = None
