"""The top-level :class:`Settings`: the server's own keys, every section, and the rules that
tie sections together (the resources the gateway and the registry add, https everywhere)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bastion.config.audit import AuditSettings
from bastion.config.authserver import (
    CimdSettings,
    LoginSettings,
    QuotaSettings,
    RegistrationSettings,
    TokenExchangeRule,
    TokenSettings,
    UnknownClientSettings,
)
from bastion.config.console import ConsoleSettings
from bastion.config.dpop import DPoPSettings
from bastion.config.gateway import GatewaySettings, listing_name
from bastion.config.identity_providers import IdentityProviderSettings
from bastion.config.logs import LogSettings
from bastion.config.metrics import MetricsSettings
from bastion.config.registry import RegistrySettings
from bastion.config.resources import ResourceSettings
from bastion.config.revocations import RevocationSettings
from bastion.config.workload import WorkloadIdentityRule
from bastion.oauth.endpoint_url import EndpointUrlPolicy
from bastion.oauth.resource import canonical

# The issuer: no query or fragment (RFC 8414 §2); http is decided with allow_insecure_http.
_ISSUER = EndpointUrlPolicy(http="any", query=False)


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
    previous_secret_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Secret keys that still decrypt what is stored, never encrypt: while "
        "changing secret_key, until `bastion keys rekey` has re-encrypted everything.",
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
    dpop: DPoPSettings = Field(default_factory=DPoPSettings)
    cimd: CimdSettings = Field(default_factory=CimdSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    unknown_clients: UnknownClientSettings = Field(default_factory=UnknownClientSettings)
    login: LoginSettings = Field(default_factory=LoginSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    revocations: RevocationSettings = Field(default_factory=RevocationSettings)
    logging: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    token_exchange: list[TokenExchangeRule] = Field(
        default_factory=list,
        description="Which token exchanges (RFC 8693) are allowed: each rule lets a "
        "confidential client exchange a person's token for one resource for a token for "
        "another; none: the grant is refused. See docs/token-exchange.md.",
    )
    upstreams: list[IdentityProviderSettings] = Field(
        default_factory=list,
        description="Identity providers people sign in with (federation); see docs/providers/.",
    )
    workload_identities: list[WorkloadIdentityRule] = Field(
        default_factory=list,
        description="Workloads (Kubernetes, GitHub Actions, SPIFFE) that obtain tokens with "
        "their platform's token as a machine client, without a secret (RFC 7523 jwt-bearer); "
        "see docs/workload-identity.md.",
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
        problem = _ISSUER.problem(value)
        if problem in ("query", "fragment"):
            raise ValueError("issuer must not have a query or fragment (RFC 8414 section 2)")
        if problem is not None:
            raise ValueError(f"issuer must be an absolute http(s) URL; got {value!r}")
        # The issuer is compared by exact string everywhere: keep it without a trailing slash.
        return value.rstrip("/")

    def _plain_http_refused(self, url: str) -> bool:
        """Whether ``url`` (already a valid URL) uses http where it may not: MCP ("Communication
        Security") requires https, http on loopback, or anywhere with allow_insecure_http."""
        policy = EndpointUrlPolicy(http="any" if self.allow_insecure_http else "loopback")
        return policy.problem(url) == "http"

    @model_validator(mode="after")
    def _https(self) -> Settings:
        if self._plain_http_refused(self.issuer):
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
        if gateway.enabled and self._plain_http_refused(gateway.public_url):
            raise ValueError(
                f"gateway.public_url {gateway.public_url} uses http on a non-loopback host; MCP "
                "requires https. Use https, or set allow_insecure_http for a test network."
            )
        shared_key = gateway.session_secret or self.secret_key
        http_upstreams = any(u.url is not None for u in gateway.upstreams)
        if gateway.replica_id and http_upstreams and shared_key is None:
            raise ValueError(
                f"gateway.replica_id is {gateway.replica_id!r}, so the gateway runs as replicas "
                "that must check each other's HTTP session ids, but no key they share is "
                "configured: set gateway.session_secret (or secret_key) to the same 32+ "
                "characters on every replica"
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
        if registry.enabled and self._plain_http_refused(registry.public_url):
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

    @model_validator(mode="after")
    def _token_exchange(self) -> Settings:
        # After _gateway and _registry: the resources they add may be exchange targets.
        known = {r.uri: r.uri for r in self.resources}
        known |= {r.name: r.uri for r in self.resources if r.name}
        rules = [rule.resolved(known) for rule in self.token_exchange]
        for rule in rules:
            allowed = set(self.scopes_of(rule.target))
            unknown = sorted(set(rule.scopes) - allowed)
            if unknown:
                raise ValueError(
                    f"token_exchange: scopes {' '.join(unknown)} are not scopes of {rule.target}; "
                    f"it has {' '.join(sorted(allowed))}"
                )
        self.token_exchange = rules
        for upstream in self.gateway.upstreams:
            wanted = upstream.exchange.resource if upstream.exchange else None
            if wanted is not None and wanted not in known:
                raise ValueError(
                    f"upstream {upstream.name!r}: [exchange] resource {wanted} is not a "
                    "configured resource; add it to [[resources]] (the upstream's own URI, "
                    "which its tokens are issued for)"
                )
            if wanted is not None and wanted == upstream.resource:
                raise ValueError(
                    f"upstream {upstream.name!r}: [exchange] resource is the upstream's resource "
                    "at the gateway; give the upstream server's own resource URI"
                )
        return self

    @model_validator(mode="after")
    def _workload_identities(self) -> Settings:
        names = [w.name for w in self.workload_identities]
        for name in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"workload_identities: the name {name!r} is used twice")
        known = set(self.all_scopes)
        for rule in self.workload_identities:
            if rule.audience is None:
                rule.audience = self.issuer
            unknown = sorted(set(rule.scopes or ()) - known)
            if unknown:
                raise ValueError(
                    f"workload_identities[{rule.name}]: unknown scopes {' '.join(unknown)}"
                )
        return self

    @property
    def accepts_jwt_bearer(self) -> bool:
        """Whether the jwt-bearer grant (RFC 7523) is offered: an upstream accepts ID-JAGs
        or a workload identity is configured."""
        return bool(self.workload_identities) or any(u.accept_id_jag for u in self.upstreams)

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


__all__ = ["Settings"]
