"""The serving process exempts its startup heap from full collections."""

from __future__ import annotations

import gc
import weakref

from homeserver.heap import freeze_startup_heap


class _Node:
    self: object


def test_freeze_moves_what_exists_into_the_permanent_generation() -> None:
    before = gc.get_freeze_count()
    try:
        frozen = freeze_startup_heap()
        assert frozen > before
        assert frozen == gc.get_freeze_count()
        # What is created afterwards is collected as before: a new cycle is freed.
        node = _Node()
        node.self = node
        ref = weakref.ref(node)
        del node
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
