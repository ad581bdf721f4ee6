"""Access rules: which people and which machine clients may obtain tokens for a resource, and
with which scopes.

A rule names a resource (its canonical URI, or ``*`` for every resource), who it admits, and the
scopes it grants (``*``: every scope the resource has). Who:

==================  =================================================================
``*``               every signed-in person
``user:NAME``       the person with this user name
``group:NAME``      members of a group (local groups, or mapped from an identity provider)
``domain:D``        people whose e-mail is at domain ``D`` (``*.D`` for its subdomains)
``idp:NAME``        people who sign in through identity provider ``NAME`` (``idp:local``:
                    local accounts with a password)
``client:ID``       the machine client ``ID`` acting for itself (client_credentials)
==================  =================================================================

People and machines are decided apart. A resource no rule about people names is open to every
signed-in person (as before access rules existed); once one does, only the people it admits get
in, with the union of the scopes their rules grant. A machine client gets a token only where a
``client:`` rule names it, and only the scopes that rule grants: never what its own metadata
asks for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

EVERY = "*"
KINDS = ("user", "group", "domain", "idp", "client")
LOCAL_IDP = "local"
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_VALUE = re.compile(r"[^\s\x00-\x1f\x7f]{1,500}")


class RuleError(ValueError):
    """A rule that cannot be stored; the message says what is wrong and what to write."""


@dataclass(frozen=True)
class AccessRule:
    """``who`` may obtain tokens for ``resource`` with ``scopes`` (``("*",)``: all of them)."""

    resource: str
    who: str
    scopes: tuple[str, ...] = (EVERY,)

    @property
    def is_machine(self) -> bool:
        """Whether the rule admits a machine client rather than people."""
        return self.who.startswith("client:")

    def applies_to(self, resource: str) -> bool:
        """Whether the rule is about ``resource``."""
        return self.resource in (EVERY, resource)


@dataclass(frozen=True)
class Person:
    """What rules are matched against: the person's user name, groups, e-mail and the identity
    providers they sign in through (``local`` for a password)."""

    username: str
    groups: frozenset[str] = frozenset()
    email: str | None = None
    providers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    """The outcome: whether access is granted, the scopes granted, the scopes asked for but
    withheld, and whether any rule applied (False: the resource is open to everyone)."""

    allowed: bool
    scopes: frozenset[str] = frozenset()
    withheld: frozenset[str] = frozenset()
    restricted: bool = True
    rules: tuple[AccessRule, ...] = field(default=(), compare=False)

    @property
    def grants_something(self) -> bool:
        """Whether a token may be issued: access allowed, and not every scope asked for
        withheld (asking for none is fine)."""
        return self.allowed and not (self.withheld and not self.scopes)


def check_who(who: str) -> str:
    """``who`` if it is a valid selector; RuleError naming the accepted forms otherwise."""
    if who == EVERY:
        return who
    kind, sep, value = who.partition(":")
    if not sep or kind not in KINDS or not _VALUE.fullmatch(value):
        raise RuleError(
            f"{who!r} does not say who: use *, user:NAME, group:NAME, domain:example.com, "
            "idp:PROVIDER (idp:local for password accounts) or client:CLIENT_ID"
        )
    if kind == "domain" and ("@" in value or value.removeprefix("*.").startswith(".")):
        raise RuleError(f"{who!r}: give a bare e-mail domain, like domain:example.com")
    return f"domain:{value.lower()}" if kind == "domain" else who


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes of a rule, sorted; ``*`` alone means every scope of the resource."""
    found = sorted(set(scopes))
    if not found:
        raise RuleError("a rule grants at least one scope; * grants every scope of the resource")
    if EVERY in found and len(found) > 1:
        raise RuleError("* already grants every scope; list scopes or give *, not both")
    for scope in found:
        if scope != EVERY and not _SCOPE_TOKEN.fullmatch(scope):
            raise RuleError(f"{scope!r} is not a scope (RFC 6749 section 3.3)")
    return tuple(found)


def _domain_matches(pattern: str, email: str | None) -> bool:
    if not email or "@" not in email:
        return False
    domain = email.rsplit("@", 1)[1].lower()
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


def admits(who: str, person: Person) -> bool:
    """Whether the selector ``who`` matches ``person`` (never for ``client:``)."""
    if who == EVERY:
        return True
    kind, _, value = who.partition(":")
    if kind == "user":
        return person.username == value
    if kind == "group":
        return value in person.groups
    if kind == "domain":
        return _domain_matches(value, person.email)
    if kind == "idp":
        return value in person.providers
    return False


def _granted(rules: Iterable[AccessRule]) -> frozenset[str] | None:
    """The union of the rules' scopes; None when one of them grants every scope."""
    out: set[str] = set()
    for rule in rules:
        if EVERY in rule.scopes:
            return None
        out.update(rule.scopes)
    return frozenset(out)


def decide_person(
    rules: Iterable[AccessRule], resource: str, person: Person, requested: Iterable[str]
) -> Decision:
    """May ``person`` obtain a token for ``resource``, and with which of the ``requested``
    scopes? Scopes their rules do not grant are withheld (left out of the grant)."""
    asked = frozenset(requested)
    about = [r for r in rules if r.applies_to(resource) and not r.is_machine]
    if not about:
        return Decision(True, asked, restricted=False)
    matching = tuple(r for r in about if admits(r.who, person))
    if not matching:
        return Decision(False, withheld=asked)
    granted = _granted(matching)
    if granted is None:
        return Decision(True, asked, rules=matching)
    return Decision(True, asked & granted, asked - granted, rules=matching)


def decide_machine(
    rules: Iterable[AccessRule],
    resource: str,
    client_id: str,
    requested: Iterable[str],
    resource_scopes: Iterable[str],
) -> Decision:
    """May machine client ``client_id`` obtain a token for ``resource`` with the ``requested``
    scopes (none: every scope its rules grant on the resource)? Only ``client:`` rules count."""
    asked = frozenset(requested)
    matching = tuple(r for r in rules if r.applies_to(resource) and r.who == f"client:{client_id}")
    if not matching:
        return Decision(False, withheld=asked)
    granted = _granted(matching)
    everything = frozenset(resource_scopes)
    if not asked:
        return Decision(True, everything if granted is None else granted, rules=matching)
    if granted is None:
        return Decision(True, asked, rules=matching)
    return Decision(not (asked - granted), asked & granted, asked - granted, rules=matching)


__all__ = [
    "EVERY",
    "KINDS",
    "LOCAL_IDP",
    "AccessRule",
    "Decision",
    "Person",
    "RuleError",
    "admits",
    "check_scopes",
    "check_who",
    "decide_machine",
    "decide_person",
]
