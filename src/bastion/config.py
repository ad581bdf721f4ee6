"""One settings model for all of bastion: a TOML file, then ``BASTION_*`` environment variables.

Nested sections use ``__`` in environment names, e.g. ``BASTION_TOKENS__ACCESS_TOKEN_TTL=300``.
Nothing else in bastion reads the environment: build a :class:`Settings` and pass it in.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bastion.oauth.redirect_uri import is_loopback_host
from bastion.oauth.resource import canonical
from bastion.resource.policy import ScopePolicySettings

# Ed25519 is the fully-specified name of RFC 9864; EdDSA is the older polymorphic name, kept for
# verifiers that do not know Ed25519 yet.
SigningAlg = Literal["ES256", "Ed25519", "EdDSA", "RS256"]


class ResourceSettings(BaseModel):
    """A protected resource (MCP server, gateway route, registry) tokens may be issued for."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="The resource's canonical URI, sent by clients as `resource`.")
    name: str | None = None
    scopes: list[str] = Field(default_factory=list, description="Scopes this resource accepts.")

    @field_validator("uri")
    @classmethod
    def _canonical(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"resource uri must be an absolute http(s) URI; got {value!r}")
        return canonical(value)


IdentityClaim = Literal["email", "name", "groups"]
_IDENTITY_CLAIMS: tuple[IdentityClaim, ...] = ("email", "name", "groups")


class TokenSettings(BaseModel):
    """Lifetimes and signing of the tokens the authorization server issues."""

    model_config = ConfigDict(extra="forbid")

    access_token_ttl: int = Field(600, ge=30, le=86400, description="Seconds.")
    refresh_token_ttl: int = Field(30 * 86400, ge=60, description="Seconds of a refresh family.")
    code_ttl: int = Field(60, ge=10, le=600, description="Authorization code lifetime, seconds.")
    refresh_reuse_window: int = Field(
        10,
        ge=0,
        le=120,
        description="Seconds during which the client that rotated a refresh token may present "
        "it again and get the same successor (an answer lost to a crash or a dropped "
        "connection, two processes of one client refreshing together). Outside it, or from "
        "another client, reuse revokes the whole grant (RFC 9700 4.14.2). 0: no window.",
    )
    signing_alg: SigningAlg = "ES256"
    key_prepublish: int = Field(
        300,
        ge=0,
        description="Seconds a rotated-in key is published in the JWKS before it signs, so "
        "verifiers that cache the JWKS (bastion serves it with max-age=300) already know it.",
    )
    key_refresh: int = Field(
        30,
        ge=1,
        le=3600,
        description="Seconds between reloads of the signing keys from the database: how soon "
        "every process sees a rotation made by another one or by `bastion keys rotate`.",
    )
    identity_claims: list[IdentityClaim] = Field(
        default_factory=lambda: list(_IDENTITY_CLAIMS),
        description="The user's attributes put in access tokens when known (RFC 9068 §2.2.3.1; "
        "from the upstream identity provider for federated users). Drop those your resource "
        "servers do not need (RFC 9068 §6).",
    )


class CimdSettings(BaseModel):
    """Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    allow_private_addresses: bool = Field(
        False,
        description="Allow fetching documents from loopback/private/link-local addresses and "
        "over http. For local development only: it disables the SSRF guard.",
    )
    timeout: float = Field(5.0, gt=0, le=30)
    max_bytes: int = Field(5 * 1024, ge=512, le=1024 * 1024)
    max_redirects: int = Field(
        0,
        ge=0,
        le=10,
        description="Redirects followed when fetching a document. 0, as later revisions of the "
        "CIMD draft require: the document must be served at the client_id URL itself.",
    )
    default_cache_ttl: int = Field(300, ge=0, description="Seconds, when no cache headers.")
    max_cache_ttl: int = Field(86400, ge=0)
    trusted_domains: list[str] = Field(
        default_factory=list,
        description="If not empty, only client_id URLs on these hosts (or their subdomains) are "
        "accepted.",
    )


class RegistrationSettings(BaseModel):
    """Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    initial_access_token: SecretStr | None = Field(
        None, description="If set, registration requests must carry it as a Bearer token."
    )
    unused_client_ttl: int = Field(
        7 * 86400,
        ge=0,
        description="Seconds after which a registered client that never obtained a token is "
        "deleted; 0 keeps them forever.",
    )


class QuotaSettings(BaseModel):
    """Limits on what anyone may make the authorization server store or fetch before
    authenticating. Counted per client address (an IPv6 /64 is one address; behind a proxy, see
    trusted_proxies) and overall, in the database, so they hold for all processes together.
    Beyond a limit the request gets 429 with Retry-After."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    registrations_per_address: int = Field(
        30, ge=1, description="Dynamic client registrations (RFC 7591) per address per hour."
    )
    registrations: int = Field(
        1000, ge=1, description="Dynamic client registrations per hour from all addresses."
    )
    pending_authorizations_per_address: int = Field(
        200,
        ge=1,
        description="Authorization requests waiting for their sign-in (at most 15 minutes "
        "each) per address.",
    )
    pending_authorizations: int = Field(
        20000, ge=1, description="Authorization requests waiting for their sign-in, in all."
    )
    cimd_fetches_per_address: int = Field(
        30,
        ge=1,
        description="Client ID Metadata Documents fetched (not served from the cache) per "
        "minute for requests from one address.",
    )
    cimd_fetches: int = Field(
        300, ge=1, description="Client ID Metadata Documents fetched per minute in all."
    )


class UnknownClientSettings(BaseModel):
    """What to do with a client_id nobody registered (e.g. VS Code's built-in id)."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["refuse", "loopback_public"] = Field(
        "refuse",
        description="refuse: show an error page. loopback_public: admit it as a public client "
        "restricted to loopback redirect URIs and the authorization_code grant.",
    )


class LoginSettings(BaseModel):
    """The browser log-in and consent pages."""

    model_config = ConfigDict(extra="forbid")

    local_users: bool = True
    session_ttl: int = Field(8 * 3600, ge=60)
    remember_consent: bool = True
    consent_ttl: int = Field(
        30 * 86400,
        ge=0,
        description="Seconds a remembered consent lasts; after that the person is asked again. "
        "0: consent is never remembered.",
    )
    min_password_length: int = Field(
        15,
        ge=8,
        le=64,
        description="Fewest characters of a password set with `bastion users add|passwd` "
        "(NIST SP 800-63B-4 §3.1.1.2: 15 for a password that is the only factor).",
    )
    max_failures: int = Field(
        10,
        ge=1,
        description="Failed log-ins per user name and address (an IPv6 /64 counts as one "
        "address) before a pause until failure_window has passed.",
    )
    failure_window: int = Field(900, ge=60, description="Seconds the failure count covers.")
    account_max_failures: int = Field(
        20,
        ge=1,
        description="Failed log-ins for one user name, from any addresses, before each further "
        "attempt must wait: 1 s after the last failure, then 2, 4, 8… up to max_backoff. A "
        "correct password is refused while waiting.",
    )
    max_backoff: int = Field(
        900,
        ge=1,
        le=86400,
        description="Longest wait, in seconds, between attempts on one user name: how long at "
        "most someone guessing a user's password can keep that user from signing in after "
        "their own last attempt.",
    )
    account_failure_window: int = Field(
        86400,
        ge=60,
        description="Seconds without a failed log-in after which a user name's count starts "
        "again (a successful log-in resets it at once).",
    )


_UPSTREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# Inherited by stdio upstream processes; anything else (the gateway's own secrets included) must
# be configured per upstream in `env`. The same list as the MCP SDK's stdio client.
_INHERITED_ENVIRONMENT = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR")


_SERVER_NAME = re.compile(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+")


class UpstreamListingSettings(BaseModel):
    """How an upstream with ``publish = true`` appears in the registry
    (``[gateway.upstreams.registry]``; docs/gateway.md, "Listing an upstream in the registry")."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None,
        description="Server name in the registry, <namespace>/<name> in reverse-DNS form; "
        "default: the gateway's host name reversed, '/', the upstream's name "
        "(gateway.example.com -> com.example.gateway/notes).",
    )
    description: str | None = Field(
        None, min_length=1, max_length=100, description="Default: '<name> through the gateway'."
    )
    version: str = Field("1.0.0", description="The version listed (one exact version).")
    groups: list[str] | None = Field(
        None,
        description="Who may see the entry (registry groups); default: registry.default_groups.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not (3 <= len(value) <= 200 and _SERVER_NAME.fullmatch(value)):
            raise ValueError(
                f"must be <namespace>/<name> in reverse-DNS form (3 to 200 characters, like "
                f"com.example.tools/notes); got {value!r}"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        from bastion.registry.names import version_problem

        problem = version_problem(value)
        if problem is not None:
            raise ValueError(f"version {value!r} {problem}")
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str] | None) -> list[str] | None:
        from bastion.registry.names import group_problem

        for group in value or []:
            if group_problem(group) is not None:
                raise ValueError(f"group {group!r} {group_problem(group)}")
        return None if value is None else sorted(set(value))


def listing_name(public_url: str, upstream: str) -> str:
    """The default registry name of an upstream: the gateway's host name reversed, '/', the
    upstream's name; a ValueError when the gateway's host is an IP address."""
    host = urlsplit(public_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return ".".join(reversed(host.split("."))) + "/" + upstream
    raise ValueError(
        f"upstream {upstream!r} has publish = true but the gateway's URL has no host name to "
        f"make its registry name from ({public_url}); set [gateway.upstreams.registry] name"
    )


class UpstreamSettings(BaseModel):
    """One MCP server behind the gateway: a streamable HTTP URL or a stdio command."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_UPSTREAM_NAME, description="Short name, used in logs and audit.")
    path: str = Field(description='Mount path on the gateway, e.g. "/mcp/notes".')
    url: str | None = Field(None, description="Streamable HTTP endpoint of the upstream server.")
    command: list[str] | None = Field(
        None, description="A stdio MCP server to start, one process per session: argv."
    )
    env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Environment of a stdio upstream, added to HOME, PATH, LANG and a few more "
        "(nothing else of the gateway's environment is passed on).",
    )
    cwd: Path | None = Field(None, description="Working directory of a stdio upstream.")
    resource: str | None = Field(
        None,
        description="Canonical resource URI tokens must be issued for (RFC 8707); default: "
        "gateway public_url + path.",
    )
    scopes: list[str] = Field(
        default_factory=list, description="scopes_supported in its protected resource metadata."
    )
    policy: ScopePolicySettings = Field(
        default_factory=ScopePolicySettings,
        description="Scopes required per MCP method and tool name.",
    )
    forward_identity: bool = Field(
        False,
        description="Send the verified subject, client and scopes as X-Bastion-* headers signed "
        "with gateway.identity_secret.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Headers added to every upstream request, e.g. the upstream's own "
        "Authorization. The client's token is never forwarded.",
    )
    timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Seconds to connect and for the upstream to answer (for SSE: to start "
        "the stream); 504 when exceeded.",
    )
    session_idle_timeout: float = Field(
        600.0, gt=0, description="stdio: seconds a session without traffic keeps its process."
    )
    max_sessions: int = Field(
        32, ge=1, le=10000, description="stdio: processes at most; more sessions get 503."
    )
    max_sessions_per_subject: int = Field(
        4,
        ge=1,
        le=10000,
        description="stdio: sessions one subject (the token's sub) may hold at once, so that "
        "one token holder cannot take every process; more get 429.",
    )

    publish: bool = Field(
        False,
        description="List this upstream in the registry (a server.json whose streamable-http "
        "remote is its gateway URL), kept in step with this configuration at each registry "
        "start and by `bastion registry sync-gateway`.",
    )
    registry: UpstreamListingSettings = Field(
        default_factory=UpstreamListingSettings,
        description="Name, description, version and groups of the registry entry (publish).",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        path = value.rstrip("/")
        if not value.startswith("/") or not path:
            raise ValueError(f'path must start with "/" and name a path below it; got {value!r}')
        if any(c in path for c in "?#%\\") or any(
            segment in ("", ".", "..") for segment in path.split("/")[1:]
        ):
            raise ValueError(f"path must be a plain URL path like /mcp/notes; got {value!r}")
        if path == "/.well-known" or path.startswith("/.well-known/"):
            raise ValueError(f"path must not be under /.well-known; got {value!r}")
        return path

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ValueError(f"url must be an absolute http(s) URL; got {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        reserved = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"}
        for name, secret in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"header name {name!r} is not a valid HTTP field name")
            if name.lower() in reserved or name.lower().startswith("x-bastion-"):
                raise ValueError(f"header {name!r} is set by the gateway and cannot be configured")
            if any(c in secret.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: the value must not contain CR, LF or NUL")
        return value

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"resource must be an absolute http(s) URI; got {value!r}")
        return canonical(value)

    @model_validator(mode="after")
    def _transport(self) -> UpstreamSettings:
        if (self.url is None) == (self.command is None):
            raise ValueError(
                f"upstream {self.name!r} needs exactly one of url (streamable HTTP) or command "
                "(stdio)"
            )
        if self.command is not None and not self.command:
            raise ValueError(f"upstream {self.name!r}: command must name a program")
        if self.url is not None and (self.env or self.cwd is not None):
            raise ValueError(f"upstream {self.name!r}: env and cwd apply to command upstreams only")
        return self

    def process_environment(self) -> dict[str, str]:
        """The environment of a stdio upstream process: a few inherited variables plus `env`."""
        import os

        inherited = {k: os.environ[k] for k in _INHERITED_ENVIRONMENT if k in os.environ}
        return {**inherited, **{k: v.get_secret_value() for k, v in self.env.items()}}


def _service_url(value: str | None) -> str | None:
    """An absolute http(s) URL without query or fragment, trailing slash removed (public_url,
    jwks_uri of the gateway and the registry)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL; got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment; got {value!r}")
    return value.rstrip("/")


class RevocationSettings(BaseModel):
    """How revoked grants and tokens reach every resource (the gateway, the registry, and any
    server using ``bastion.resource``) without a call to the AS per request; see
    docs/deployment.md, "Revocation"."""

    model_config = ConfigDict(extra="forbid")

    poll_interval: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Seconds between reads of the revocations table on SQLite (PostgreSQL "
        "announces each revocation with NOTIFY instead).",
    )
    feed: Literal["database", "http"] = Field(
        "database",
        description="How the gateway, and a registry on its own origin, learn of revocations: "
        "from bastion's database (the same database_url and database_schema; nothing is "
        "migrated from there), or from the AS's revocation document over HTTP (for a gateway "
        "that cannot reach the database).",
    )
    url: str | None = Field(
        None, description='The revocation document for feed = "http"; default <issuer>/revocations.'
    )
    max_wait: int = Field(
        25,
        ge=1,
        le=60,
        description="Longest the AS holds a GET /revocations?wait=N before answering 304, and "
        "what the HTTP feed asks for.",
    )
    max_waiters: int = Field(
        1000,
        ge=1,
        description="Long polls of /revocations one AS process holds at once; beyond, 503 with "
        "Retry-After (each resource-server process holds one).",
    )

    @field_validator("url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return _service_url(value)


class GatewaySettings(BaseModel):
    """The gateway: OAuth in front of existing MCP servers (``bastion gateway``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    public_url: str | None = Field(
        None, description="The gateway's public base URL, as clients see it; default: the issuer."
    )
    jwks_uri: str | None = Field(
        None, description="Where the AS publishes its keys; default: <issuer>/jwks."
    )
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    identity_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key (32+ characters) signing the X-Bastion-* identity headers "
        "of upstreams with forward_identity.",
    )
    audit_log: Path | None = Field(
        None, description="Append audit records as JSON lines here (mode 0600); default: log only."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins browsers may call the gateway from; any other Origin gets 403.",
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body.")

    @field_validator("public_url", "jwks_uri")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return _service_url(value)

    @model_validator(mode="after")
    def _upstreams(self) -> GatewaySettings:
        names = [u.name for u in self.upstreams]
        for name in {n for n in names if names.count(n) > 1}:
            raise ValueError(f"upstream name {name!r} is used twice; names must be unique")
        paths = [u.path for u in self.upstreams]
        for i, a in enumerate(paths):
            for b in paths[i + 1 :]:
                if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
                    raise ValueError(
                        f"upstream paths {a!r} and {b!r} overlap; give each upstream its own path"
                    )
        if self.identity_secret is not None and len(self.identity_secret.get_secret_value()) < 32:
            raise ValueError("gateway.identity_secret must have at least 32 characters")
        for u in self.upstreams:
            if u.forward_identity and self.identity_secret is None:
                raise ValueError(
                    f"upstream {u.name!r} has forward_identity but gateway.identity_secret is "
                    "not set"
                )
        return self


# Upstream identity providers (federation) ----------------------------------------------------

IdentityProviderKind = Literal[
    "oidc", "oauth2", "entra", "okta", "auth0", "keycloak", "google", "cognito", "github"
]
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
_ENTRA_SHARED_TENANTS = frozenset({"common", "organizations", "consumers"})
_KIND_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required preset fields, allowed preset fields)
    "oidc": (set(), {"issuer", "discovery_url", "resource"}),
    "oauth2": (
        {"authorization_endpoint", "token_endpoint", "userinfo_endpoint"},
        {"issuer", "resource"},
    ),
    "entra": ({"tenant"}, {"tenant", "authority_host"}),
    "okta": ({"domain"}, {"domain", "authorization_server"}),
    "auth0": ({"domain"}, {"domain", "audience"}),
    "keycloak": ({"base_url", "realm"}, {"base_url", "realm"}),
    "google": (set(), set()),
    "cognito": ({"region", "user_pool_id"}, {"region", "user_pool_id"}),
    "github": (set(), {"base_url", "api_url"}),
}
_PRESET_FIELDS = (
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
_ENDPOINT_FIELDS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


def _provider_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL; got {value!r}")
    if parts.fragment:
        raise ValueError(f"{what} must not have a fragment; got {value!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{what} uses http on a non-loopback host ({value}); identity providers must be "
            "reached over https"
        )
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
        required, allowed = _KIND_FIELDS[self.kind]
        where = f"upstream {self.name!r} (kind {self.kind})"
        missing = sorted(f for f in required if not getattr(self, f))
        if missing:
            raise ValueError(f"{where} needs {', '.join(missing)}")
        stray = sorted(f for f in _PRESET_FIELDS if getattr(self, f) is not None)
        stray = [f for f in stray if f not in allowed]
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
        if self.kind != "oidc" and self.kind != "oauth2":
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
        return self.kind == "entra" and (self.tenant or "").lower() in _ENTRA_SHARED_TENANTS

    @property
    def label(self) -> str:
        """The name shown to people."""
        return self.display_name or self.name


# -- registry -------------------------------------------------------------------------------------

_REGISTRY_MEMBER = re.compile(r"^(\*|(group|sub|client):\S+)$")
_REGISTRY_NAMESPACE = re.compile(r"^(\*|[a-zA-Z0-9.-]+(\.\*)?)$")
# The registry's scopes by default (registry authorization document, "Registry-Specific Scopes";
# checklist G03), and the names bastion used before, honoured as aliases for one release.
REGISTRY_SCOPES: tuple[str, str, str] = (
    "mcp-registry:read",
    "mcp-registry:write",
    "mcp-registry:admin",
)
OLD_REGISTRY_SCOPES: tuple[str, str, str] = ("registry:read", "registry:write", "registry:admin")
_OLD_READ_PREFIX = OLD_REGISTRY_SCOPES[0] + ":"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}")
_GROUP_PART = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,255}")


def _registry_members(values: list[str], where: str) -> list[str]:
    for value in values:
        if not _REGISTRY_MEMBER.fullmatch(value):
            raise ValueError(
                f"{where}: {value!r} is not a member; use group:<name>, sub:<subject>, "
                "client:<client_id> or *"
            )
    return values


_MIRROR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MIRROR_NAMESPACE = re.compile(r"^(\*|[a-zA-Z0-9.-]+(\.\*)?(/\*)?)$")
_MIRROR_SERVER = re.compile(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")


class MirrorSettings(BaseModel):
    """One upstream registry the registry follows (``[[registry.mirrors]]``): its
    ``GET /v0.1/servers`` read with ``updated_since`` on a schedule, only what the filters allow
    imported, nothing curated locally overwritten (docs/registry.md, "Mirroring")."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="The mirror's name (audit records, `bastion registry sync --mirror`): "
        "lowercase letters, digits, - and _."
    )
    url: str = Field(
        description="The upstream registry's base URL (its API is <url>/v0.1/servers), e.g. "
        "https://registry.modelcontextprotocol.io; https, or http on a loopback host."
    )
    interval_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="Time between two syncs (60 s to 7 days)."
    )
    namespaces: list[str] = Field(
        default_factory=list,
        description='Namespaces to import: "io.github.acme/*" or "io.github.acme" (that '
        'namespace), "com.acme.*" (every namespace under com.acme), "*" (everything).',
    )
    names: list[str] = Field(
        default_factory=list, description="Exact server names to import (besides namespaces)."
    )
    search: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Only servers whose name or description contains this (asked of the "
        "upstream and checked again here).",
    )
    owner: str | None = Field(
        None,
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Subject that imported entries belong to; default mirror:<name>.",
    )
    groups: list[str] = Field(
        default_factory=list,
        description="Audiences of imported entries (empty: every reader); the upstream cannot "
        "choose them.",
    )
    approved: bool = Field(True, description="Approve imported entries.")
    follow_status: bool = Field(
        True,
        description="Upstream status changes (deprecated, deleted) follow onto mirrored "
        "versions that nobody changed locally (edits of a version's server.json always do).",
    )
    max_pages: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Pages of 100 servers read per run at most (a long "
        "listing continues at the next run).",
    )
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Timeout of each request to the upstream."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _MIRROR_NAME.fullmatch(value):
            raise ValueError(
                f"mirror name {value!r}: use 1 to 63 lowercase letters, digits, - and _"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an absolute https URL; got {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"url must not have a query, fragment or credentials; got {value!r}")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError(
                f"url {value} uses http on a non-loopback host; an upstream registry must be "
                "reached over https"
            )
        return value.rstrip("/")

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not _MIRROR_NAMESPACE.fullmatch(pattern) or pattern == "*/*":
                raise ValueError(
                    f"namespaces: {pattern!r} is not a namespace filter (like io.github.acme/*, "
                    "com.acme, com.acme.*, or *)"
                )
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not 3 <= len(name) <= 200 or not _MIRROR_SERVER.fullmatch(name):
                raise ValueError(
                    f"names: {name!r} is not a server name (<namespace>/<name>, like "
                    "io.github.acme/weather)"
                )
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            if not re.fullmatch(r"[\x21-\x7e]{1,255}", group):
                raise ValueError(
                    f"groups: {group!r} is not a group (1 to 255 printable characters, no spaces)"
                )
        return sorted(set(value))

    @model_validator(mode="after")
    def _filters(self) -> MirrorSettings:
        if not self.namespaces and not self.names:
            raise ValueError(
                f"mirror {self.name!r} has no filter: list namespaces or names to import "
                '(namespaces = ["*"] imports everything)'
            )
        return self

    @property
    def owner_subject(self) -> str:
        """The subject imported entries belong to."""
        return self.owner or f"mirror:{self.name}"


class RegistryScopeNames(BaseModel):
    """The names of the registry's scopes (``[registry.scope_names]``). Scopes say which types
    of operation a caller may do (registry authorization document, "Registry-Specific Scopes";
    G03); which entries it may see and change is decided per entry.

    Inside bastion a scope is known by its role, the default name of its kind
    (:data:`REGISTRY_SCOPES`, ``<read>:<group>`` for a finer read scope): :meth:`role` turns a
    name from a token into its role, :meth:`name_of` a role into the configured name. The old
    names ``registry:read|write|admin`` and ``registry:read:<group>`` stand for the same roles
    for one release, unless configured as names themselves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    read: str = Field(REGISTRY_SCOPES[0], description="Scope to list and read entries.")
    write: str = Field(
        REGISTRY_SCOPES[1], description="Scope to publish, update and delete one's entries."
    )
    admin: str = Field(
        REGISTRY_SCOPES[2],
        description="Scope to change status and others' entries (for registry.admins only).",
    )

    @field_validator("read", "write", "admin")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _SCOPE_TOKEN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not one scope-token (RFC 6749 §3.3: 1-200 printable ASCII "
                'characters without space, " or \\)'
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> RegistryScopeNames:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"read, write and admin must be three different scopes; got {names}")
        for role, name in zip(_KINDS, names, strict=True):
            for other, default, old in zip(
                _KINDS, REGISTRY_SCOPES, OLD_REGISTRY_SCOPES, strict=True
            ):
                if other != role and name in (default, old):
                    raise ValueError(
                        f"{role} = {name!r} is the default or old name of the {other} scope; "
                        "pick another name"
                    )
            if name.startswith(_OLD_READ_PREFIX) or (
                role != "read" and name.startswith(self.read + ":")
            ):
                raise ValueError(
                    f"{role} = {name!r} has the form of a finer read scope <read>:<group>; "
                    "pick another name"
                )
        return self

    @property
    def names(self) -> tuple[str, str, str]:
        """The configured read, write and admin names."""
        return (self.read, self.write, self.admin)

    def role(self, scope: str) -> str | None:
        """The role ``scope`` stands for (a configured name, an old name, or a finer read scope
        of either); None for any other scope, which grants nothing in the registry."""
        if scope in self.names:
            return REGISTRY_SCOPES[self.names.index(scope)]
        group = _group_of(scope, self.read + ":")
        if group is None and scope in OLD_REGISTRY_SCOPES:
            return REGISTRY_SCOPES[OLD_REGISTRY_SCOPES.index(scope)]
        if group is None:
            group = _group_of(scope, _OLD_READ_PREFIX)
        return None if group is None else f"{REGISTRY_SCOPES[0]}:{group}"

    def name_of(self, role: str) -> str:
        """The configured name of ``role`` (any other string unchanged)."""
        if role in REGISTRY_SCOPES:
            return self.names[REGISTRY_SCOPES.index(role)]
        group = _group_of(role, REGISTRY_SCOPES[0] + ":")
        return role if group is None else f"{self.read}:{group}"

    def is_old(self, scope: str) -> bool:
        """Whether ``scope`` is an old name (an alias for this release), not a configured one."""
        if scope in self.names or _group_of(scope, self.read + ":") is not None:
            return False
        return scope in OLD_REGISTRY_SCOPES or _group_of(scope, _OLD_READ_PREFIX) is not None

    def renamed(self, scope: str) -> str:
        """The configured name for an old name; any other scope unchanged."""
        role = self.role(scope) if self.is_old(scope) else None
        return scope if role is None else self.name_of(role)


_KINDS = ("read", "write", "admin")


def _group_of(scope: str, prefix: str) -> str | None:
    rest = scope[len(prefix) :] if scope.startswith(prefix) else None
    return rest if rest is not None and _GROUP_PART.fullmatch(rest) else None


class RegistrySettings(BaseModel):
    """The private MCP registry (``bastion registry serve``): the generic registry API v0.1
    behind OAuth, as the registry authorization document describes."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    public_url: str | None = Field(
        None,
        description="The registry URL as clients see it; also its OAuth resource identifier "
        "(RFC 8707, RFC 9728 `resource`). Default: <issuer>/registry, served by the "
        "authorization server's own listener.",
    )
    host: str = Field("127.0.0.1", description="Listen address when not on the issuer's origin.")
    port: int = Field(8002, ge=0, le=65535, description="Port when not on the issuer's origin.")
    jwks_uri: str | None = Field(None, description="The AS's keys; default: <issuer>/jwks.")
    realm: str = Field(
        "mcp-registry",
        pattern=r"^[\x20-\x7e]{1,100}$",
        description="`realm` of the Bearer challenges (printable ASCII); mcp-registry as other "
        "registries use.",
    )
    anonymous_read: bool = Field(
        False,
        description="Let requests without a token list and read entries that have no groups "
        "and are approved (VS Code and the Copilot CLI send no token).",
    )
    namespaces: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Who may publish under a namespace (the part of a server name before '/'): "
        'e.g. { "com.acme.team-a" = ["group:team-a"], "com.acme.*" = ["group:platform"] }. '
        "Members: group:<name> (the token's groups claim), sub:<subject>, client:<client_id>, "
        "or * (anyone with mcp-registry:write).",
    )
    admins: list[str] = Field(
        default_factory=lambda: ["group:registry-admins"],
        description="Who mcp-registry:admin applies to (the scope alone is not enough: the AS "
        "grants a known scope to whoever an access rule lets have it). * trusts the scope alone.",
    )
    scopes: list[str] = Field(
        default_factory=list,
        description="Finer read scopes <read>:<group>, e.g. mcp-registry:read:team-a (a token "
        "with one sees the entries of that group). Only listed ones are known to the AS.",
    )
    scope_names: RegistryScopeNames = Field(
        default_factory=RegistryScopeNames,
        description="Names of the read, write and admin scopes (default mcp-registry:read, "
        "mcp-registry:write, mcp-registry:admin).",
    )
    _old_names: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    groups_claim: str = Field("groups", description="Token claim holding the subject's groups.")
    approve_on_publish: bool = Field(
        False,
        description="Entries published by non-admins are approved at once; otherwise only "
        "their owner and admins see them until an admin approves them.",
    )
    default_groups: list[str] = Field(
        default_factory=list,
        description="Groups of an entry published without any (empty: every reader sees it).",
    )
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Browser origins allowed (CORS and the Origin check); * allows any.",
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body.")
    mirrors: list[MirrorSettings] = Field(
        default_factory=list,
        description="Upstream registries to follow ([[registry.mirrors]]); see MirrorSettings.",
    )

    @field_validator("public_url", "jwks_uri")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return _service_url(value)

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for namespace, members in value.items():
            if not _REGISTRY_NAMESPACE.fullmatch(namespace):
                raise ValueError(
                    f"namespaces: {namespace!r} is not a namespace (like com.acme or "
                    "com.acme.*, or *)"
                )
            _registry_members(members, f"namespaces[{namespace!r}]")
        return value

    @field_validator("mirrors")
    @classmethod
    def _mirrors(cls, value: list[MirrorSettings]) -> list[MirrorSettings]:
        names = [m.name for m in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"mirrors: the names {twice} are used twice; give each its own")
        return value

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: list[str]) -> list[str]:
        return _registry_members(value, "admins")

    @model_validator(mode="after")
    def _scopes(self) -> RegistrySettings:
        names = self.scope_names
        for scope in self.scopes:
            if _group_of(scope, names.read + ":") is None and not names.is_old(scope):
                raise ValueError(
                    f"scopes: {scope!r} is not a finer read scope {names.read}:<group>"
                )
        self.scopes = self.rename_old(self.scopes, "registry.scopes")
        return self

    def rename_old(self, scopes: list[str], where: str) -> list[str]:
        """``scopes`` with old names replaced by the configured ones, remembering where old names
        were found (:attr:`old_names`)."""
        old = [s for s in scopes if self.scope_names.is_old(s)]
        if old:
            self._old_names.setdefault(where, []).extend(old)
        return list(dict.fromkeys(self.scope_names.renamed(s) for s in scopes))

    @property
    def old_names(self) -> dict[str, list[str]]:
        """Where the configuration still names scopes by their old names, and which."""
        return dict(self._old_names)

    @property
    def all_scope_names(self) -> list[str]:
        """The registry's scopes as its metadata lists them: read, write, admin, finer ones."""
        return sorted({*self.scope_names.names, *self.scopes})


class Settings(BaseSettings):
    """All of bastion's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    issuer: str = Field(
        "http://127.0.0.1:8000",
        description="The public URL of the authorization server, exactly as clients see it.",
    )
    scope_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="What each scope lets an application do, as the consent page says it: "
        '{ "notes:write" = "Add notes to your notebook" }. Built-in scopes have their own.',
    )
    data_dir: Path = Field(Path("bastion-data"), description="Where SQLite and secrets live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default: SQLite in the data directory."
    )
    database_schema: str | None = Field(
        None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema for bastion's tables (created if missing).",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key that encrypts signing keys at rest (any string of 32+ characters). "
        "Default: generated once into <data_dir>/secret.key.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IP addresses or CIDR networks, e.g. 10.0.0.0/8) whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed, by every listener (authorization "
        "server, gateway, registry). Empty: none are, and the client address is the connecting "
        "peer's. * trusts any peer: only when nothing but the proxy can reach bastion.",
    )
    allow_insecure_http: bool = Field(
        False, description="Allow an http issuer on a non-loopback host (never in production)."
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["mcp:tools", "mcp:resources", "mcp:prompts"],
        description="Scopes the AS knows in addition to those of the resources.",
    )
    resources: list[ResourceSettings] = Field(default_factory=list)
    default_resource: str | None = Field(
        None,
        description="Audience for requests that send no `resource` parameter. If unset such "
        "requests are refused with invalid_target.",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    access_contact: str | None = Field(
        None,
        max_length=300,
        description="Whom people refused by an access rule should ask for access, as shown on "
        'the refusal page, e.g. "the platform team (#mcp-access)".',
    )
    client_cache_ttl: float = Field(
        5.0,
        ge=0,
        le=300,
        description="Seconds a process keeps a client's registration in memory. Changes made "
        "through the same process, and on PostgreSQL changes from any process, apply at once; "
        "otherwise within this time. 0 reads the database on every request.",
    )
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    cimd: CimdSettings = Field(default_factory=CimdSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    unknown_clients: UnknownClientSettings = Field(default_factory=UnknownClientSettings)
    login: LoginSettings = Field(default_factory=LoginSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    revocations: RevocationSettings = Field(default_factory=RevocationSettings)
    upstreams: list[IdentityProviderSettings] = Field(
        default_factory=list,
        description="Identity providers people sign in with (federation); see docs/providers/.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address or network; use e.g. "
                    '"10.0.0.5", "10.0.0.0/8" or "fd00::/8"'
                ) from None
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"issuer must be an absolute http(s) URL; got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("issuer must not have a query or fragment (RFC 8414 section 2)")
        # The issuer is compared by exact string everywhere: keep it without a trailing slash.
        return value.rstrip("/")

    @model_validator(mode="after")
    def _https(self) -> Settings:
        parts = urlsplit(self.issuer)
        if (
            parts.scheme == "http"
            and not is_loopback_host(parts.hostname)
            and not self.allow_insecure_http
        ):
            raise ValueError(
                f"issuer {self.issuer} uses http on a non-loopback host; MCP requires https for "
                "authorization server endpoints. Use https, or set allow_insecure_http for a test "
                "network."
            )
        if self.default_resource is not None:
            self.default_resource = canonical(self.default_resource)
        return self

    @model_validator(mode="after")
    def _upstreams(self) -> Settings:
        names = [u.name for u in self.upstreams]
        for name in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"upstreams: the name {name!r} is used twice; names must be unique")
        return self

    @model_validator(mode="after")
    def _gateway(self) -> Settings:
        gateway = self.gateway
        if gateway.public_url is None:
            gateway.public_url = self.issuer
        parts = urlsplit(gateway.public_url)
        if (
            gateway.enabled
            and parts.scheme == "http"
            and not is_loopback_host(parts.hostname)
            and not self.allow_insecure_http
        ):
            raise ValueError(
                f"gateway.public_url {gateway.public_url} uses http on a non-loopback host; MCP "
                "requires https. Use https, or set allow_insecure_http for a test network."
            )
        known = {r.uri for r in self.resources}
        for upstream in gateway.upstreams:
            if (
                upstream.policy.to_policy().uses_groups
                and "groups" not in self.tokens.identity_claims
            ):
                raise ValueError(
                    f"upstream {upstream.name!r} has a policy that needs groups, but access tokens "
                    'do not carry them: add "groups" to tokens.identity_claims'
                )
            if upstream.resource is None:
                upstream.resource = canonical(gateway.public_url + upstream.path)
            if upstream.publish and upstream.registry.name is None:
                upstream.registry.name = listing_name(gateway.public_url, upstream.name)
            # The AS of the same configuration issues tokens for every upstream, with every scope
            # its policy can ask for (step-up needs the AS to know them).
            if upstream.resource not in known:
                policy = upstream.policy
                wanted = set(upstream.scopes) | set(policy.default)
                for group in (policy.methods, policy.tools, policy.implies):
                    for names in group.values():
                        wanted.update(names)
                wanted.update(policy.implies)
                self.resources.append(
                    ResourceSettings(
                        uri=upstream.resource, name=upstream.name, scopes=sorted(wanted)
                    )
                )
                known.add(upstream.resource)
        listed = [u.registry.name for u in gateway.upstreams if u.publish]
        for name in sorted({n for n in listed if listed.count(n) > 1 and n}):
            raise ValueError(
                f"two upstreams with publish = true have the registry name {name!r}; give each "
                "its own [gateway.upstreams.registry] name"
            )
        return self

    @model_validator(mode="after")
    def _registry(self) -> Settings:
        registry = self.registry
        if registry.public_url is None:
            registry.public_url = f"{self.issuer}/registry"
        parts = urlsplit(registry.public_url)
        if (
            registry.enabled
            and parts.scheme == "http"
            and not is_loopback_host(parts.hostname)
            and not self.allow_insecure_http
        ):
            raise ValueError(
                f"registry.public_url {registry.public_url} uses http on a non-loopback host; "
                "use https, or set allow_insecure_http for a test network."
            )
        resource = canonical(registry.public_url)
        listed = next((r for r in self.resources if r.uri == resource), None)
        if registry.enabled and listed is None:
            # The AS of the same configuration issues the registry's tokens (G02, G03).
            self.resources.append(
                ResourceSettings(uri=resource, name="registry", scopes=registry.all_scope_names)
            )
        elif registry.enabled and listed is not None:
            listed.scopes = registry.rename_old(listed.scopes, f"resources[{resource}].scopes")
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'bastion.db').resolve()}"

    @property
    def all_scopes(self) -> list[str]:
        """Every scope the AS knows: configured scopes plus those of each resource."""
        found = set(self.scopes)
        for r in self.resources:
            found.update(r.scopes)
        return sorted(found)

    def upgrade_scopes(self, scopes: Iterable[str], resource: str | None = None) -> list[str]:
        """``scopes`` with the registry's old names (``registry:read`` …) replaced by the
        configured ones when they are about the registry (``resource`` is its URL, or None);
        unchanged otherwise. Tokens are issued with the new names only."""
        registry = self.registry
        if not registry.enabled or (
            resource is not None and resource != canonical(registry.public_url or "")
        ):
            return list(scopes)
        return list(dict.fromkeys(registry.scope_names.renamed(s) for s in scopes))

    def scopes_of(self, resource: str) -> list[str]:
        """The scopes a resource lists (every scope the AS knows when it lists none)."""
        for r in self.resources:
            if r.uri == resource and r.scopes:
                return list(r.scopes)
        return self.all_scopes

    @property
    def is_https(self) -> bool:
        """Whether the public URL is https (cookies then use the __Host- prefix)."""
        return self.issuer.startswith("https://")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment, and explicit overrides."""
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"configuration file {config_file} does not exist")

        class _FromFile(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        return _FromFile(**overrides)
    return Settings(**overrides)


CONFIG_FILE_VARIABLE = "BASTION_CONFIG_FILE"


def settings_from_environment() -> Settings:
    """Settings for a worker process: the file named by BASTION_CONFIG_FILE, if any, plus the
    environment. Used by ``bastion serve --workers N``, whose workers start from an import string.
    """
    import os

    path = os.environ.get(CONFIG_FILE_VARIABLE)
    return load_settings(Path(path) if path else None)


CONFIG_VARIABLE = "BASTION_CONFIG"


def config_file_from_environment() -> Path | None:
    """The configuration file ``$BASTION_CONFIG`` names, if it names one."""
    import os

    named = os.environ.get(CONFIG_VARIABLE)
    return Path(named) if named else None


def environment_names_data() -> bool:
    """Whether ``BASTION_DATABASE_URL`` or ``BASTION_DATA_DIR`` say where the data is, so that
    no configuration file is needed (containers)."""
    import os

    return any(os.environ.get(v) for v in ("BASTION_DATABASE_URL", "BASTION_DATA_DIR"))


def export_config_file(config_file: Path) -> None:
    """Name the configuration file for worker processes started later by uvicorn."""
    import os

    os.environ[CONFIG_FILE_VARIABLE] = str(config_file.resolve())


__all__ = [
    "CONFIG_FILE_VARIABLE",
    "CONFIG_VARIABLE",
    "OLD_REGISTRY_SCOPES",
    "REGISTRY_SCOPES",
    "AllowRulesSettings",
    "CimdSettings",
    "ClaimMappingSettings",
    "GatewaySettings",
    "IdentityProviderKind",
    "IdentityProviderSettings",
    "LoginSettings",
    "MirrorSettings",
    "QuotaSettings",
    "RegistrationSettings",
    "RegistryScopeNames",
    "RegistrySettings",
    "ResourceSettings",
    "RevocationSettings",
    "Settings",
    "SigningAlg",
    "TokenSettings",
    "UnknownClientSettings",
    "UpstreamListingSettings",
    "UpstreamSettings",
    "config_file_from_environment",
    "environment_names_data",
    "export_config_file",
    "listing_name",
    "load_settings",
    "settings_from_environment",
]
