"""Per-user data in Redis: account data, filters, client transaction ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from backends.records import AccountDataRecord, JsonDict
from backends.redis import codec
from backends.redis.base import (
    RedisStore,
    ScriptCall,
    idempotent,
    once,
    reply_int,
    unexpected_reply,
)
from backends.redis.keys import Keys, account_data_field, parse_account_data_field


@dataclass(frozen=True, slots=True)
class PutAccountDataCall(ScriptCall[int]):
    """`lua/put_account_data.lua`: store one account data entry at a new position."""

    script: ClassVar[str] = "put_account_data"

    @classmethod
    def build(
        cls, k: Keys, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> PutAccountDataCall:
        return cls(
            [k.stream_pos, k.account_data(user_id), k.account_data_pos(user_id)],
            [account_data_field(room_id, type), codec.dumps(content)],
        )

    def parse(self, reply: object) -> int:
        """The stream position of the change."""
        return reply_int(reply)


@dataclass(frozen=True, slots=True)
class AccountDataSinceCall(ScriptCall[list[AccountDataRecord]]):
    """`lua/account_data_since.lua`: a user's account data changed after a position."""

    script: ClassVar[str] = "account_data_since"

    user_id: str

    @classmethod
    def build(cls, k: Keys, user_id: str, after: int) -> AccountDataSinceCall:
        return cls(
            [k.account_data(user_id), k.account_data_pos(user_id)],
            [f"({codec.clamp(after)}"],
            user_id,
        )

    def parse(self, reply: object) -> list[AccountDataRecord]:
        """The records in stream order."""
        if not isinstance(reply, list | tuple) or len(reply) % 2:
            raise unexpected_reply(reply)
        records: list[AccountDataRecord] = []
        for field, text in zip(reply[::2], reply[1::2], strict=True):
            if not isinstance(field, str) or not isinstance(text, str):
                raise unexpected_reply(reply)
            try:
                room_id, type = parse_account_data_field(field)
            except (TypeError, ValueError) as exc:
                raise unexpected_reply(reply) from exc
            pos, content = codec.account_data_from_stored(text)
            records.append(AccountDataRecord(self.user_id, room_id, type, content, pos))
        return records


@dataclass(frozen=True, slots=True)
class CreateFilterCall(ScriptCall[str]):
    """`lua/create_filter.lua`: store a filter under a new id."""

    script: ClassVar[str] = "create_filter"

    @classmethod
    def build(cls, k: Keys, user_id: str, definition: JsonDict) -> CreateFilterCall:
        return cls([k.filter_id, k.filters(user_id)], [codec.dumps(definition)])

    def parse(self, reply: object) -> str:
        """The new filter id."""
        return str(reply_int(reply))


class RedisAccountDataStore(RedisStore):
    @once
    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        call = PutAccountDataCall.build(self._k, user_id, room_id, type, content)
        return await self._ctx.run(call)

    @idempotent
    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        text = await self._r.hget(self._k.account_data(user_id), account_data_field(room_id, type))
        return None if text is None else codec.account_data_from_stored(text)[1]

    @idempotent
    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        call = AccountDataSinceCall.build(self._k, user_id, after)
        return await self._ctx.run(call)


class RedisFilterStore(RedisStore):
    @once
    async def create_filter(self, user_id: str, definition: JsonDict) -> str:
        call = CreateFilterCall.build(self._k, user_id, definition)
        return await self._ctx.run(call)

    @idempotent
    async def get_filter(self, user_id: str, filter_id: str) -> JsonDict | None:
        text = await self._r.hget(self._k.filters(user_id), filter_id)
        return None if text is None else codec.json_from_stored(text, "filter")


class RedisTransactionStore(RedisStore):
    @idempotent
    async def get_txn_event(self, user_id: str, device_id: str, txn_key: str) -> str | None:
        return await self._r.hget(self._k.txns(user_id, device_id), txn_key)

    @idempotent
    async def put_txn_event(
        self, user_id: str, device_id: str, txn_key: str, event_id: str
    ) -> None:
        await self._r.hsetnx(self._k.txns(user_id, device_id), txn_key, event_id)
