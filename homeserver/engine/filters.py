"""Sync filters: stored per user, read back, and the parts /sync applies."""

from __future__ import annotations

from dataclasses import dataclass

from backends import Storage
from backends.records import JsonDict
from homeserver import client_json
from homeserver.errors import BadJson, NotFoundError, NotJson

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 1000


@dataclass(frozen=True)
class SyncFilter:
    timeline_limit: int = DEFAULT_TIMELINE_LIMIT
    include_leave: bool = False
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()

    def wants_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


def _room_list(value: object, key: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJson(f"filter '{key}' must be a list of room ids")
    return frozenset(value)


def validate_filter(definition: object) -> JsonDict:
    """Check a filter definition's shape; returns it unchanged."""
    parse_filter(definition)
    assert isinstance(definition, dict)
    return definition


def parse_filter(definition: object) -> SyncFilter:
    if not isinstance(definition, dict):
        raise BadJson("A filter must be a JSON object")
    room = definition.get("room", {})
    if not isinstance(room, dict):
        raise BadJson("filter 'room' must be an object")
    timeline = room.get("timeline", {})
    if not isinstance(timeline, dict):
        raise BadJson("filter 'room.timeline' must be an object")
    limit = timeline.get("limit", DEFAULT_TIMELINE_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise BadJson("filter 'room.timeline.limit' must be a non-negative integer")
    include_leave = room.get("include_leave", False)
    if not isinstance(include_leave, bool):
        raise BadJson("filter 'room.include_leave' must be a boolean")
    not_rooms = _room_list(room.get("not_rooms"), "room.not_rooms")
    return SyncFilter(
        timeline_limit=min(limit, MAX_TIMELINE_LIMIT),
        include_leave=include_leave,
        rooms=_room_list(room.get("rooms"), "room.rooms"),
        not_rooms=not_rooms or frozenset(),
    )


class Filters:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def create(self, user_id: str, definition: object) -> str:
        return await self._storage.filters.create_filter(user_id, validate_filter(definition))

    async def get(self, user_id: str, filter_id: str) -> JsonDict:
        definition = await self._storage.filters.get_filter(user_id, filter_id)
        if definition is None:
            raise NotFoundError("No such filter")
        return definition

    async def resolve(self, user_id: str, param: str | None) -> SyncFilter:
        """The /sync `filter` parameter: a filter id, or an inline JSON definition."""
        if param is None or param == "":
            return SyncFilter()
        if param.lstrip().startswith("{"):
            try:
                definition = client_json.loads(param)
            except NotJson:
                raise BadJson("Inline filter is not valid JSON") from None
            return parse_filter(definition)
        definition = await self._storage.filters.get_filter(user_id, param)
        if definition is None:
            raise NotFoundError("No such filter")
        return parse_filter(definition)
