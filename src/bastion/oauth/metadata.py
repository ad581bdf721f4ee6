"""Field rules shared by the metadata documents (RFC 8414 §2, RFC 9728 §2).

Each reader takes a member of a parsed JSON object and returns it typed, or raises
:class:`MetadataError` naming the member, the problem and the value seen. The error is neutral:
the authorization server, the client, federation and the doctor each turn it into their own
exception and words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from bastion.oauth import endpoint_url
from bastion.oauth.endpoint_url import ANY_HTTP

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

INVALID_URL = "is not a valid URL"
Problem = Literal["missing", "not_a_string", "not_a_string_list", "not_a_url"]


class MetadataError(ValueError):
    """A metadata member breaks its rule.

    ``field`` is the member's name, ``problem`` the kind of defect, ``reason`` a short phrase
    ("must be a list of strings") and ``value`` what the document held (None when absent).
    """

    def __init__(self, field: str, problem: Problem, reason: str, value: object = None) -> None:
        super().__init__(f"{field} {reason}; got {value!r}")
        self.field = field
        self.problem = problem
        self.reason = reason
        self.value = value


def url_problem(url: str) -> str | None:
    """What makes ``url`` unfit as a metadata URL, or None: the endpoint URL rule
    (:mod:`bastion.oauth.endpoint_url`) with http left to the caller's policy."""
    problem = ANY_HTTP.problem(url)
    return None if problem is None else url_reason(problem)


def url_reason(problem: endpoint_url.Problem) -> str:
    """The metadata readers' words for an endpoint URL problem."""
    if problem == "invalid":
        return INVALID_URL
    if problem == "fragment":
        return "must not have a fragment"
    if problem == "http":
        return "must use https"
    return "must be an absolute http(s) URL"


def string(doc: Mapping[str, object], name: str) -> str | None:
    """A non-empty string member; None when absent."""
    value = doc.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise MetadataError(name, "not_a_string", "must be a non-empty string", value)
    return value


def required_string(doc: Mapping[str, object], name: str) -> str:
    """A non-empty string member that must be present."""
    value = string(doc, name)
    if value is None:
        raise MetadataError(name, "missing", "is missing")
    return value


def url(doc: Mapping[str, object], name: str) -> str | None:
    """A URL member (see :func:`url_problem`); None when absent."""
    value = string(doc, name)
    if value is not None:
        check_url(name, value)
    return value


def check_url(name: str, value: str) -> str:
    """``value`` when it is fit as the URL member ``name`` (:func:`url_problem`); else raise."""
    if problem := url_problem(value):
        raise MetadataError(name, "not_a_url", problem, value)
    return value


def strings(doc: Mapping[str, object], name: str) -> tuple[str, ...] | None:
    """A JSON array of strings; None when absent."""
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MetadataError(name, "not_a_string_list", "must be a list of strings", value)
    return tuple(value)


def flag(doc: Mapping[str, object], name: str) -> bool | None:
    """A boolean member: only JSON ``true`` and ``false`` count; anything else reads as absent
    (a string "true" enables nothing)."""
    value = doc.get(name)
    return value if isinstance(value, bool) else None


def unknown(doc: Mapping[str, object], model: type[DataclassInstance]) -> Mapping[str, object]:
    """The members of ``doc`` that ``model`` has no field for, read-only (kept as ``extra``)."""
    known = {f.name for f in fields(model)}
    return MappingProxyType({k: v for k, v in doc.items() if k not in known})


def to_json(model: DataclassInstance) -> dict[str, object]:
    """The JSON object of a metadata model: its fields in declaration order, absent (None) ones
    left out, tuples as arrays, then the members of its ``extra``."""
    members: dict[str, object] = {}
    for f in fields(model):
        value = getattr(model, f.name)
        if f.name == "extra":
            members.update(value)
        elif value is not None:
            members[f.name] = list(value) if isinstance(value, tuple) else value
    return members


__all__ = [
    "INVALID_URL",
    "MetadataError",
    "Problem",
    "check_url",
    "flag",
    "required_string",
    "string",
    "strings",
    "to_json",
    "unknown",
    "url",
    "url_problem",
    "url_reason",
]
