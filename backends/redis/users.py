"""Users, devices and access tokens in Redis."""

from __future__ import annotations

from coredis.tokens import PureToken

from backends.errors import Conflict, NotFound
from backends.protocols import ProfileField
from backends.records import AccessToken, DeviceRecord, UserRecord
from backends.redis import codec
from backends.redis.base import RedisStore, idempotent, once, reply_int, reply_list


class RedisUserStore(RedisStore):
    @once
    async def create_user(self, user: UserRecord) -> None:
        created = await self._ctx.run(
            self._scripts.create_user,
            [self._k.user(user.user_id), self._k.user_ids],
            [user.user_id, *codec.user_fields(user)],
        )
        if not created:
            raise Conflict(f"user {user.user_id} exists")

    @idempotent
    async def get_user(self, user_id: str) -> UserRecord | None:
        fields = await self._r.hgetall(self._k.user(user_id))
        return codec.user_from_hash(fields) if fields else None

    @idempotent
    async def list_user_ids(self, *, after: str | None, limit: int) -> list[str]:
        if limit <= 0:
            # Redis reads a negative LIMIT count as "no limit".
            return []
        # ZRANGE ... BYLEX (coredis deprecates ZRANGEBYLEX); members all score 0.
        low = "-" if after is None else f"({after}"
        ids = await self._r.zrange(
            self._k.user_ids, low, "+", sortby=PureToken.BYLEX, offset=0, count=limit
        )
        return [str(uid) for uid in ids]

    @idempotent
    async def set_profile_field(self, user_id: str, field: ProfileField, value: str | None) -> None:
        args = [field, "0", ""] if value is None else [field, "1", value]
        found = await self._ctx.run(
            self._scripts.set_field_if_exists, [self._k.user(user_id)], args
        )
        if not found:
            raise NotFound(f"user {user_id}")


class RedisDeviceStore(RedisStore):
    @once
    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        k = self._k
        # The token names its device's active-session pointer: `authenticate` reads
        # token and session in one script, which cannot build key names itself.
        token_fields = [
            *codec.token_fields(token),
            "active_session_key",
            k.active_session(token.user_id, token.device_id),
        ]
        name = device.display_name
        added = await self._ctx.run(
            self._scripts.add_device_with_token,
            [
                k.token(token.token),
                k.device(device.user_id, device.device_id),
                k.user_devices(device.user_id),
                k.device_tokens(device.user_id, device.device_id),
            ],
            [
                device.device_id,
                "0" if name is None else "1",
                "" if name is None else name,
                str(len(token_fields)),
                *token_fields,
                *codec.device_fields(device),
            ],
        )
        if not added:
            raise Conflict("token exists")

    @idempotent
    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        fields = await self._r.hgetall(self._k.device(user_id, device_id))
        return codec.device_from_hash(fields) if fields else None

    @idempotent
    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        ids = sorted(await self._r.smembers(self._k.user_devices(user_id)))
        if not ids:
            return []
        replies = await self._ctx.run(
            self._scripts.hgetall_each, [self._k.device(user_id, d) for d in ids], []
        )
        devices: list[DeviceRecord] = []
        for flat in reply_list(replies):
            # A device deleted between the two calls is simply left out.
            if flat:
                devices.append(codec.device_from_hash(codec.hash_from_flat(flat)))
        return devices

    @idempotent
    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        args = (
            ["display_name", "0", ""]
            if display_name is None
            else ["display_name", "1", display_name]
        )
        found = await self._ctx.run(
            self._scripts.set_field_if_exists, [self._k.device(user_id, device_id)], args
        )
        if not found:
            raise NotFound(f"device {device_id}")

    @once
    async def delete_device(self, user_id: str, device_id: str) -> bool:
        deleted = await self._delete(user_id, [device_id], exact=False)
        return deleted > 0

    @once
    async def delete_all_devices(self, user_id: str) -> list[str]:
        # Optimistic: the script refuses (-1) if the device set changed since we read
        # it, so the returned ids are exactly the devices deleted.
        while True:
            ids = sorted(await self._r.smembers(self._k.user_devices(user_id)))
            if not ids:
                return []
            if await self._delete(user_id, ids, exact=True) >= 0:
                return ids

    async def _delete(self, user_id: str, device_ids: list[str], *, exact: bool) -> int:
        k = self._k
        keys = [k.user_devices(user_id)]
        for device_id in device_ids:
            keys += (
                k.device(user_id, device_id),
                k.device_tokens(user_id, device_id),
                k.txns(user_id, device_id),
            )
        reply = await self._ctx.run(
            self._scripts.delete_devices, keys, ["1" if exact else "0", *device_ids]
        )
        return reply_int(reply)

    @idempotent
    async def get_token(self, token: str) -> AccessToken | None:
        fields = await self._r.hgetall(self._k.token(token))
        return codec.token_from_hash(fields) if fields else None
