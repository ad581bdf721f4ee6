"""The clock seam: code that needs the time takes a ``Clock`` so tests can move time."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock() -> int:
    """Unix time in whole seconds."""
    return int(time.time())


__all__ = ["Clock", "system_clock"]
