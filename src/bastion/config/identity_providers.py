"""``[[upstreams]]``: the identity providers people sign in with (federation).

Which preset settings each kind requires and takes, and what a kind then means (endpoints,
scopes, claims), is one record per kind in :mod:`bastion.identity.provider_kinds`; the rules
between settings are checked here.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bastion.identity.provider_kinds import (
    ENTRA_SHARED_TENANTS,
    KINDS,
    PRESET_SETTINGS,
)
from bastion.identity.provider_kinds import KindName as IdentityProviderKind
from bastion.oauth.endpoint_url import EndpointUrlPolicy

_PROVIDER_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
# Parameters bastion sets itself in the upstream authorization request; not configurable.
_PROTOCOL_PARAMETERS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "resource",
        "audience",
        "response_mode",
        "request",
        "request_uri",
    }
)
_ENDPOINT_FIELDS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


def _provider_url(value: str, what: str) -> str:
    """The endpoint URL rule (:mod:`bastion.oauth.endpoint_url`), http on loopback only."""
    problem = EndpointUrlPolicy().problem(value)
    if problem == "fragment":
        raise ValueError(f"{what} must not have a fragment; got {value!r}")
    if problem == "http":
        raise ValueError(
            f"{what} uses http on a non-loopback host ({value}); identity providers must be "
            "reached over https"
        )
    if problem is not None:
        raise ValueError(f"{what} must be an absolute http(s) URL; got {value!r}")
    return value


class ClaimMappingSettings(BaseModel):
    """Which upstream claim holds each attribute; unset: the kind's default, "": not read."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(
        None, description='The stable user id: "sub" for OpenID Connect, "id" for GitHub.'
    )
    email: str | None = None
    email_verified: str | None = Field(
        None,
        description="A boolean claim saying the e-mail is verified; an e-mail without it is "
        "ignored unless trust_email is set.",
    )
    name: str | None = None
    username: str | None = Field(None, description="A readable user name (preferred_username).")
    groups: str | None = Field(None, description="A list of group names (or ids).")
    organization: str | None = Field(
        None, description="The organisation/tenant (Entra tid, Google hd, Auth0 org_id)."
    )


class AllowRulesSettings(BaseModel):
    """Who may sign in through a provider. Each non-empty list must match (e-mail domain AND
    organisation AND group); within a list one match is enough."""

    model_config = ConfigDict(extra="forbid")

    email_domains: list[str] = Field(
        default_factory=list,
        description='Verified e-mail domains, e.g. "example.com"; "*.example.com" for subdomains.',
    )
    organizations: list[str] = Field(
        default_factory=list,
        description="GitHub organisations, Entra tenant ids, Google Workspace domains (hd), "
        "Auth0 organisation ids; compared without case.",
    )
    groups: list[str] = Field(
        default_factory=list,
        description='Groups (GitHub teams as "org/team-slug"); the user needs one of them.',
    )
    any_account: bool = Field(
        False,
        description="Allow every account of a public provider (Google, GitHub, multi-tenant "
        "Entra) without rules. Rarely what you want.",
    )

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        out = []
        for domain in value:
            bare = domain.removeprefix("*.")
            if not bare or "@" in bare or "/" in bare or bare.startswith("."):
                raise ValueError(
                    f"email_domains takes bare domains like example.com; got {domain!r}"
                )
            out.append(domain.lower())
        return out

    @property
    def is_empty(self) -> bool:
        """Whether no rule restricts anything."""
        return not (self.email_domains or self.organizations or self.groups)


class IdentityProviderSettings(BaseModel):
    """An identity provider people sign in with: ``[[upstreams]]`` (see docs/providers/)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=_PROVIDER_NAME,
        description="Short name in URLs: the redirect URI is <issuer>/login/<name>/callback.",
    )
    kind: IdentityProviderKind = Field(
        description="oidc (OpenID Connect with discovery), oauth2 (plain OAuth 2.0 with a "
        "user-info endpoint), or a preset: entra, okta, auth0, keycloak, google, cognito, github."
    )
    display_name: str | None = Field(None, description='Button text: "Continue with <this>".')
    client_id: str = Field(min_length=1, description="bastion's client id at the provider.")
    client_secret: SecretStr | None = Field(
        None, description="bastion's client secret at the provider (a confidential client)."
    )
    token_endpoint_auth_method: (
        Literal["client_secret_basic", "client_secret_post", "none"] | None
    ) = Field(None, description="Default: the kind's (client_secret_basic for OpenID Connect).")
    scopes: list[str] | None = Field(None, description="Default: the kind's scopes.")
    claims: ClaimMappingSettings = Field(default_factory=ClaimMappingSettings)
    allow: AllowRulesSettings = Field(default_factory=AllowRulesSettings)
    trust_email: bool = Field(
        False,
        description="Treat every e-mail the provider returns as verified (only for a provider "
        "that never returns an address its user has not proven).",
    )
    group_map: dict[str, str] = Field(
        default_factory=dict,
        description="The provider's groups (names or ids) as bastion's groups, e.g. "
        '{ "8f3c1d2e-…" = "finance", "acme/editors" = "editors" }. When set, only mapped groups '
        "are kept, so a provider's group names cannot collide with those access rules name; "
        "when empty, the provider's groups are taken as they are.",
    )
    use_userinfo: bool | None = Field(
        None, description="OpenID Connect: also read the user-info endpoint (default per kind)."
    )
    extra_authorization_params: dict[str, str] = Field(
        default_factory=dict,
        description='Added to the upstream authorization request, e.g. {prompt = "login"}.',
    )
    # Where the provider is: generic kinds.
    issuer: str | None = Field(
        None,
        description="oidc: the issuer (discovery at <issuer>/.well-known/openid-configuration); "
        "oauth2: the identifier accounts are linked under (default: the authorization "
        "endpoint's origin).",
    )
    discovery_url: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    resource: str | None = Field(
        None, description="RFC 8707 resource sent upstream (oidc, oauth2; never Entra v2.0)."
    )
    # Presets.
    tenant: str | None = Field(None, description="entra: tenant id or domain.")
    authority_host: str = Field("login.microsoftonline.com", description="entra: cloud host.")
    domain: str | None = Field(None, description="okta, auth0: the tenant's domain.")
    authorization_server: str | None = Field(
        None,
        description='okta: custom authorization server id (default "default"; "" for '
        "the org authorization server).",
    )
    audience: str | None = Field(None, description="auth0: API identifier sent as audience.")
    base_url: str | None = Field(
        None, description="keycloak: server URL; github: GitHub Enterprise Server URL."
    )
    realm: str | None = Field(None, description="keycloak: realm name.")
    region: str | None = Field(None, description="cognito: AWS region.")
    user_pool_id: str | None = Field(None, description="cognito: user pool id.")
    api_url: str | None = Field(None, description="github: REST API base URL.")
    # Operation.
    allow_private_addresses: bool = Field(
        False,
        description="Reach the provider on loopback/private addresses (development, or an IdP "
        "on your own network). It disables the SSRF guard for this provider.",
    )
    timeout: float = Field(10.0, gt=0, le=60, description="Seconds per request to the provider.")
    store_refresh_token: bool = Field(
        False,
        description="Keep the provider's refresh token, encrypted with secret_key, for later "
        "token exchange. Never given to MCP clients.",
    )
    accept_id_jag: bool = Field(
        False,
        description="Accept this provider's Identity Assertion JWT Authorization Grants "
        "(ID-JAG, enterprise-managed authorization) at the token endpoint: a client the "
        "provider names gets a token for the person, with no browser. See "
        "docs/enterprise-managed-authorization.md.",
    )
    session_max_age: int | None = Field(
        None,
        ge=300,
        description="Seconds a grant of a user linked to this provider may be refreshed, counted "
        "from the sign-in; then the user signs in again, and the allow rules and groups are "
        "checked again. Default: refresh_token_ttl (someone who left the provider keeps access "
        "until then).",
    )

    @field_validator(
        "issuer",
        "discovery_url",
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "base_url",
        "api_url",
    )
    @classmethod
    def _urls(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        return _provider_url(value, info.field_name)

    @field_validator("extra_authorization_params")
    @classmethod
    def _extra(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(value) & _PROTOCOL_PARAMETERS)
        if taken:
            raise ValueError(
                f"extra_authorization_params cannot set {', '.join(taken)}: bastion sets these "
                "itself (use scopes, resource or audience)"
            )
        return value

    @model_validator(mode="after")
    def _kind(self) -> IdentityProviderSettings:
        kind = KINDS[self.kind]
        where = f"upstream {self.name!r} (kind {self.kind})"
        missing = sorted(f for f in kind.required if not getattr(self, f))
        if missing:
            raise ValueError(f"{where} needs {', '.join(missing)}")
        stray = sorted(f for f in PRESET_SETTINGS if getattr(self, f) is not None)
        stray = [f for f in stray if f not in kind.allowed]
        if self.kind == "entra" and self.resource is not None:
            raise ValueError(
                f"{where}: Entra ID v2.0 endpoints refuse the resource parameter (AADSTS901002); "
                "ask for an API's permission in scopes instead, as api://<app-id>/<scope>"
            )
        if stray:
            raise ValueError(f"{where} does not take {', '.join(stray)}")
        if self.kind == "oidc" and not (self.issuer or self.discovery_url):
            raise ValueError(f"{where} needs issuer (or discovery_url)")
        if self.kind == "oauth2" and self.jwks_uri is not None:
            raise ValueError(f"{where}: plain OAuth 2.0 has no id_token; jwks_uri is not used")
        if kind.sets_endpoints:
            overridden = [f for f in _ENDPOINT_FIELDS if getattr(self, f) is not None]
            if overridden:
                raise ValueError(
                    f"{where}: the preset sets the endpoints; drop {', '.join(overridden)} or "
                    'use kind = "oidc"'
                )
        if self.token_endpoint_auth_method != "none" and self.client_secret is None:
            raise ValueError(
                f"{where} needs client_secret (bastion is a confidential client there), or "
                'token_endpoint_auth_method = "none" for a public client with PKCE only'
            )
        if self.token_endpoint_auth_method == "none" and self.client_secret is not None:
            raise ValueError(f"{where}: token_endpoint_auth_method none takes no client_secret")
        if self.accept_id_jag and (self.kind in ("oauth2", "github") or self.is_public):
            raise ValueError(
                f"{where}: accept_id_jag needs an OpenID provider with its own issuer and keys "
                "(an enterprise identity provider), not a plain OAuth 2.0, GitHub or "
                "multi-tenant provider"
            )
        if self.is_public and self.allow.is_empty and not self.allow.any_account:
            raise ValueError(
                f"{where}: anyone with an account there could sign in. Add allow rules "
                "(allow.email_domains, allow.organizations or allow.groups), or set "
                "allow.any_account = true if that is really intended"
            )
        return self

    @property
    def is_public(self) -> bool:
        """Whether anyone on the internet can have an account at this provider."""
        if self.kind == "google":
            return True
        if self.kind == "github":
            return self.base_url is None or urlsplit(self.base_url).hostname == "github.com"
        return self.kind == "entra" and (self.tenant or "").lower() in ENTRA_SHARED_TENANTS

    @property
    def label(self) -> str:
        """The name shown to people."""
        return self.display_name or self.name


__all__ = [
    "ENTRA_SHARED_TENANTS",
    "AllowRulesSettings",
    "ClaimMappingSettings",
    "IdentityProviderKind",
    "IdentityProviderSettings",
]
