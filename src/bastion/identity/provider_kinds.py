"""The kinds of upstream identity provider, each in one record: the settings it requires and
takes (checked by :mod:`bastion.config.identity_providers`) and the preset that turns them into
endpoints, scopes and claims (used by :func:`bastion.identity.providers.resolve`).

A new kind is one :class:`ProviderKind` in :data:`KINDS`, its name in :data:`KindName`, its
settings in ``IdentityProviderSettings`` and its page in docs/providers/. The presets follow
each provider's documentation (docs/providers/<kind>.md):

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

This module imports nothing from bastion: configuration validation stands on it, so it reads
the settings through :class:`PresetSettings`, the members its presets use.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

KindName = Literal[
    "oidc", "oauth2", "entra", "okta", "auth0", "keycloak", "google", "cognito", "github"
]
Protocol = Literal["oidc", "oauth2", "github"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]

OIDC_SCOPES = ("openid", "email", "profile")
GITHUB_SCOPES = ("read:user", "user:email", "read:org")
ENTRA_TENANT_PLACEHOLDER = "{tenantid}"
# Entra tenant names that stand for many tenants (multi-tenant sign-in), not one organisation.
ENTRA_SHARED_TENANTS = frozenset({"common", "organizations", "consumers"})
# The settings only some kinds take; a kind that does not allow one refuses it when set.
PRESET_SETTINGS = (
    "issuer",
    "discovery_url",
    "resource",
    "tenant",
    "domain",
    "authorization_server",
    "audience",
    "base_url",
    "realm",
    "region",
    "user_pool_id",
    "api_url",
)


class PresetSettings(typing.Protocol):
    """The members of one ``[[upstreams]]`` entry that the presets read."""

    @property
    def issuer(self) -> str | None: ...
    @property
    def discovery_url(self) -> str | None: ...
    @property
    def authorization_endpoint(self) -> str | None: ...
    @property
    def token_endpoint(self) -> str | None: ...
    @property
    def userinfo_endpoint(self) -> str | None: ...
    @property
    def resource(self) -> str | None: ...
    @property
    def tenant(self) -> str | None: ...
    @property
    def authority_host(self) -> str: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def authorization_server(self) -> str | None: ...
    @property
    def audience(self) -> str | None: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def realm(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def user_pool_id(self) -> str | None: ...
    @property
    def api_url(self) -> str | None: ...
    @property
    def store_refresh_token(self) -> bool: ...


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


def discovery_url_for(issuer: str) -> str:
    """OpenID Connect Discovery 1.0 §4: the issuer without its trailing slash, then the path."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass
class Preset:
    """What a kind decides from its settings: protocol, endpoints, defaults."""

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


def _github(cfg: PresetSettings) -> Preset:
    base = (cfg.base_url or "https://github.com").rstrip("/")
    on_dotcom = urlsplit(base).hostname == "github.com"
    api = cfg.api_url or ("https://api.github.com" if on_dotcom else f"{base}/api/v3")
    return Preset(
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


def _oauth2(cfg: PresetSettings) -> Preset:
    parts = urlsplit(cfg.authorization_endpoint or "")
    where = Preset(
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


def _oidc(cfg: PresetSettings) -> Preset:
    where = Preset(issuer=cfg.issuer or "", discovery_url=cfg.discovery_url)
    if cfg.resource is not None:
        where.authorization_params["resource"] = where.token_params["resource"] = cfg.resource
    return where


def _entra(cfg: PresetSettings) -> Preset:
    tenant = cfg.tenant or ""
    authority = f"https://{cfg.authority_host}/{tenant}/v2.0"
    shared = tenant.lower() in ENTRA_SHARED_TENANTS
    return Preset(
        issuer=f"https://{cfg.authority_host}/{ENTRA_TENANT_PLACEHOLDER}/v2.0"
        if shared
        else authority,
        discovery_url=discovery_url_for(authority),
        claims=ClaimNames(subject="sub", email_verified="xms_edov", organization="tid"),
        use_userinfo=False,  # Graph's user-info has no groups; the id_token carries the claims
        entra_issuer=True,
    )


def _okta(cfg: PresetSettings) -> Preset:
    server = "default" if cfg.authorization_server is None else cfg.authorization_server
    return Preset(issuer=f"https://{cfg.domain}" + (f"/oauth2/{server}" if server else ""))


def _auth0(cfg: PresetSettings) -> Preset:
    where = Preset(
        issuer=f"https://{cfg.domain}/",
        claims=ClaimNames(subject="sub", groups=None, organization="org_id"),
    )
    if cfg.audience:
        where.authorization_params["audience"] = cfg.audience
    return where


def _keycloak(cfg: PresetSettings) -> Preset:
    return Preset(issuer=f"{(cfg.base_url or '').rstrip('/')}/realms/{cfg.realm}")


def _google(cfg: PresetSettings) -> Preset:
    where = Preset(
        issuer="https://accounts.google.com",
        claims=ClaimNames(subject="sub", username=None, groups=None, organization="hd"),
        use_userinfo=False,
        offline_scope=False,  # Google asks for access_type=offline instead
    )
    if cfg.store_refresh_token:
        where.authorization_params.update(access_type="offline", prompt="consent")
    return where


def _cognito(cfg: PresetSettings) -> Preset:
    return Preset(
        issuer=f"https://cognito-idp.{cfg.region}.amazonaws.com/{cfg.user_pool_id}",
        claims=ClaimNames(subject="sub", username="cognito:username", groups="cognito:groups"),
        use_userinfo=False,
    )


@dataclass(frozen=True)
class ProviderKind:
    """One kind of provider: the preset settings it requires and takes, whether it sets the
    endpoints itself (a preset) or takes them from the settings (oidc, oauth2), and ``build``,
    its preset."""

    name: KindName
    build: Callable[[PresetSettings], Preset]
    required: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()
    sets_endpoints: bool = True


def _kind(
    name: KindName,
    build: Callable[[PresetSettings], Preset],
    required: tuple[str, ...] = (),
    also: tuple[str, ...] = (),
    *,
    sets_endpoints: bool = True,
) -> ProviderKind:
    """A kind that requires the settings ``required`` and takes those and ``also``."""
    return ProviderKind(
        name, build, frozenset(required), frozenset(required + also), sets_endpoints
    )


_ALL = (
    _kind("oidc", _oidc, also=("issuer", "discovery_url", "resource"), sets_endpoints=False),
    _kind(
        "oauth2",
        _oauth2,
        ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"),
        ("issuer", "resource"),
        sets_endpoints=False,
    ),
    _kind("entra", _entra, ("tenant",), ("authority_host",)),
    _kind("okta", _okta, ("domain",), ("authorization_server",)),
    _kind("auth0", _auth0, ("domain",), ("audience",)),
    _kind("keycloak", _keycloak, ("base_url", "realm")),
    _kind("google", _google),
    _kind("cognito", _cognito, ("region", "user_pool_id")),
    _kind("github", _github, also=("base_url", "api_url")),
)
KINDS: Mapping[str, ProviderKind] = MappingProxyType({kind.name: kind for kind in _ALL})


__all__ = [
    "ENTRA_SHARED_TENANTS",
    "ENTRA_TENANT_PLACEHOLDER",
    "GITHUB_SCOPES",
    "KINDS",
    "OIDC_SCOPES",
    "PRESET_SETTINGS",
    "AuthMethod",
    "ClaimNames",
    "KindName",
    "Preset",
    "PresetSettings",
    "Protocol",
    "ProviderKind",
    "discovery_url_for",
]
