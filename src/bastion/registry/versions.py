"""Which version of a server is the latest (``isLatest``, ``/versions/latest``, ``version=latest``).

The registry project says versions SHOULD be semantic versions and that other strings "may not
sort predictably". bastion's rule: among the candidates, when every version is a semantic
version (SemVer 2.0.0) the highest by SemVer precedence wins (§11; build metadata is ignored, the
later publication breaks ties); otherwise the most recently published wins. Candidates are the
versions that are approved and not deleted; if there are none, those not deleted; if every
version is deleted, all of them. So every server has exactly one latest version, and an
unapproved new version does not become what everyone is offered before an admin approves it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


@dataclass(frozen=True)
class Candidate:
    """What the choice needs to know about one version of a server."""

    version: str
    published_at: int
    status: str
    approved: bool


PrereleaseKey = tuple[tuple[int, int, str], ...]
SemverKey = tuple[int, int, int, int, PrereleaseKey]


def semver_key(version: str) -> SemverKey | None:
    """A sort key giving SemVer 2.0.0 §11 precedence, or None when ``version`` is not SemVer."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        return None
    major, minor, patch = (int(match.group(i)) for i in (1, 2, 3))
    pre = match.group(4)
    if pre is None:
        # A release ranks above every pre-release of the same version (§11.3).
        return (major, minor, patch, 1, ())
    parts: list[tuple[int, int, str]] = []
    for identifier in pre.split("."):
        # Numeric identifiers rank below alphanumeric ones and compare numerically (§11.4).
        if identifier.isdigit():
            parts.append((0, int(identifier), ""))
        else:
            parts.append((1, 0, identifier))
    return (major, minor, patch, 0, tuple(parts))


def choose_latest(candidates: Sequence[Candidate]) -> str | None:
    """The version that is the latest of a server's versions (see the module docstring)."""
    pool = [c for c in candidates if c.approved and c.status != "deleted"]
    if not pool:
        pool = [c for c in candidates if c.status != "deleted"] or list(candidates)
    if not pool:
        return None
    keys = [semver_key(c.version) for c in pool]
    if all(key is not None for key in keys):
        ranked = sorted(
            zip(keys, pool, strict=True), key=lambda pair: (pair[0], pair[1].published_at)
        )
        return ranked[-1][1].version
    return max(pool, key=lambda c: (c.published_at, c.version)).version


__all__ = ["Candidate", "choose_latest", "semver_key"]
