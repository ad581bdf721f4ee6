"""``[registry]``: the private MCP registry, who may publish where, and the upstream registries
it mirrors (``[[registry.mirrors]]``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from bastion.config._urls import service_url
from bastion.config.dpop import ResourceDPoPSettings
from bastion.config.registry_scopes import RegistryScopeNames, group_of
from bastion.oauth.endpoint_url import EndpointUrlPolicy

_REGISTRY_MEMBER = re.compile(r"^(\*|(group|sub|client):\S+)$")
_REGISTRY_NAMESPACE = re.compile(r"^(\*|[a-zA-Z0-9.-]+(\.\*)?)$")


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
# An upstream registry: https (http on loopback), no query, fragment or credentials in its URL.
_MIRROR_URL = EndpointUrlPolicy(query=False, credentials=False)


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
        problem = _MIRROR_URL.problem(value)
        if problem in ("invalid", "scheme", "no_host"):
            raise ValueError(f"url must be an absolute https URL; got {value!r}")
        if problem in ("credentials", "query", "fragment"):
            raise ValueError(f"url must not have a query, fragment or credentials; got {value!r}")
        if problem == "http":
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
    require_dpop: bool = Field(
        False,
        description="Accept DPoP-bound tokens only (RFC 9449): Bearer tokens are refused, and "
        "the protected resource metadata says dpop_bound_access_tokens_required.",
    )
    dpop: ResourceDPoPSettings = Field(
        default_factory=ResourceDPoPSettings,
        description="DPoP at the registry (RFC 9449): algorithms, proof age, nonces.",
    )

    @field_validator("public_url", "jwks_uri")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return service_url(value)

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
            if group_of(scope, names.read + ":") is None and not names.is_old(scope):
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


__all__ = ["MirrorSettings", "RegistrySettings"]
