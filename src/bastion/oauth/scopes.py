"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive, no duplicates in meaning."""

from __future__ import annotations

import re

from bastion.oauth.errors import InvalidScope

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+\Z")


def parse(value: str | None) -> tuple[str, ...]:
    """Split a scope parameter into sorted unique tokens; raise invalid_scope on bad syntax."""
    if value is None:
        return ()
    tokens = value.split(" ")
    out: set[str] = set()
    for token in tokens:
        if token == "":
            continue
        if not _TOKEN.match(token):
            raise InvalidScope(f"scope token {token!r} has characters RFC 6749 section 3.3 forbids")
        out.add(token)
    return tuple(sorted(out))


def join(scopes: tuple[str, ...] | list[str] | set[str] | frozenset[str]) -> str:
    """Join scope tokens into the space-delimited form, sorted for a stable output."""
    return " ".join(sorted(set(scopes)))


__all__ = ["join", "parse"]
