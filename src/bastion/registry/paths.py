"""Which registry operation a request path names (generic registry API v0.1, and /v0).

Server names contain one ``/`` and travel URL-encoded (``io.example%2Fweather``), so paths are
read from the raw (still percent-encoded) path, one segment at a time: the decoded path cannot
tell the name's ``/`` from the path's. A name sent unencoded (``io.example/weather``) is accepted
too: names have exactly one ``/``, so the two segments are unambiguous. Versions are one segment
(``1.0.0%2Bbuild`` decodes to ``1.0.0+build``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

API_VERSIONS = ("v0.1", "v0")

# action -> methods
_METHODS = {
    "list": ("GET",),
    "publish": ("POST",),
    "list_versions": ("GET",),
    "version": ("GET", "PUT", "DELETE"),
    "version_status": ("PATCH",),
    "server_status": ("PATCH",),
}
# (resource, method) -> the audit action
_ACTIONS = {
    ("list", "GET"): "list",
    ("publish", "POST"): "publish",
    ("list_versions", "GET"): "list_versions",
    ("version", "GET"): "get",
    ("version", "PUT"): "update",
    ("version", "DELETE"): "delete",
    ("version_status", "PATCH"): "set_status",
    ("server_status", "PATCH"): "set_server_status",
}


@dataclass(frozen=True)
class Target:
    """What a path names: ``resource`` (a key of the method table), and the server name and
    version in it. ``allowed`` are the methods it answers."""

    resource: str
    name: str | None = None
    version: str | None = None

    @property
    def allowed(self) -> tuple[str, ...]:
        return _METHODS[self.resource]

    def action(self, method: str) -> str | None:
        """The audit action of ``method`` on this target, or None when it is not allowed."""
        return _ACTIONS.get((self.resource, method))


def segments(raw_path: bytes) -> list[str]:
    """The path's segments, each percent-decoded on its own (an encoded ``/`` stays inside)."""
    text = raw_path.split(b"?", 1)[0].decode("latin-1")
    return [unquote(part, errors="strict") for part in text.split("/")[1:]]


def parse(raw_path: bytes, prefix: str) -> Target | None:
    """The target of a path under the registry ``prefix`` (``""`` or ``/registry``), or None
    when the path names nothing the API serves."""
    if len(raw_path) <= _CACHED_LENGTH:
        return _parse_kept(raw_path, prefix)
    return _parse(raw_path, prefix)


# Paths up to this long have their targets kept (the same few paths are read again and again;
# the bound keeps the memory of the kept ones small whatever paths clients send).
_CACHED_LENGTH = 512


def _parse(raw_path: bytes, prefix: str) -> Target | None:
    try:
        parts = segments(raw_path)
    except UnicodeDecodeError:
        return None
    base = [p for p in prefix.split("/") if p]
    if parts[: len(base)] != base:
        return None
    rest = parts[len(base) :]
    if len(rest) < 2 or rest[0] not in API_VERSIONS:
        return None
    rest = rest[1:]
    if rest == ["servers"]:
        return Target("list")
    if rest == ["publish"]:
        return Target("publish")
    if rest[0] != "servers" or len(rest) < 3:
        return None
    rest = rest[1:]
    if "/" in rest[0]:
        name, rest = rest[0], rest[1:]
    else:
        name, rest = f"{rest[0]}/{rest[1]}", rest[2:]
    if not name or any(not part for part in name.split("/")) or name.count("/") != 1:
        return None
    if rest == ["versions"]:
        return Target("list_versions", name)
    if rest == ["status"]:
        return Target("server_status", name)
    if len(rest) == 2 and rest[0] == "versions" and rest[1]:
        return Target("version", name, rest[1])
    if len(rest) == 3 and rest[0] == "versions" and rest[1] and rest[2] == "status":
        return Target("version_status", name, rest[1])
    return None


_parse_kept = lru_cache(maxsize=4096)(_parse)


__all__ = ["API_VERSIONS", "Target", "parse", "segments"]
