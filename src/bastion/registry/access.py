"""Who the caller is and what the registry lets them do.

Scopes (registry authorization document, "Registry-Specific Scopes"; checklist G03):
``mcp-registry:read`` to list and read, ``mcp-registry:write`` to publish, update and delete,
``mcp-registry:admin`` (bastion's own, in the same family) for status changes and other people's
entries; the names are configurable (``[registry.scope_names]``). A broader scope implies the
narrower ones (admin ⊃ write ⊃ read), as MCP requires servers to honour scope hierarchies.
Scopes say only which types of operation a caller may do; the rules below decide per entry.
Inside the registry a scope is known by its role, the default name (:data:`READ`, :data:`WRITE`,
:data:`ADMIN`): :func:`caller_of` turns the token's names into roles, so code compares against
these constants whatever the configured names. The old names ``registry:read|write|admin`` and
``registry:read:<group>`` stand for the same roles for one release, never for more.

- **Namespaces.** A server name is ``<namespace>/<server>``. A caller with the write scope may
  publish under a namespace when a ``[registry.namespaces]`` rule for it (the exact namespace,
  ``<prefix>.*`` for every namespace below a prefix, or ``*``) lists one of the caller's
  memberships: ``group:<name>`` (the token's groups claim), ``sub:<subject>``,
  ``client:<client_id>`` (a machine client acting for itself, never a person's token through
  a client), or ``*``. Editing or deleting an existing version also needs the
  caller to be the subject who published it; registry admins may do anything.
- **Admins.** The admin scope counts only for callers ``registry.admins`` lists (default
  ``group:registry-admins``): bastion's AS grants any known scope to whoever consents, so the scope
  alone proves nothing about the person.
- **Visibility** (G04). An entry has groups (audiences) and an approved flag. Admins see every
  entry; the subject who published an entry sees it; anyone else sees an approved entry whose
  groups are empty or meet theirs: the token's groups claim, plus ``<group>`` for each
  finer scope ``mcp-registry:read:<group>``. Anonymous callers (when ``anonymous_read`` is on)
  see approved entries without groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bastion.config import (
    OLD_REGISTRY_SCOPES,
    REGISTRY_SCOPES,
    RegistryScopeNames,
    RegistrySettings,
)
from bastion.resource.policy import ScopePolicy
from bastion.resource.principal import Principal
from bastion.store.registry import Visibility

READ, WRITE, ADMIN = REGISTRY_SCOPES
READ_GROUP_PREFIX = READ + ":"


def scope_policy(names: RegistryScopeNames) -> ScopePolicy:
    """What the resource-server middleware checks before the registry's own rules: the read
    scope on every request (G01), with the hierarchy admin ⊃ write ⊃ read, and each old name
    implying exactly its new one (a token issued before the rename keeps working; an old name
    grants nothing its new name would not)."""
    implies = {names.admin: [names.write], names.write: [names.read]}
    for old, new in zip(OLD_REGISTRY_SCOPES, names.names, strict=True):
        if old != new:
            implies[old] = [new]
    return ScopePolicy(default=[names.read], implies=implies)


# The policy of the default names (configured registries use scope_policy(settings.scope_names)).
SCOPE_POLICY = scope_policy(RegistryScopeNames())
_ROLES = ScopePolicy(implies={ADMIN: [WRITE], WRITE: [READ]})


@dataclass(frozen=True)
class Caller:
    """The verified caller of one request (``principal`` None: anonymous read); ``scopes`` are
    roles (:data:`READ`, :data:`WRITE`, :data:`ADMIN`, ``READ:<group>``), whatever the names in
    the token."""

    principal: Principal | None
    scopes: frozenset[str]
    groups: frozenset[str]
    is_admin: bool

    @property
    def subject(self) -> str | None:
        return self.principal.subject if self.principal else None

    @property
    def client_id(self) -> str | None:
        return self.principal.client_id if self.principal else None

    def has(self, scope: str) -> bool:
        """Whether the token grants ``scope`` (with the hierarchy)."""
        return scope in self.scopes

    def memberships(self) -> frozenset[str]:
        """The ``group:``/``sub:``/``client:`` members this caller matches."""
        found = {f"group:{g}" for g in self.groups}
        if self.subject is not None:
            found.add(f"sub:{self.subject}")
        # client:<id> proves something only for the client acting for itself (client_credentials,
        # which only confidential clients an operator made may use): anyone can present a public
        # client's id.
        if self.client_id is not None and self.subject == self.client_id:
            found.add(f"client:{self.client_id}")
        return frozenset(found)

    def viewer(self) -> Visibility:
        """What this caller may see."""
        from_scopes = {
            s[len(READ_GROUP_PREFIX) :]
            for s in self.scopes
            if s.startswith(READ_GROUP_PREFIX) and len(s) > len(READ_GROUP_PREFIX)
        }
        return Visibility(
            everything=self.is_admin,
            subject=self.subject,
            groups=self.groups | frozenset(from_scopes),
        )


def _matches(members: Iterable[str], caller: Caller) -> bool:
    mine = caller.memberships()
    return any(m == "*" or m in mine for m in members)


def caller_of(principal: Principal | None, settings: RegistrySettings) -> Caller:
    """The caller a verified principal (or anonymity) stands for."""
    if principal is None:
        return Caller(None, frozenset(), frozenset(), is_admin=False)
    names = settings.scope_names
    roles = {role for role in map(names.role, principal.scopes) if role is not None}
    scopes = _ROLES.expand(roles)
    claimed = principal.claims.get(settings.groups_claim)
    groups = (
        frozenset(g for g in claimed if isinstance(g, str) and g)
        if isinstance(claimed, list)
        else frozenset()
    )
    caller = Caller(principal, scopes, groups, is_admin=False)
    admin = ADMIN in scopes and _matches(settings.admins, caller)
    return Caller(principal, scopes, groups, is_admin=admin)


def owns_namespace(caller: Caller, namespace: str, rules: Mapping[str, list[str]]) -> bool:
    """Whether ``caller`` may publish under ``namespace`` (admins may publish anywhere)."""
    if caller.is_admin:
        return True
    for pattern, members in rules.items():
        if _namespace_matches(pattern, namespace) and _matches(members, caller):
            return True
    return False


def _namespace_matches(pattern: str, namespace: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return namespace.startswith(pattern[:-1]) and len(namespace) > len(pattern) - 1
    return pattern == namespace


__all__ = [
    "ADMIN",
    "READ",
    "READ_GROUP_PREFIX",
    "SCOPE_POLICY",
    "WRITE",
    "Caller",
    "caller_of",
    "owns_namespace",
    "scope_policy",
]
