"""What a server process does once its start-up is over.

A full garbage collection walks every object the collector tracks: a gateway or authorization
server process holds 120,000-150,000 of them after start-up (modules, settings, keys), and a
full collection of them stops the event loop for 20-200 ms, depending on the machine. Under load
the objects of requests in flight are promoted often enough to start one every few seconds, so
each stall lands on the requests of that moment: the tail of the latency, not its median.
:func:`freeze_start_up` collects once and moves everything that exists to the permanent
generation, where full collections no longer look.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_start_up() -> None:
    """Once per process: collect (so that no garbage is kept for good), then freeze what
    start-up made out of the collector's sight. Later calls (another app of the same process,
    as in tests) do nothing."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


__all__ = ["freeze_start_up"]
