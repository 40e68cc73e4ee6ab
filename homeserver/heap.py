"""Keeping the garbage collector's full passes short in a serving process.

CPython's full (generation 2) collection walks every tracked object. In a server that
has imported Quart, Hypercorn, SQLAlchemy and a storage driver, most of those objects
are modules, classes and functions that live as long as the process, and a full pass
over them stalled every request for 55-80 ms, several times a minute under load
(measured with `gc.callbacks` during the wake benchmarks: the p99 of a /sync wake-up
was one such pause). `freeze_startup_heap()`, called once the server is up, moves what
exists then into the permanent generation, which the collector no longer walks; what
requests create later is collected as before. Synapse does the same (`gc.freeze()`).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then exempt every object alive now from future collections.

    Returns how many objects were frozen. Meant for the serving process's own entry
    point (the CLI), not for servers started inside a test process.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
