"""From an upstream's claims to an identity bastion can use, and the allow rules applied to it.

The identity is keyed by the upstream issuer and subject (never by e-mail: two providers, or a
provider and a local account, with the same address are different people to bastion). An e-mail
counts only when verified: the provider's ``email_verified`` claim (or the claim the preset
names, e.g. Entra's ``xms_edov``) is true, GitHub marks it primary and verified, or the operator
set ``trust_email``. Unverified addresses are dropped, so an e-mail-domain rule never admits an
address the user merely typed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bastion.identity.providers import ProviderSpec

MAX_GROUPS = 1000
MAX_TEXT = 255


@dataclass(frozen=True)
class UpstreamIdentity:
    """A person as an upstream provider knows them."""

    provider: str
    issuer: str
    subject: str
    email: str | None = None
    name: str | None = None
    username: str | None = None
    groups: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    # Entra sends a "groups overage" pointer instead of the groups when there are over 200.
    groups_incomplete: bool = False


def _text(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:MAX_TEXT] if value else None


def _texts(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return ()
    found = [t for t in (_text(v) for v in items[:MAX_GROUPS]) if t is not None]
    return tuple(dict.fromkeys(found))


def _is_true(value: object) -> bool:
    # Some providers (older Cognito pools among them) send the boolean as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def map_claims(spec: ProviderSpec, claims: Mapping[str, object], issuer: str) -> UpstreamIdentity:
    """The :class:`UpstreamIdentity` the claims describe; ValueError without a subject."""
    names = spec.claims
    subject = _text(claims.get(names.subject))
    if subject is None:
        raise ValueError(f"the upstream claims have no {names.subject!r} (the subject)")
    email = _text(claims.get(names.email)) if names.email else None
    if email is not None:
        verified = spec.trust_email or (
            names.email_verified is not None and _is_true(claims.get(names.email_verified))
        )
        if not verified or "@" not in email:
            email = None
    overage = False
    if names.groups:
        pointers = claims.get("_claim_names")
        overage = isinstance(pointers, dict) and names.groups in pointers
    return UpstreamIdentity(
        provider=spec.name,
        issuer=issuer,
        subject=subject,
        email=email.lower() if email else None,
        name=_text(claims.get(names.name)) if names.name else None,
        username=_text(claims.get(names.username)) if names.username else None,
        groups=_texts(claims.get(names.groups)) if names.groups else (),
        organizations=_texts(claims.get(names.organization)) if names.organization else (),
        groups_incomplete=overage,
    )


def local_groups(spec: ProviderSpec, identity: UpstreamIdentity) -> tuple[str, ...]:
    """The bastion groups of an upstream identity: its groups through ``group_map`` (only the
    mapped ones), or as they are when the provider has no map."""
    if not spec.group_map:
        return identity.groups
    return tuple(dict.fromkeys(spec.group_map[g] for g in identity.groups if g in spec.group_map))


def _domain_allowed(email: str, patterns: list[str]) -> bool:
    domain = email.rsplit("@", 1)[1].lower()
    for pattern in patterns:
        if pattern.startswith("*."):
            if domain.endswith(pattern[1:]):
                return True
        elif domain == pattern:
            return True
    return False


def refusal(spec: ProviderSpec, identity: UpstreamIdentity) -> tuple[str, str] | None:
    """Why the allow rules refuse this identity: (message for the person, detail for the log);
    None when it may sign in. Every non-empty rule list must match."""
    rules = spec.allow
    key = f"upstreams[{spec.name}].allow"
    who = f"{identity.issuer} subject {identity.subject}"
    if rules.email_domains:
        if identity.email is None:
            return (
                f"{spec.label} did not confirm a verified e-mail address for your account.",
                f"{who}: no verified e-mail, and {key}.email_domains is set",
            )
        if not _domain_allowed(identity.email, rules.email_domains):
            domain = identity.email.rsplit("@", 1)[1]
            return (
                f"Accounts with e-mail addresses at {domain} may not sign in here.",
                f"{who}: e-mail domain {domain} is not in {key}.email_domains",
            )
    if rules.organizations:
        wanted = {o.lower() for o in rules.organizations}
        if not wanted & {o.lower() for o in identity.organizations}:
            return (
                f"Your {spec.label} account is not in an organisation allowed to sign in here.",
                f"{who}: organisations {list(identity.organizations)} not in {key}.organizations",
            )
    if rules.groups:
        if identity.groups_incomplete:
            return (
                f"{spec.label} did not send your group memberships (you are in too many "
                "groups), so they could not be checked.",
                f"{who}: groups overage claim; configure the app registration to emit only "
                "the groups assigned to the application",
            )
        if not set(rules.groups) & set(identity.groups):
            return (
                f"Your {spec.label} account is not in a group allowed to sign in here.",
                f"{who}: groups {list(identity.groups)} not in {key}.groups",
            )
    return None


__all__ = ["UpstreamIdentity", "local_groups", "map_claims", "refusal"]
