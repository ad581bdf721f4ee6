"""Times as console pages show them: UTC, to the minute."""

from __future__ import annotations

from datetime import UTC, datetime


def when(epoch: int | None) -> str:
    """``epoch`` (Unix seconds) as ``2026-12-06 14:45 UTC``; a dash for None or 0."""
    if not epoch:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["when"]
