"""Sending: messages and state events, with the checks each needs (size, power levels,
the state the membership endpoints own, the spam-policy plugins) and transaction ids
that make a retried send return the first event's id."""

from __future__ import annotations

import copy

from backends import DuplicateTransaction, Storage
from backends.records import ClientTxn, JsonDict
from homeserver.engine.events import MAX_EVENT_BYTES, event_size, new_event_id
from homeserver.engine.gatekeeper import Gatekeeper, raise_for
from homeserver.engine.power_levels import PowerLevels, validate_power_levels
from homeserver.engine.rooms.core import RoomCore
from homeserver.errors import BadJson, Forbidden, InvalidParam, MatrixError
from homeserver.types import Requester
from plugins.api import EventCheck, Verdict


def _event_type_ok(event_type: str) -> None:
    if not event_type or len(event_type) > 255:
        raise InvalidParam("Event type must be 1 to 255 characters")


class RoomMessages:
    def __init__(self, core: RoomCore, storage: Storage, gatekeeper: Gatekeeper) -> None:
        self._core = core
        self._storage = storage
        self._gatekeeper = gatekeeper

    async def send_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: JsonDict,
        *,
        txn_id: str | None = None,
        state_key: str | None = None,
        trusted: bool = False,
    ) -> str:
        """Send a message (state_key None) or a state event; returns the event id.

        With a txn_id, a retry of the same request returns the first event's id: the
        event and the transaction's record are stored in one atomic write, so a retry
        after any failure (a crash, a store error, a lost reply) finds either both or
        neither.
        """
        _event_type_ok(event_type)
        if event_size(content, event_type, state_key) > MAX_EVENT_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "Event too large")
        txn = (
            ClientTxn(requester.user_id, requester.device_id, f"{room_id}/{event_type}/{txn_id}")
            if txn_id is not None
            else None
        )
        checked = state_key is None and not trusted
        # A message no plugin looks at: a retry is answered by the append itself
        # (DuplicateTransaction carries the first event's id), or, if the checks
        # below refuse it (the sender left since), by the store's record. No read
        # before the append.
        unread = checked and not self._gatekeeper.hooks["check_event"]
        if checked and not unread:
            dropped = await self._check_message(requester, room_id, event_type, content, txn)
            if dropped is not None:
                return dropped
        async with self._core.hold(room_id):
            if txn is not None and not checked:
                # The cheap answer for a retry (_check_message gave it already); the
                # append below is what guarantees it.
                existing = await self._storage.txns.get_txn_event(
                    txn.user_id, txn.device_id, txn.txn_key
                )
                if existing is not None:
                    return existing
            try:
                room = await self._core.require_joined(room_id, requester.user_id)
                power = await self._core.power_levels(room)
                power.require(
                    requester.user_id,
                    power.event_level(event_type, state_key is not None),
                    f"send {event_type} events",
                )
            except MatrixError:
                if txn is not None and unread:
                    existing = await self._storage.txns.get_txn_event(
                        txn.user_id, txn.device_id, txn.txn_key
                    )
                    if existing is not None:
                        return existing
                raise
            if state_key is not None:
                _check_state_event(requester, power, event_type, state_key, content)
            new = self._core.new_event(
                room_id,
                requester.user_id,
                event_type,
                content,
                state_key=state_key,
                requester=requester,
                txn_id=txn_id,
            )
            try:
                (event,) = await self._core.append([new], txn=txn)
            except DuplicateTransaction as exc:
                # Recorded since the check above, by another process sharing the store
                # or by a concurrent request whose plugins dropped the message.
                return exc.event_id
            return event.event_id

    async def _check_message(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: JsonDict,
        txn: ClientTxn | None,
    ) -> str | None:
        """Ask the plugins about a message (outside the room lock). Raises on deny;
        on drop returns the event id the sender is told (nothing is stored or sent, and
        a retry of the transaction gets the same id); None to go on and send."""
        if txn is not None:
            existing = await self._storage.txns.get_txn_event(
                txn.user_id, txn.device_id, txn.txn_key
            )
            if existing is not None:
                return existing
        await self._core.require_joined(room_id, requester.user_id)
        decision = await self._gatekeeper.check_event(
            EventCheck(
                sender=requester.user_id,
                room_id=room_id,
                type=event_type,
                content=copy.deepcopy(content),
            )
        )
        raise_for(decision)
        if decision.verdict is not Verdict.DROP:
            return None
        event_id = new_event_id()
        if txn is not None:
            # The record is the only write: nothing to keep atomic with it.
            await self._storage.txns.put_txn_event(
                txn.user_id, txn.device_id, txn.txn_key, event_id
            )
        return event_id


def _check_state_event(
    requester: Requester,
    power: PowerLevels,
    event_type: str,
    state_key: str,
    content: JsonDict,
) -> None:
    """What the auth rules (and this server) refuse of a state event, beyond its level."""
    if event_type == "m.room.create":
        raise Forbidden("The room's create event cannot be replaced")
    if event_type == "m.room.member":
        raise Forbidden("Use the membership endpoints (join, invite, leave, kick, ban)")
    if state_key.startswith("@") and state_key != requester.user_id:
        raise Forbidden("State keys that are user ids belong to that user")
    if event_type == "m.room.power_levels":
        validate_power_levels(content)
        power.check_change(requester.user_id, content)
    if event_type == "m.room.join_rules" and not isinstance(content.get("join_rule"), str):
        raise BadJson("m.room.join_rules needs a string 'join_rule'")
