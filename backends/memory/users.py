"""Memory users, devices and access tokens."""

from __future__ import annotations

from dataclasses import replace

from backends.errors import Conflict, NotFound
from backends.memory.state import MemoryState
from backends.protocols import ProfileField
from backends.records import AccessToken, DeviceRecord, UserRecord


class MemoryUserStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def create_user(self, user: UserRecord) -> None:
        if user.user_id in self._s.users:
            raise Conflict(f"user {user.user_id} exists")
        self._s.users[user.user_id] = user

    async def get_user(self, user_id: str) -> UserRecord | None:
        return self._s.users.get(user_id)

    async def list_user_ids(self, *, after: str | None, limit: int) -> list[str]:
        ids = sorted(u for u in self._s.users if after is None or u > after)
        return ids[: max(0, limit)]

    async def set_profile_field(self, user_id: str, field: ProfileField, value: str | None) -> None:
        user = self._s.users.get(user_id)
        if user is None:
            raise NotFound(f"user {user_id}")
        if field == "displayname":
            self._s.users[user_id] = replace(user, displayname=value)
        else:
            self._s.users[user_id] = replace(user, avatar_url=value)


class MemoryDeviceStore:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        if token.token in self._s.tokens:
            raise Conflict("token exists")
        key = (device.user_id, device.device_id)
        existing = self._s.devices.get(key)
        if existing is None:
            self._s.devices[key] = device
        elif device.display_name is not None:
            self._s.devices[key] = replace(existing, display_name=device.display_name)
        for old in self._s.device_tokens.pop(key, set()):
            self._s.tokens.pop(old, None)
        self._s.tokens[token.token] = token
        self._s.device_tokens[key] = {token.token}

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        return self._s.devices.get((user_id, device_id))

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        return sorted(
            (d for (uid, _), d in self._s.devices.items() if uid == user_id),
            key=lambda d: d.device_id,
        )

    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        key = (user_id, device_id)
        device = self._s.devices.get(key)
        if device is None:
            raise NotFound(f"device {device_id}")
        self._s.devices[key] = replace(device, display_name=display_name)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        key = (user_id, device_id)
        existed = self._s.devices.pop(key, None) is not None
        for token in self._s.device_tokens.pop(key, set()):
            self._s.tokens.pop(token, None)
        for txn_key in [k for k in self._s.txns if k[0] == user_id and k[1] == device_id]:
            del self._s.txns[txn_key]
        return existed

    async def delete_all_devices(self, user_id: str) -> list[str]:
        ids = sorted(did for (uid, did) in self._s.devices if uid == user_id)
        for device_id in ids:
            await self.delete_device(user_id, device_id)
        return ids

    async def get_token(self, token: str) -> AccessToken | None:
        return self._s.tokens.get(token)
