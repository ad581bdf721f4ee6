"""Validating a server.json document (the body of publish and of PUT).

Three layers, every failure reported with its location (``body.<path>``):

1. JSON: an object, no member repeated, no NaN or infinite numbers, no NUL characters or lone
   surrogates in strings (a database could not store them faithfully).
2. The released server.json schema, 2025-12-11, shipped in ``schemas/`` (JSON Schema draft 7;
   the ``uri`` format is checked as an absolute RFC 3986 URI).
3. The rules the schema states but cannot enforce exactly (:mod:`bastion.registry.names`), and
   bastion's publish options under ``_meta["dev.mcp-bastion/publish"]``: ``{"groups": [...]}``,
   the audiences that may see the entry.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator, FormatChecker  # type: ignore[import-untyped]

from bastion import safe_json
from bastion.registry.names import group_problem, name_problem, version_problem
from bastion.registry.problems import FieldError, Problem, bad_request

SCHEMA_ID = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
PUBLISH_META = "dev.mcp-bastion/publish"
MAX_GROUPS = 50
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_BAD_URI_CHARS = re.compile(r"[\x00-\x20\x7f<>\"{}|\\^`]")


@cache
def server_schema() -> dict[str, Any]:
    """The vendored server.json schema (2025-12-11)."""
    text = resources.files("bastion.registry").joinpath("schemas/server.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _is_uri(value: object) -> bool:
    """JSON Schema ``format: uri``: an absolute URI (RFC 3986 §4.3)."""
    if not isinstance(value, str):
        return True
    if _BAD_URI_CHARS.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(_URI_SCHEME.fullmatch(parts.scheme)) and bool(parts.netloc or parts.path)


@cache
def _validator() -> Any:
    checker = FormatChecker(formats=())
    checker.checks("uri")(_is_uri)
    return Draft7Validator(server_schema(), format_checker=checker)


def location(path: Iterator[str | int] | list[str | int]) -> str:
    """``body.packages[0].transport`` for a JSON path."""
    out = "body"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"member {key!r} appears twice")
        out[key] = value
    return out


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constants(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a 400 Problem saying why it is not one."""
    try:
        document = safe_json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_refuse_duplicates,
            parse_float=_finite,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else "not UTF-8 JSON"
        raise bad_request(
            "the request body is not a JSON document", FieldError("body", reason[:200])
        ) from None
    if not isinstance(document, dict):
        raise bad_request(
            "the request body must be a JSON object", FieldError("body", "must be an object")
        )
    bad = next(_unstorable(document, []), None)
    if bad is not None:
        raise bad_request(
            "the request body has characters that cannot be stored",
            FieldError(location(bad), "must not contain NUL (U+0000) or lone surrogates"),
        )
    return document


def _bad_text(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _unstorable(value: Any, path: list[str | int]) -> Iterator[list[str | int]]:
    if isinstance(value, str):
        if _bad_text(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if _bad_text(key):
                yield path
            yield from _unstorable(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable(item, [*path, index])


@dataclass(frozen=True)
class ValidServer:
    """A server.json that passed validation, split into what is stored and the publish options."""

    server: dict[str, Any]
    name: str
    version: str
    description: str
    groups: tuple[str, ...] | None


def validate_server(document: dict[str, Any]) -> ValidServer:
    """Check ``document`` (see the module docstring); raise a 400 Problem listing every failing
    field."""
    errors: list[FieldError] = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path)):
        errors.append(
            FieldError.of(location(list(error.absolute_path)), error.message, error.instance)
        )
    for member, check in (("name", name_problem), ("version", version_problem)):
        if member in document:
            problem = check(document[member])
            if problem and not any(e.location == f"body.{member}" for e in errors):
                errors.append(FieldError.of(f"body.{member}", problem, document[member]))
    groups = _publish_groups(document, errors)
    if errors:
        raise Problem(400, "the server.json is not valid (schema 2025-12-11)", errors)
    server = dict(document)
    meta = server.get("_meta")
    if isinstance(meta, dict) and PUBLISH_META in meta:
        rest = {k: v for k, v in meta.items() if k != PUBLISH_META}
        if rest:
            server["_meta"] = rest
        else:
            del server["_meta"]
    return ValidServer(
        server=server,
        name=document["name"],
        version=document["version"],
        description=document["description"],
        groups=groups,
    )


def _publish_groups(document: dict[str, Any], errors: list[FieldError]) -> tuple[str, ...] | None:
    meta = document.get("_meta")
    if not isinstance(meta, dict) or PUBLISH_META not in meta:
        return None
    where = f"body._meta.{PUBLISH_META}"
    options = meta[PUBLISH_META]
    if not isinstance(options, dict):
        errors.append(FieldError.of(where, 'must be an object like {"groups": [...]}', options))
        return None
    unknown = sorted(set(options) - {"groups"})
    if unknown:
        errors.append(FieldError.of(where, f"unknown members {unknown}; only groups", unknown))
    groups = options.get("groups")
    if groups is None:
        return None
    return check_groups(groups, f"{where}.groups", errors)


def check_groups(groups: Any, where: str, errors: list[FieldError]) -> tuple[str, ...] | None:
    """A list of distinct group names, or None after recording why ``groups`` is not one."""
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        errors.append(
            FieldError.of(where, f"must be a list of at most {MAX_GROUPS} groups", groups)
        )
        return None
    for index, group in enumerate(groups):
        problem = group_problem(group)
        if problem:
            errors.append(FieldError.of(f"{where}[{index}]", problem, group))
            return None
    return tuple(sorted(set(groups)))


__all__ = [
    "PUBLISH_META",
    "SCHEMA_ID",
    "ValidServer",
    "check_groups",
    "location",
    "parse_object",
    "server_schema",
    "validate_server",
]
