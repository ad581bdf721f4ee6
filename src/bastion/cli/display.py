"""How commands show tables and times: whole values however narrow the terminal (and at full
width when piped), dates in the local time zone with how far away they are."""

from __future__ import annotations

import time
from datetime import datetime

from rich.console import Console
from rich.table import Table

# Piped output is read by programs and by people with wide windows: never cut it to 80 columns.
_PIPE_WIDTH = 10_000


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` with every cell whole: wrapped in a terminal, never ellipsised."""
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    Console(file=console.file, width=_PIPE_WIDTH, color_system=None, soft_wrap=True).print(table)


def duration(seconds: float) -> str:
    """``seconds`` as at most two units: ``9m 12s``, ``2d 3h``, ``0s``."""
    whole = round(abs(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return " ".join([f"{n}{unit}" for n, unit in parts if n][:2]) or "0s"


def timestamp(epoch: float) -> str:
    """An RFC 3339 time in the local time zone, to the second."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def when(epoch: float | None, now: float | None = None, *, never: str = "") -> str:
    """``2026-12-06T02:10:00+00:00 (in 9m 12s)`` or ``(3h ago)``; ``never`` for no time."""
    if epoch is None:
        return never
    delta = epoch - (time.time() if now is None else now)
    relative = f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"
    return f"{timestamp(epoch)} ({relative})"


__all__ = ["duration", "print_table", "timestamp", "when"]
