"""The record of what discovery did: every URL tried and its verdict, in order.

Kept apart from :mod:`bastion.client.discovery` so that :mod:`bastion.client.errors` can attach
a trace to an error without importing discovery (which raises those errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TraceStep:
    """One thing discovery did: ``step`` names it, ``ok`` is the verdict, ``detail`` says why."""

    step: str
    ok: bool
    detail: str
    url: str | None = None


@dataclass
class Trace:
    """Every URL discovery tried and what came of it, in order."""

    steps: list[TraceStep] = field(default_factory=list)

    def add(self, step: str, ok: bool, detail: str, url: str | None = None) -> None:
        """Record one step."""
        self.steps.append(TraceStep(step, ok, detail, url))

    def lines(self) -> list[str]:
        """One human-readable line per step."""
        return [
            f"[{'ok' if s.ok else 'fail'}] {s.step}: {s.detail}" + (f" ({s.url})" if s.url else "")
            for s in self.steps
        ]


__all__ = ["Trace", "TraceStep"]
