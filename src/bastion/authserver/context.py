"""The authorization server's shared services, made once per app in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

from bastion.clock import Clock
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.store.database import Database
from bastion.tokens.cipher import Cipher
from bastion.tokens.keys import KeyManager

TEMPLATES = Path(__file__).parent / "templates"


def make_templates() -> Environment:
    """The Jinja2 environment for the log-in, consent and error pages (autoescaped)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
    )


@dataclass
class AuthServer:
    """Everything an endpoint needs; reached through ``request.app.state.bastion``."""

    settings: Settings
    db: Database
    keys: KeyManager
    users: LocalUsers
    clients: ClientDirectory
    templates: Environment
    clock: Clock
    access: AccessPolicy
    cipher: Cipher
    # Revoked grants and tokens, kept current from the database by revocation_feed: checked by
    # introspection, published at /revocations, shared with a registry in the same app.
    revocations: RevocationList
    revocation_feed: DatabaseRevocationFeed
    quotas: Quotas
    client_jwks: ClientJwks
    # DPoP proofs on token requests (RFC 9449 §5): checked for every grant.
    dpop: TokenEndpointDPoP
    federation: Federation | None = None
    # The keys of the [[workload_identities]] issuers (the jwt-bearer grant); None without rules.
    workload_keys: WorkloadKeys | None = None
    # bastion as a client of each auth = "oauth" gateway upstream, by name (the connect pages).
    upstreams: dict[str, UpstreamServer] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        """The issuer identifier, string-identical everywhere."""
        return self.settings.issuer

    def url(self, path: str) -> str:
        """An absolute URL of this server for a path like ``/token``."""
        return f"{self.settings.issuer}{path}"


def server(request: Request) -> AuthServer:
    """The AuthServer of the app handling ``request``."""
    found: AuthServer = request.app.state.bastion
    return found


from bastion.access.policy import AccessPolicy  # noqa: E402
from bastion.authserver.client_jwks import ClientJwks  # noqa: E402
from bastion.authserver.clients import ClientDirectory  # noqa: E402
from bastion.authserver.dpop import TokenEndpointDPoP  # noqa: E402
from bastion.authserver.quotas import Quotas  # noqa: E402
from bastion.authserver.workload_keys import WorkloadKeys  # noqa: E402
from bastion.identity.federation import Federation  # noqa: E402
from bastion.resource.revocation import RevocationList  # noqa: E402
from bastion.store.revocation_feed import DatabaseRevocationFeed  # noqa: E402
from bastion.vault.upstream_server import UpstreamServer  # noqa: E402

__all__ = ["AuthServer", "make_templates", "server"]
