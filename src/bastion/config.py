"""One settings model for all of bastion: a TOML file, then ``BASTION_*`` environment variables.

Nested sections use ``__`` in environment names, e.g. ``BASTION_TOKENS__ACCESS_TOKEN_TTL=300``.
Nothing else in bastion reads the environment: build a :class:`Settings` and pass it in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bastion.oauth.redirect_uri import is_loopback_host
from bastion.oauth.resource import canonical

# Ed25519 is the fully-specified name of RFC 9864; EdDSA is the older polymorphic name, kept for
# verifiers that do not know Ed25519 yet.
SigningAlg = Literal["ES256", "Ed25519", "EdDSA", "RS256"]


class ResourceSettings(BaseModel):
    """A protected resource (MCP server, gateway route, registry) tokens may be issued for."""

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


class TokenSettings(BaseModel):
    """Lifetimes and signing of the tokens the authorization server issues."""

    access_token_ttl: int = Field(600, ge=30, le=86400, description="Seconds.")
    refresh_token_ttl: int = Field(30 * 86400, ge=60, description="Seconds of a refresh family.")
    code_ttl: int = Field(60, ge=10, le=600, description="Authorization code lifetime, seconds.")
    signing_alg: SigningAlg = "ES256"
    key_prepublish: int = Field(
        300,
        ge=0,
        description="Seconds a rotated-in key is published in the JWKS before it signs, so "
        "verifiers that cache the JWKS (bastion serves it with max-age=300) already know it.",
    )


class CimdSettings(BaseModel):
    """Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document)."""

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


class UnknownClientSettings(BaseModel):
    """What to do with a client_id nobody registered (e.g. VS Code's built-in id)."""

    policy: Literal["refuse", "loopback_public"] = Field(
        "refuse",
        description="refuse: show an error page. loopback_public: admit it as a public client "
        "restricted to loopback redirect URIs and the authorization_code grant.",
    )


class LoginSettings(BaseModel):
    """The browser log-in and consent pages."""

    local_users: bool = True
    session_ttl: int = Field(8 * 3600, ge=60)
    remember_consent: bool = True
    max_failures: int = Field(
        10, ge=1, description="Failed log-ins per user name and address before a pause."
    )
    failure_window: int = Field(900, ge=60, description="Seconds the failure count covers.")


class Settings(BaseSettings):
    """All of bastion's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    issuer: str = Field(
        "http://127.0.0.1:8000",
        description="The public URL of the authorization server, exactly as clients see it.",
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
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    cimd: CimdSettings = Field(default_factory=CimdSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    unknown_clients: UnknownClientSettings = Field(default_factory=UnknownClientSettings)
    login: LoginSettings = Field(default_factory=LoginSettings)

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


def export_config_file(config_file: Path) -> None:
    """Name the configuration file for worker processes started later by uvicorn."""
    import os

    os.environ[CONFIG_FILE_VARIABLE] = str(config_file.resolve())


__all__ = [
    "CONFIG_FILE_VARIABLE",
    "CimdSettings",
    "LoginSettings",
    "RegistrationSettings",
    "ResourceSettings",
    "Settings",
    "SigningAlg",
    "TokenSettings",
    "UnknownClientSettings",
    "export_config_file",
    "load_settings",
    "settings_from_environment",
]
