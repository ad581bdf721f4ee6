"""Upstream identity providers resolved from configuration: generic kinds and presets.

A :class:`ProviderSpec` is everything the federation flow needs to know about one provider: the
protocol it speaks, where its endpoints are (or where its OpenID Connect discovery document is),
which scopes to ask for, which claims carry what, and the allow rules. :func:`resolve` applies
the kind's preset (:mod:`bastion.identity.provider_kinds`) and then the settings that override
it. The names this module exported before the kinds moved are exported from here still.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.config import AllowRulesSettings, IdentityProviderSettings
from bastion.identity.provider_kinds import (
    ENTRA_TENANT_PLACEHOLDER,
    GITHUB_SCOPES,
    KINDS,
    OIDC_SCOPES,
    AuthMethod,
    ClaimNames,
    Protocol,
    discovery_url_for,
)

GITHUB_API_VERSION = "2022-11-28"


@dataclass(frozen=True)
class ProviderSpec:
    """One configured identity provider, with its preset applied."""

    name: str
    kind: str
    label: str
    protocol: Protocol
    client_id: str
    client_secret: str | None = field(repr=False)
    auth_method: AuthMethod
    scopes: tuple[str, ...]
    claims: ClaimNames
    allow: AllowRulesSettings
    # OpenID Connect: the issuer the discovery document and the id_token must name (with
    # ``{tenantid}`` for multi-tenant Entra, replaced by the token's ``tid``); oauth2/github:
    # the identifier accounts are linked under.
    issuer: str
    discovery_url: str | None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    api_url: str | None = None
    use_userinfo: bool = True
    trust_email: bool = False
    # The provider's groups as bastion's (IdentityProviderSettings.group_map); empty: as they are.
    group_map: dict[str, str] = field(default_factory=dict)
    authorization_params: dict[str, str] = field(default_factory=dict)
    token_params: dict[str, str] = field(default_factory=dict)
    # Entra: the discovery document names the tenant by id even when configured by domain.
    entra_issuer: bool = False
    allow_private_addresses: bool = False
    timeout: float = 10.0
    store_refresh_token: bool = False

    def describe(self) -> str:
        """How to name this provider to an operator: ``upstreams[name] (kind)``."""
        return f"upstreams[{self.name}] ({self.kind})"


def _pick(configured: str | None, default: str | None) -> str | None:
    """A configured claim name ("" means: do not read it) or the default."""
    if configured is None:
        return default
    return configured or None


def _claims(cfg: IdentityProviderSettings, defaults: ClaimNames) -> ClaimNames:
    c = cfg.claims
    return ClaimNames(
        subject=c.subject or defaults.subject,
        email=_pick(c.email, defaults.email),
        email_verified=_pick(c.email_verified, defaults.email_verified),
        name=_pick(c.name, defaults.name),
        username=_pick(c.username, defaults.username),
        groups=_pick(c.groups, defaults.groups),
        organization=_pick(c.organization, defaults.organization),
    )


def resolve(cfg: IdentityProviderSettings) -> ProviderSpec:
    """The :class:`ProviderSpec` of one ``[[upstreams]]`` entry (configuration already valid)."""
    where = KINDS[cfg.kind].build(cfg)
    scopes = list(cfg.scopes) if cfg.scopes is not None else list(where.scopes)
    if where.offline_scope and cfg.store_refresh_token and "offline_access" not in scopes:
        scopes.append("offline_access")
    discovery = where.discovery_url
    if where.protocol == "oidc" and discovery is None:
        discovery = discovery_url_for(where.issuer)
    return ProviderSpec(
        name=cfg.name,
        kind=cfg.kind,
        label=cfg.label,
        protocol=where.protocol,
        client_id=cfg.client_id,
        client_secret=cfg.client_secret.get_secret_value() if cfg.client_secret else None,
        auth_method=cfg.token_endpoint_auth_method or where.auth_method,
        scopes=tuple(dict.fromkeys(scopes)),
        claims=_claims(cfg, where.claims),
        allow=cfg.allow,
        issuer=where.issuer,
        discovery_url=discovery,
        authorization_endpoint=cfg.authorization_endpoint or where.authorization_endpoint,
        token_endpoint=cfg.token_endpoint or where.token_endpoint,
        userinfo_endpoint=cfg.userinfo_endpoint or where.userinfo_endpoint,
        jwks_uri=cfg.jwks_uri or where.jwks_uri,
        api_url=where.api_url,
        use_userinfo=where.use_userinfo if cfg.use_userinfo is None else cfg.use_userinfo,
        trust_email=cfg.trust_email,
        group_map=dict(cfg.group_map),
        authorization_params={**where.authorization_params, **cfg.extra_authorization_params},
        token_params=where.token_params,
        entra_issuer=where.entra_issuer,
        allow_private_addresses=cfg.allow_private_addresses,
        timeout=cfg.timeout,
        store_refresh_token=cfg.store_refresh_token,
    )


def redirect_uri(issuer: str, name: str) -> str:
    """bastion's callback for a provider: register exactly this URI at the provider."""
    return f"{issuer}/login/{name}/callback"


__all__ = [
    "ENTRA_TENANT_PLACEHOLDER",
    "GITHUB_API_VERSION",
    "GITHUB_SCOPES",
    "OIDC_SCOPES",
    "AuthMethod",
    "ClaimNames",
    "Protocol",
    "ProviderSpec",
    "discovery_url_for",
    "redirect_uri",
    "resolve",
]
