"""Server names and versions: the rules server.json states, checked exactly.

A name is ``<namespace>/<server>`` in reverse-DNS form (server.schema.json 2025-12-11,
``ServerDetail.name``: pattern ``^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$``, 3 to 200 characters). The
schema's pattern is matched here with ``fullmatch``: JSON Schema validators use a regex *search*
in which ``$`` also matches before a final newline, so ``"io.x/y\\n"`` would pass the schema alone.

A version is any string of at most 255 characters except a range (``^1.2.3``, ``~1.2``,
``>=1.0``, ``1.x``, ``1.*``: rejected per the schema's description) and, for bastion, except
``latest`` (it names the newest version in URLs), the empty string, and strings with ``/`` or
control characters (a version is one URL path segment).
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+")
NAME_MIN = 3
NAME_MAX = 200
VERSION_MAX = 255
LATEST = "latest"
# A group name (an entry's audience, a token's groups claim): printable, no spaces.
GROUP_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")

_RANGE = re.compile(
    r"""
    ^\s*(\^|~|[<>]=?|=)       # a range operator in front
    | \s-\s | \|\| | \s       # hyphen ranges, alternatives, any space
    | (^|\.)[xX*](\.|$)        # wildcard segments: 1.x, 1.*, *
    """,
    re.VERBOSE,
)


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid server name, or None when it is."""
    if not isinstance(name, str):
        return "must be a string"
    if not NAME_MIN <= len(name) <= NAME_MAX:
        return f"must have {NAME_MIN} to {NAME_MAX} characters; has {len(name)}"
    if not NAME_PATTERN.fullmatch(name):
        return (
            "must be <namespace>/<name> in reverse-DNS form, matching "
            "^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$ (exactly one '/')"
        )
    return None


def version_problem(version: object) -> str | None:
    """Why ``version`` is not a publishable version, or None when it is."""
    if not isinstance(version, str):
        return "must be a string"
    if not version:
        return "must not be empty"
    if len(version) > VERSION_MAX:
        return f"must have at most {VERSION_MAX} characters; has {len(version)}"
    if version == LATEST:
        return "'latest' is reserved: it names the newest version in the API"
    if "/" in version or any(ord(c) < 0x20 or ord(c) == 0x7F for c in version):
        return "must not contain '/' or control characters"
    if _RANGE.search(version):
        return "must be one specific version, not a range (like ^1.2.3, ~1.2, >=1.0, 1.x, 1.*)"
    return None


def namespace_of(name: str) -> str:
    """The namespace of a valid server name: the part before ``/``."""
    return name.split("/", 1)[0]


def group_problem(group: object) -> str | None:
    """Why ``group`` is not a group name, or None when it is."""
    if not isinstance(group, str) or not GROUP_PATTERN.fullmatch(group):
        return "must be 1 to 255 printable ASCII characters without spaces"
    return None


__all__ = [
    "LATEST",
    "NAME_MAX",
    "NAME_MIN",
    "NAME_PATTERN",
    "VERSION_MAX",
    "group_problem",
    "name_problem",
    "namespace_of",
    "version_problem",
]
