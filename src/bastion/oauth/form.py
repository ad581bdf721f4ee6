"""Request parameters grouped by name, as the endpoints read them (RFC 6749 §3.1, §3.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Params = Mapping[str, Sequence[str]]
"""Parameters by name, each with the values sent, in order; empty values already dropped."""


def single(params: Params, name: str) -> str | None:
    """The one value of a parameter, or None."""
    values = params.get(name)
    return values[0] if values else None


__all__ = ["Params", "single"]
