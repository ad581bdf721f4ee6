"""The verified identity behind a request: who the token speaks for and what it may do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.types import Scope

_SCOPE_KEY = "bastion.principal"


@dataclass(frozen=True)
class Principal:
    """What a verified access token says (RFC 9068 §2.2, RFC 7662 §2.2).

    ``subject`` is ``sub`` (for client_credentials tokens, the client itself); ``client_id`` the
    client the token was issued to; ``scopes`` the granted scopes; ``claims`` every claim of the
    token or introspection answer; ``token_id`` its ``jti``; ``expires_at`` its ``exp``
    (Unix seconds); ``grant_id`` the grant it belongs to and ``jkt`` the RFC 7638 thumbprint of
    the key the token is bound to (RFC 9449 §6: ``cnf.jkt``), both from ``claims``.
    """

    subject: str
    client_id: str | None
    scopes: frozenset[str]
    # Left out of hash(): a mapping is unhashable, and sub, client_id and jti identify the token.
    claims: Mapping[str, object] = field(hash=False)
    token_id: str | None
    expires_at: int
    # The grant the token belongs to (its ``grant_id`` claim), if it names one: derived from
    # ``claims`` once, as every request checks it against the revocation list.
    grant_id: str | None = field(init=False, compare=False, repr=False)
    # The DPoP key the token is bound to (RFC 9449 §6.1 ``cnf.jkt``), if it is bound: such a
    # token is only accepted with a proof of that key (RFC 9449 §7).
    jkt: str | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        found = self.claims.get("grant_id")
        object.__setattr__(self, "grant_id", found if isinstance(found, str) else None)
        cnf = self.claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
        object.__setattr__(self, "jkt", jkt if isinstance(jkt, str) and jkt else None)

    @property
    def groups(self) -> frozenset[str]:
        """The groups the token says the subject is in (RFC 9068 §2.2.3.1 ``groups``)."""
        found = self.claims.get("groups")
        if isinstance(found, str):
            return frozenset([found])
        if isinstance(found, list):
            return frozenset(g for g in found if isinstance(g, str))
        return frozenset()

    def has_scopes(self, required: frozenset[str] | set[str]) -> bool:
        """Whether every scope in ``required`` was granted (no hierarchy; see ScopePolicy)."""
        return required <= self.scopes


def attach_principal(scope: Scope, principal: Principal) -> None:
    """Record the verified caller in an ASGI scope: ``scope["bastion.principal"]`` and
    ``scope["state"]["principal"]`` (``request.state.principal`` in Starlette)."""
    scope[_SCOPE_KEY] = principal
    state = scope.get("state")
    if state is None:
        scope["state"] = state = {}
    state["principal"] = principal


def principal_of(scope: Scope) -> Principal | None:
    """The caller the resource-server middleware verified for this request, if any."""
    found = scope.get(_SCOPE_KEY)
    return found if isinstance(found, Principal) else None


__all__ = ["Principal", "attach_principal", "principal_of"]
