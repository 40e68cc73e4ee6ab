"""Errors raised by every storage backend. Driver exceptions never cross this edge."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for failures of the storage layer."""


class NotFound(StorageError):
    """The record the operation needs does not exist."""


class Conflict(StorageError):
    """The record being created exists already (nothing was written)."""


class BackendUnavailable(StorageError):
    """The store cannot be reached or failed; the request may be retried later."""
