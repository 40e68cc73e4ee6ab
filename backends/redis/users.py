"""Users, devices and access tokens in Redis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from coredis.tokens import PureToken

from backends.errors import Conflict, NotFound
from backends.protocols import ProfileField
from backends.records import AccessToken, DeviceRecord, UserRecord
from backends.redis import codec
from backends.redis.base import (
    RedisStore,
    ScriptCall,
    idempotent,
    once,
    reply_flag,
    reply_int,
    reply_list,
    unexpected_reply,
)
from backends.redis.keys import Keys


@dataclass(frozen=True, slots=True)
class CreateUserCall(ScriptCall[bool]):
    """`lua/create_user.lua`: a user's hash and its place in the id index."""

    script: ClassVar[str] = "create_user"

    @classmethod
    def build(cls, k: Keys, user: UserRecord) -> CreateUserCall:
        return cls([k.user(user.user_id), k.user_ids], [user.user_id, *codec.user_fields(user)])

    def parse(self, reply: object) -> bool:
        """False (nothing written) if the user existed."""
        return reply_flag(reply)


@dataclass(frozen=True, slots=True)
class SetFieldIfExistsCall(ScriptCall[bool]):
    """`lua/set_field_if_exists.lua`: set (or, for None, delete) one field of an
    existing hash (a user's profile field, a device's display name)."""

    script: ClassVar[str] = "set_field_if_exists"

    @classmethod
    def build(cls, hash_key: str, field: str, value: str | None) -> SetFieldIfExistsCall:
        return cls([hash_key], [field, "0", ""] if value is None else [field, "1", value])

    def parse(self, reply: object) -> bool:
        """False (nothing changed) if the hash does not exist."""
        return reply_flag(reply)


@dataclass(frozen=True, slots=True)
class AddDeviceWithTokenCall(ScriptCall[bool]):
    """`lua/add_device_with_token.lua`: a device (created, or its display name
    updated) with a new access token replacing the device's old ones."""

    script: ClassVar[str] = "add_device_with_token"

    @classmethod
    def build(cls, k: Keys, device: DeviceRecord, token: AccessToken) -> AddDeviceWithTokenCall:
        # The token names its device's active-session pointer: `authenticate` reads
        # token and session in one script, which cannot build key names itself.
        token_fields = [
            *codec.token_fields(token),
            "active_session_key",
            k.active_session(token.user_id, token.device_id),
        ]
        name = device.display_name
        return cls(
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

    def parse(self, reply: object) -> bool:
        """False (nothing written) if the token exists."""
        return reply_flag(reply)


@dataclass(frozen=True, slots=True)
class HgetallEachCall(ScriptCall[list[DeviceRecord]]):
    """`lua/hgetall_each.lua`, on device hashes: the devices of some ids."""

    script: ClassVar[str] = "hgetall_each"

    @classmethod
    def build(cls, k: Keys, user_id: str, device_ids: Sequence[str]) -> HgetallEachCall:
        return cls([k.device(user_id, d) for d in device_ids], [])

    def parse(self, reply: object) -> list[DeviceRecord]:
        """The devices that exist, in the order asked for (one deleted meanwhile is
        simply left out)."""
        hashes = (codec.hash_from_flat(flat) for flat in reply_list(reply))
        return [codec.device_from_hash(h) for h in hashes if h]


@dataclass(frozen=True, slots=True)
class DeleteDevicesCall(ScriptCall[int]):
    """`lua/delete_devices.lua`: devices with their tokens and transaction ids."""

    script: ClassVar[str] = "delete_devices"

    @classmethod
    def build(
        cls, k: Keys, user_id: str, device_ids: Sequence[str], *, exact: bool
    ) -> DeleteDevicesCall:
        """`exact`: refuse unless the user's devices are exactly `device_ids`."""
        keys = [k.user_devices(user_id)]
        for device_id in device_ids:
            keys += (
                k.device(user_id, device_id),
                k.device_tokens(user_id, device_id),
                k.txns(user_id, device_id),
            )
        return cls(keys, ["1" if exact else "0", *device_ids])

    def parse(self, reply: object) -> int:
        """How many of the devices existed, or -1 if an exact call was refused."""
        count = reply_int(reply)
        if count < -1:
            raise unexpected_reply(reply)
        return count


class RedisUserStore(RedisStore):
    @once
    async def create_user(self, user: UserRecord) -> None:
        call = CreateUserCall.build(self._k, user)
        if not await self._ctx.run(call):
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
        call = SetFieldIfExistsCall.build(self._k.user(user_id), field, value)
        if not await self._ctx.run(call):
            raise NotFound(f"user {user_id}")


class RedisDeviceStore(RedisStore):
    @once
    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        call = AddDeviceWithTokenCall.build(self._k, device, token)
        if not await self._ctx.run(call):
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
        call = HgetallEachCall.build(self._k, user_id, ids)
        return await self._ctx.run(call)

    @idempotent
    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        call = SetFieldIfExistsCall.build(
            self._k.device(user_id, device_id), "display_name", display_name
        )
        if not await self._ctx.run(call):
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
        call = DeleteDevicesCall.build(self._k, user_id, device_ids, exact=exact)
        return await self._ctx.run(call)

    @idempotent
    async def get_token(self, token: str) -> AccessToken | None:
        fields = await self._r.hgetall(self._k.token(token))
        return codec.token_from_hash(fields) if fields else None
