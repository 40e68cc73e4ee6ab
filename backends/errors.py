"""Errors raised by every storage backend. Driver exceptions never cross this edge."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for failures of the storage layer."""


class NotFound(StorageError):
    """The record the operation needs does not exist."""


class Conflict(StorageError):
    """The record being created exists already (nothing was written)."""


class DuplicateTransaction(Conflict):
    """The client transaction is recorded already (nothing was written).

    `event_id` is the id recorded for it: the answer the first attempt got, or would
    have got had its reply not been lost."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"transaction already recorded (event {event_id})")
        self.event_id = event_id


class BackendUnavailable(StorageError):
    """The store cannot be reached or failed; the request may be retried later."""
