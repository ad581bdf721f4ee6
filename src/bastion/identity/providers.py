"""Upstream identity providers resolved from configuration: generic kinds and presets.

A :class:`ProviderSpec` is everything the federation flow needs to know about one provider: the
protocol it speaks, where its endpoints are (or where its OpenID Connect discovery document is),
which scopes to ask for, which claims carry what, and the allow rules. Presets fill these in
from a few settings, following each provider's documentation (see docs/providers/<kind>.md):

- ``entra``: Microsoft identity platform v2.0 endpoints of one tenant
  (``https://login.microsoftonline.com/<tenant>/v2.0``). v2.0 takes no ``resource`` parameter
  (permissions for an API are asked as scopes); the ``groups`` claim holds group object ids when
  the app registration emits it; the tenant id (``tid``) is the organisation.
- ``okta``: a custom authorization server (``https://<domain>/oauth2/<id>``, ``default`` unless
  set) or the org authorization server (``authorization_server = ""``).
- ``auth0``: ``https://<domain>/`` (the issuer ends with a slash); ``audience`` names the API the
  upstream access token is for; ``org_id`` is the organisation.
- ``keycloak``: ``<base_url>/realms/<realm>``, groups from a Group Membership mapper.
- ``google``: ``https://accounts.google.com``, the Workspace domain (``hd``) is the organisation.
- ``cognito``: ``https://cognito-idp.<region>.amazonaws.com/<user pool id>``, groups in
  ``cognito:groups``.
- ``github``: OAuth 2.0 (no OpenID Connect): the user, the verified primary e-mail, organisation
  and team memberships come from the REST API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from bastion.config import ENTRA_SHARED_TENANTS, AllowRulesSettings, IdentityProviderSettings

Protocol = Literal["oidc", "oauth2", "github"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]

OIDC_SCOPES = ("openid", "email", "profile")
GITHUB_SCOPES = ("read:user", "user:email", "read:org")
GITHUB_API_VERSION = "2022-11-28"
ENTRA_TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class ClaimNames:
    """The upstream claim names of each attribute; None: not read."""

    subject: str
    email: str | None = "email"
    email_verified: str | None = "email_verified"
    name: str | None = "name"
    username: str | None = "preferred_username"
    groups: str | None = "groups"
    organization: str | None = None


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


def discovery_url_for(issuer: str) -> str:
    """OpenID Connect Discovery 1.0 §4: the issuer without its trailing slash, then the path."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass
class _Where:
    """What a kind decides: protocol, endpoints, defaults."""

    protocol: Protocol = "oidc"
    issuer: str = ""
    discovery_url: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    api_url: str | None = None
    auth_method: AuthMethod = "client_secret_basic"
    scopes: tuple[str, ...] = OIDC_SCOPES
    claims: ClaimNames = field(default_factory=lambda: ClaimNames(subject="sub"))
    use_userinfo: bool = True
    offline_scope: bool = True
    entra_issuer: bool = False
    authorization_params: dict[str, str] = field(default_factory=dict)
    token_params: dict[str, str] = field(default_factory=dict)


def _github(cfg: IdentityProviderSettings) -> _Where:
    base = (cfg.base_url or "https://github.com").rstrip("/")
    on_dotcom = urlsplit(base).hostname == "github.com"
    api = cfg.api_url or ("https://api.github.com" if on_dotcom else f"{base}/api/v3")
    return _Where(
        protocol="github",
        issuer=base,
        authorization_endpoint=f"{base}/login/oauth/authorize",
        token_endpoint=f"{base}/login/oauth/access_token",
        api_url=api.rstrip("/"),
        auth_method="client_secret_post",
        scopes=GITHUB_SCOPES,
        # The names of the claims github.github_claims builds from the REST API.
        claims=ClaimNames(subject="id", username="login", organization="organizations"),
        use_userinfo=False,
        offline_scope=False,
    )


def _oauth2(cfg: IdentityProviderSettings) -> _Where:
    parts = urlsplit(cfg.authorization_endpoint or "")
    where = _Where(
        protocol="oauth2",
        issuer=cfg.issuer or f"{parts.scheme}://{parts.netloc}",
        authorization_endpoint=cfg.authorization_endpoint,
        token_endpoint=cfg.token_endpoint,
        userinfo_endpoint=cfg.userinfo_endpoint,
        scopes=(),
        offline_scope=False,
    )
    if cfg.resource is not None:
        where.authorization_params["resource"] = where.token_params["resource"] = cfg.resource
    return where


def _oidc(cfg: IdentityProviderSettings) -> _Where:
    where = _Where(issuer=cfg.issuer or "", discovery_url=cfg.discovery_url)
    if cfg.resource is not None:
        where.authorization_params["resource"] = where.token_params["resource"] = cfg.resource
    return where


def _entra(cfg: IdentityProviderSettings) -> _Where:
    tenant = cfg.tenant or ""
    authority = f"https://{cfg.authority_host}/{tenant}/v2.0"
    shared = tenant.lower() in ENTRA_SHARED_TENANTS
    return _Where(
        issuer=f"https://{cfg.authority_host}/{ENTRA_TENANT_PLACEHOLDER}/v2.0"
        if shared
        else authority,
        discovery_url=discovery_url_for(authority),
        claims=ClaimNames(subject="sub", email_verified="xms_edov", organization="tid"),
        use_userinfo=False,  # Graph's user-info has no groups; the id_token carries the claims
        entra_issuer=True,
    )


def _okta(cfg: IdentityProviderSettings) -> _Where:
    server = "default" if cfg.authorization_server is None else cfg.authorization_server
    return _Where(issuer=f"https://{cfg.domain}" + (f"/oauth2/{server}" if server else ""))


def _auth0(cfg: IdentityProviderSettings) -> _Where:
    where = _Where(
        issuer=f"https://{cfg.domain}/",
        claims=ClaimNames(subject="sub", groups=None, organization="org_id"),
    )
    if cfg.audience:
        where.authorization_params["audience"] = cfg.audience
    return where


def _keycloak(cfg: IdentityProviderSettings) -> _Where:
    return _Where(issuer=f"{(cfg.base_url or '').rstrip('/')}/realms/{cfg.realm}")


def _google(cfg: IdentityProviderSettings) -> _Where:
    where = _Where(
        issuer="https://accounts.google.com",
        claims=ClaimNames(subject="sub", username=None, groups=None, organization="hd"),
        use_userinfo=False,
        offline_scope=False,  # Google asks for access_type=offline instead
    )
    if cfg.store_refresh_token:
        where.authorization_params.update(access_type="offline", prompt="consent")
    return where


def _cognito(cfg: IdentityProviderSettings) -> _Where:
    return _Where(
        issuer=f"https://cognito-idp.{cfg.region}.amazonaws.com/{cfg.user_pool_id}",
        claims=ClaimNames(subject="sub", username="cognito:username", groups="cognito:groups"),
        use_userinfo=False,
    )


_KINDS = {
    "github": _github,
    "oauth2": _oauth2,
    "oidc": _oidc,
    "entra": _entra,
    "okta": _okta,
    "auth0": _auth0,
    "keycloak": _keycloak,
    "google": _google,
    "cognito": _cognito,
}


def resolve(cfg: IdentityProviderSettings) -> ProviderSpec:
    """The :class:`ProviderSpec` of one ``[[upstreams]]`` entry (configuration already valid)."""
    where = _KINDS[cfg.kind](cfg)
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
