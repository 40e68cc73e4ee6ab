"""Per-user data in Redis: account data, filters, client transaction ids."""

from __future__ import annotations

from backends.errors import StorageError
from backends.records import AccountDataRecord, JsonDict
from backends.redis import codec
from backends.redis.base import RedisStore, idempotent, once, reply_int
from backends.redis.keys import account_data_field, parse_account_data_field


class RedisAccountDataStore(RedisStore):
    @once
    async def put_account_data(
        self, user_id: str, room_id: str | None, type: str, content: JsonDict
    ) -> int:
        pos = await self._ctx.run(
            self._scripts.put_account_data,
            [self._k.stream_pos, self._k.account_data(user_id), self._k.account_data_pos(user_id)],
            [account_data_field(room_id, type), codec.dumps(content)],
        )
        return reply_int(pos)

    @idempotent
    async def get_account_data(
        self, user_id: str, room_id: str | None, type: str
    ) -> JsonDict | None:
        text = await self._r.hget(self._k.account_data(user_id), account_data_field(room_id, type))
        return None if text is None else codec.account_data_from_stored(text)[1]

    @idempotent
    async def get_account_data_since(self, user_id: str, after: int) -> list[AccountDataRecord]:
        reply = await self._ctx.run(
            self._scripts.account_data_since,
            [self._k.account_data(user_id), self._k.account_data_pos(user_id)],
            [f"({codec.clamp(after)}"],
        )
        if not isinstance(reply, list) or len(reply) % 2:
            raise StorageError(f"unexpected reply from Redis: {reply!r}")
        records: list[AccountDataRecord] = []
        for field, text in zip(reply[::2], reply[1::2], strict=True):
            room_id, type = parse_account_data_field(field)
            pos, content = codec.account_data_from_stored(text)
            records.append(AccountDataRecord(user_id, room_id, type, content, pos))
        return records


class RedisFilterStore(RedisStore):
    @once
    async def create_filter(self, user_id: str, definition: JsonDict) -> str:
        filter_id = await self._ctx.run(
            self._scripts.create_filter,
            [self._k.filter_id, self._k.filters(user_id)],
            [codec.dumps(definition)],
        )
        return str(filter_id)

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
