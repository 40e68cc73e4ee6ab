"""Memory presence records."""

from __future__ import annotations

from collections.abc import Sequence

from backends.memory.state import MemoryState, SessionState
from backends.records import PresenceRecord


class MemoryPresenceStore:
    def __init__(self, state: MemoryState, sessions: SessionState) -> None:
        self._s = state
        self._t = sessions

    async def get_presence(self, user_id: str) -> PresenceRecord | None:
        return self._t.presence.get(user_id)

    async def put_presence(
        self, user_id: str, presence: str, status_msg: str | None, last_active_ts: int
    ) -> PresenceRecord:
        record = PresenceRecord(
            user_id=user_id,
            presence=presence,
            status_msg=status_msg,
            last_active_ts=last_active_ts,
            stream_pos=self._s.next_pos(),
        )
        self._t.presence[user_id] = record
        return record

    async def get_presence_since(self, user_ids: Sequence[str], after: int) -> list[PresenceRecord]:
        records = [
            r
            for r in (self._t.presence.get(u) for u in set(user_ids))
            if r is not None and r.stream_pos > after
        ]
        return sorted(records, key=lambda r: r.stream_pos)
