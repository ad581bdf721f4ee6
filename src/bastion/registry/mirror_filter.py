"""Which upstream servers a mirror may import (``[[registry.mirrors]]`` ``namespaces``,
``names`` and ``search``; docs/registry.md, "Mirroring").

A name is inside when its namespace matches a ``namespaces`` pattern or it is one of ``names``,
and, with ``search``, its name or description contains the term (ignoring case, as the registry
API's ``search`` does). Names are compared exactly: a name that matches only when case is ignored
(``IO.GitHub.Acme/x`` for ``io.github.acme/*``) would look like an allowed server without being
one, so it is reported apart (:data:`LOOKALIKE`) and refused.
"""

from __future__ import annotations

from typing import Final, Literal

from bastion.config import MirrorSettings

INSIDE: Final = "inside"
OUTSIDE: Final = "outside"
LOOKALIKE: Final = "lookalike"
Verdict = Literal["inside", "outside", "lookalike"]


def _namespace_matches(pattern: str, namespace: str) -> bool:
    pattern = pattern.removesuffix("/*")
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        stem = pattern[:-1]
        return namespace.startswith(stem) and len(namespace) > len(stem)
    return namespace == pattern


class MirrorFilter:
    """The filters of one mirror."""

    def __init__(self, mirror: MirrorSettings) -> None:
        self.namespaces = tuple(mirror.namespaces)
        self.names = frozenset(mirror.names)
        self.search = mirror.search.lower() if mirror.search else None

    def _allows(self, name: str, namespaces: tuple[str, ...], names: frozenset[str]) -> bool:
        namespace = name.split("/", 1)[0]
        return name in names or any(_namespace_matches(p, namespace) for p in namespaces)

    def verdict(self, name: str, description: str) -> Verdict:
        """Whether server ``name`` (a valid server name) with ``description`` may be imported."""
        if self.search is not None and not (
            self.search in name.lower() or self.search in description.lower()
        ):
            return OUTSIDE
        if self._allows(name, self.namespaces, self.names):
            return INSIDE
        folded = name.casefold()
        if self._allows(
            folded,
            tuple(p.casefold() for p in self.namespaces),
            frozenset(n.casefold() for n in self.names),
        ):
            return LOOKALIKE
        return OUTSIDE


__all__ = ["INSIDE", "LOOKALIKE", "OUTSIDE", "MirrorFilter", "Verdict"]
