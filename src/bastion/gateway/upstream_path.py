"""The part of a request path below an upstream's mount path, safe to append to its URL.

Dot segments (``.``, ``..``, also percent-encoded as ``%2e``) are removed as RFC 3986 §5.2.4
does, so the upstream never sees one: servers and proxies behind the gateway resolve them
differently, and ``/mcp/demo/../../secret-admin`` must not become the upstream's
``/secret-admin``. A path whose ``..`` would climb above the mount path, a backslash (some
servers take it for ``/``), or a percent-encoded ``/`` that hides a dot segment once decoded
(``..%2f..%2fsecret``) is refused. Other segments keep the encoding the client sent.
"""

from __future__ import annotations

from urllib.parse import unquote

_DOTS = frozenset({".", ".."})


class UnsafePath(ValueError):
    """A path below the mount path that cannot be forwarded; the message says why."""


def below_mount(mount: str, below: str) -> str:
    """``below`` (the percent-encoded path after ``mount``, empty or starting with ``/``) with
    its dot segments removed; raise :class:`UnsafePath` when it cannot be forwarded."""
    if not below:
        return ""
    kept: list[str] = []
    segments = below.split("/")[1:]
    for segment in segments:
        decoded = unquote(segment)
        if "\\" in decoded:
            raise UnsafePath(f"the path below {mount} has a backslash; use / between segments")
        if decoded not in _DOTS and _DOTS & set(decoded.split("/")):
            raise UnsafePath(
                f"the path below {mount} has a percent-encoded / next to a dot segment (. or ..)"
            )
        if decoded == "..":
            if not kept:
                raise UnsafePath(
                    f"the path goes above {mount}: its '..' segments leave this MCP server's path"
                )
            kept.pop()
        elif decoded != ".":
            kept.append(segment)
    if unquote(segments[-1]) in _DOTS:
        kept.append("")  # RFC 3986 §5.2.4: "/a/b/.." is "/a/"
    return "/" + "/".join(kept)


__all__ = ["UnsafePath", "below_mount"]
