"""Which scopes to ask for: MCP "Scope Selection Strategy" and "Step-Up Authorization Flow".

- Initial request (checklist C14): the 401 challenge's ``scope``, else every PRM
  ``scopes_supported``, else no ``scope`` parameter at all. Challenged scopes are authoritative.
- Step-up (C15): the union of the scopes previously requested and those of the 403
  ``insufficient_scope`` challenge (RFC 6750 §3.1).
- ``offline_access`` (C16, MCP "Refresh Tokens"): added only when the authorization server lists
  it in ``scopes_supported``, and only to a request that names scopes already (alone it would
  replace the server's default scopes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

OFFLINE_ACCESS = "offline_access"


def _unique(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for s in scopes if s))


def initial_scopes(
    challenged: Sequence[str] | None, scopes_supported: Sequence[str] | None
) -> tuple[str, ...]:
    """The scopes of a first authorization (C14); empty means "omit the parameter"."""
    if challenged:
        return _unique(challenged)
    if scopes_supported:
        return _unique(scopes_supported)
    return ()


def step_up_scopes(previous: Sequence[str], challenged: Sequence[str]) -> tuple[str, ...]:
    """The union of what was requested before and what the challenge asks for (C15)."""
    return _unique([*previous, *challenged])


def with_offline_access(
    scopes: Sequence[str], as_scopes_supported: Sequence[str] | None, *, wanted: bool = True
) -> tuple[str, ...]:
    """``scopes`` plus ``offline_access`` when wanted, listed by the AS, and ``scopes`` is not
    empty (C16)."""
    if not wanted or not scopes or OFFLINE_ACCESS not in (as_scopes_supported or ()):
        return _unique(scopes)
    return _unique([*scopes, OFFLINE_ACCESS])


def scope_parameter(scopes: Sequence[str]) -> str | None:
    """The space-delimited ``scope`` value (RFC 6749 §3.3), or None to leave it out."""
    unique = _unique(scopes)
    return " ".join(unique) if unique else None


def covers(granted: Sequence[str], needed: Sequence[str]) -> bool:
    """Whether every needed scope is among the granted ones."""
    return set(needed) <= set(granted)


__all__ = [
    "OFFLINE_ACCESS",
    "covers",
    "initial_scopes",
    "scope_parameter",
    "step_up_scopes",
    "with_offline_access",
]
