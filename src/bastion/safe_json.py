"""JSON from the network, parsed without letting its nesting exhaust the stack.

``json.loads`` recurses once per nested array or object: 40 KB of ``[`` raises RecursionError
(an unhandled 500 with a traceback), and a document just under Python's limit breaks whatever
walks it next (validation, serialisation). :func:`loads` refuses both with a ``ValueError``
subclass, which every caller already treats as "not valid JSON". The depth is only measured
when the text has more ``[`` and ``{`` than the limit, so ordinary documents cost one
``count`` per bracket kind.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class JsonTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")


def loads(
    data: str | bytes | bytearray,
    *,
    max_depth: int = MAX_DEPTH,
    decoder: json.JSONDecoder | None = None,
    **options: Any,
) -> Any:
    """``json.loads(data, **options)`` (``decoder.decode(data)`` with a ``decoder`` made once
    for a hot path, and ``data`` a ``str``), raising :class:`JsonTooDeep` (a ``ValueError``)
    for a document nested deeper than ``max_depth`` arrays and objects."""
    try:
        if decoder is not None and isinstance(data, str):
            document = decoder.decode(data)
        else:
            document = json.loads(data, **options)
    except RecursionError:
        raise JsonTooDeep(max_depth) from None
    if _openers(data) > max_depth and _deeper_than(document, max_depth):
        raise JsonTooDeep(max_depth)
    return document


def _openers(data: str | bytes | bytearray) -> int:
    """How many ``[`` and ``{`` the text has (strings included): a bound on its depth."""
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether ``document`` nests more than ``limit`` levels (walked level by level, without
    recursion)."""
    level: list[Any] = [document] if isinstance(document, dict | list) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for value in level:
            items = value.values() if isinstance(value, dict) else value
            below += [item for item in items if isinstance(item, dict | list)]
        level = below
        depth += 1
    return False


__all__ = ["MAX_DEPTH", "JsonTooDeep", "loads"]
