"""``[gateway]``: OAuth in front of existing MCP servers, and its ``[[gateway.upstreams]]``."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bastion.config._urls import service_url
from bastion.config.dpop import ResourceDPoPSettings
from bastion.oauth.endpoint_url import ANY_HTTP
from bastion.oauth.resource import canonical
from bastion.resource.policy import ScopePolicySettings

_UPSTREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# No ".": it ends the replica id at the front of a stdio session id (a load balancer splits there).
_REPLICA_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
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


class UpstreamOAuthSettings(BaseModel):
    """How the gateway signs each person in at an upstream that has its own OAuth
    (``[gateway.upstreams.oauth]``, with ``auth = "oauth"``; docs/upstream-oauth.md).

    Everything is discovered from the upstream (RFC 9728 protected-resource metadata, then RFC
    8414 / OpenID Connect metadata of its authorization server) unless set here."""

    model_config = ConfigDict(extra="forbid")

    registration: Literal["auto", "pre-registered", "cimd", "dcr"] = Field(
        "auto",
        description="How bastion is a client of the upstream's authorization server: "
        "pre-registered (client_id below), cimd (the Client ID Metadata Document bastion serves "
        "at <issuer>/connect/client-metadata.json), dcr (RFC 7591). auto: pre-registered when "
        "client_id is set, else cimd where the server supports it, else dcr.",
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=255, description="A pre-registered client id."
    )
    client_secret: SecretStr | None = Field(
        None, description="Its secret (client_secret_basic); none for a public client."
    )
    authorization_server: str | None = Field(
        None,
        description="The upstream's authorization server (issuer URL); default: the first "
        "one its protected-resource metadata names.",
    )
    resource: str | None = Field(
        None,
        description="The upstream's resource URI sent as RFC 8707 `resource`; default: the "
        "`resource` of its protected-resource metadata.",
    )
    scopes: list[str] | None = Field(
        None,
        description="Scopes asked for upstream; default: the metadata's scopes_supported "
        "(none when it lists none).",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Reach the upstream's metadata and authorization server on loopback or "
        "private addresses (development, or servers on your own network). It disables the "
        "SSRF guard for this upstream's OAuth requests.",
    )
    refresh_margin: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Seconds before an upstream access token expires at which it is refreshed.",
    )

    @field_validator("authorization_server", "resource")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and ANY_HTTP.problem(value) is not None:
            raise ValueError(f"must be an absolute http(s) URL; got {value!r}")
        return value

    @model_validator(mode="after")
    def _client(self) -> UpstreamOAuthSettings:
        if self.registration == "pre-registered" and self.client_id is None:
            raise ValueError('registration = "pre-registered" needs client_id')
        if self.client_secret is not None and self.client_id is None:
            raise ValueError("client_secret is set but client_id is not")
        if self.client_id is not None and self.registration in ("cimd", "dcr"):
            raise ValueError(
                f'client_id is set but registration = "{self.registration}" does not use it; '
                'remove one of them (or use "pre-registered")'
            )
        return self


class UpstreamExchangeSettings(BaseModel):
    """How the gateway exchanges the caller's bastion token for one for the upstream itself
    (``[gateway.upstreams.exchange]``, with ``auth = "exchange"``; docs/token-exchange.md,
    "Behind the gateway"): RFC 8693 at bastion's own token endpoint, as a confidential client."""

    model_config = ConfigDict(extra="forbid")

    resource: str = Field(
        description="The upstream's own resource URI (one of [[resources]]): the audience of "
        "the token it gets."
    )
    scopes: list[str] | None = Field(
        None,
        description="The scopes asked for at the upstream; default: every scope of the "
        "caller's token that the [[token_exchange]] rule allows.",
    )
    client_id: str = Field(
        min_length=1,
        max_length=255,
        description="The gateway's confidential client at bastion (the new token's act.sub).",
    )
    client_secret: SecretStr = Field(description="Its secret (client_secret_basic).")
    cache_size: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Exchanged tokens kept at most (one per caller's token).",
    )
    refresh_margin: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Seconds before an exchanged token expires at which a new one is asked for.",
    )

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"resource must be an absolute http(s) URI; got {value!r}")
        return canonical(value)

    @field_validator("client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("client_secret must not be empty")
        return value


# The paths every listener answers itself (bastion.ops.health, which config cannot import; a
# test checks that the two agree).
PROBE_PATHS = ("/healthz", "/readyz")


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
    require_dpop: bool = Field(
        False,
        description="Accept DPoP-bound tokens only (RFC 9449): Bearer tokens are refused, and "
        "the protected resource metadata says dpop_bound_access_tokens_required.",
    )
    dpop_nonce: bool | None = Field(
        None,
        description="Demand DPoP nonces at this upstream (RFC 9449 section 9); default: "
        "gateway.dpop.nonce.",
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
    auth: Literal["none", "oauth", "exchange"] = Field(
        "none",
        description='"oauth": the upstream has its own OAuth; each person signs in there once '
        "(the gateway asks through URL elicitation) and the gateway sends that person's "
        'upstream token. See [gateway.upstreams.oauth]. "exchange": the upstream takes '
        "bastion's tokens for its own resource URI; the gateway exchanges the caller's token "
        "for one (RFC 8693). See [gateway.upstreams.exchange].",
    )
    oauth: UpstreamOAuthSettings = Field(
        default_factory=UpstreamOAuthSettings,
        description='With auth = "oauth": how bastion is registered at the upstream.',
    )
    exchange: UpstreamExchangeSettings | None = Field(
        None,
        description="With auth = \"exchange\": the upstream's resource URI and the gateway's "
        "client credentials at bastion.",
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
        if path in PROBE_PATHS:
            raise ValueError(
                f"path {path} is the gateway's own health or readiness probe "
                f"({', '.join(PROBE_PATHS)}); mount the upstream at another path"
            )
        return path

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if ANY_HTTP.problem(value) is not None:
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
        if self.auth != "none":
            if self.url is None:
                raise ValueError(
                    f'upstream {self.name!r}: auth = "{self.auth}" needs a url (a stdio server '
                    "takes no token from the gateway; give it its credential in env)"
                )
            if any(name.lower() == "authorization" for name in self.headers):
                raise ValueError(
                    f'upstream {self.name!r}: auth = "{self.auth}" sends a token for the caller '
                    "as Authorization; remove Authorization from headers"
                )
        if self.auth != "oauth" and "oauth" in self.model_fields_set:
            raise ValueError(f'upstream {self.name!r}: [oauth] is set but auth is not "oauth"')
        if self.auth == "exchange" and self.exchange is None:
            raise ValueError(
                f'upstream {self.name!r}: auth = "exchange" needs [gateway.upstreams.exchange] '
                "with resource, client_id and client_secret"
            )
        if self.auth != "exchange" and self.exchange is not None:
            raise ValueError(
                f'upstream {self.name!r}: [exchange] is set but auth is not "exchange"'
            )
        return self

    def process_environment(self) -> dict[str, str]:
        """The environment of a stdio upstream process: a few inherited variables plus `env`."""
        import os

        inherited = {k: os.environ[k] for k in _INHERITED_ENVIRONMENT if k in os.environ}
        return {**inherited, **{k: v.get_secret_value() for k, v in self.env.items()}}


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
    session_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key (32+ characters) binding the session ids of HTTP upstreams "
        "to their caller, so that any gateway replica can check them; the same on every "
        "replica. Default: derived from secret_key (or <data_dir>/secret.key if it exists).",
    )
    replica_id: str | None = Field(
        None,
        pattern=_REPLICA_ID,
        description="This gateway replica's name, at the front of its stdio session ids "
        "(<replica_id>.<random>) so a load balancer can send a session to the replica that runs "
        "its process; letters, digits, _ and -. Default: the host name and gateway.port.",
    )
    audit_log: Path | None = Field(
        None, description="Append audit records as JSON lines here (mode 0600); default: log only."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins browsers may call the gateway from; any other Origin gets 403.",
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body.")
    dpop: ResourceDPoPSettings = Field(
        default_factory=ResourceDPoPSettings,
        description="DPoP at every upstream (RFC 9449): algorithms, proof age, nonces.",
    )

    @field_validator("public_url", "jwks_uri")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return service_url(value)

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
        if self.session_secret is not None and len(self.session_secret.get_secret_value()) < 32:
            raise ValueError("gateway.session_secret must have at least 32 characters")
        for u in self.upstreams:
            if u.forward_identity and self.identity_secret is None:
                raise ValueError(
                    f"upstream {u.name!r} has forward_identity but gateway.identity_secret is "
                    "not set"
                )
        return self


__all__ = [
    "GatewaySettings",
    "UpstreamExchangeSettings",
    "UpstreamListingSettings",
    "UpstreamOAuthSettings",
    "UpstreamSettings",
    "listing_name",
]
