"""The authorization server's sections: ``[tokens]``, ``[cimd]``, ``[registration]``,
``[quotas]``, ``[unknown_clients]``, ``[login]`` and ``[[token_exchange]]``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bastion.oauth.resource import canonical

# Ed25519 is the fully-specified name of RFC 9864; EdDSA is the older polymorphic name, kept for
# verifiers that do not know Ed25519 yet.
SigningAlg = Literal["ES256", "Ed25519", "EdDSA", "RS256"]


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


class TokenExchangeRule(BaseModel):
    """One ``[[token_exchange]]`` rule (RFC 8693): confidential client ``client`` may exchange
    a person's access token for resource ``from`` for a token for resource ``to`` with at most
    ``scopes``. Exchanges no rule allows are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    client: str = Field(min_length=1, description="The confidential client that exchanges.")
    source: str = Field(
        alias="from",
        min_length=1,
        description="The resource the subject token was issued for: its URI or its name.",
    )
    target: str = Field(
        alias="to", min_length=1, description="The resource the new token is for: URI or name."
    )
    scopes: list[str] = Field(
        min_length=1, description="The scopes the new token may have at the target."
    )

    def resolved(self, resources: dict[str, str]) -> TokenExchangeRule:
        """The rule with ``from`` and ``to`` as canonical URIs of configured resources
        (``resources``: name or canonical URI -> URI); ValueError names one that is not."""
        names = ", ".join(sorted(set(resources.values())))
        ends = {}
        for key, value in (("from", self.source), ("to", self.target)):
            uri = resources.get(value) or resources.get(canonical(value))
            if uri is None:
                raise ValueError(
                    f"token_exchange: {key} = {value!r} is not a configured resource; use the "
                    f"uri or name of one of [[resources]]: {names}"
                )
            ends[key] = uri
        return self.model_copy(update={"source": ends["from"], "target": ends["to"]})


__all__ = [
    "CimdSettings",
    "IdentityClaim",
    "LoginSettings",
    "QuotaSettings",
    "RegistrationSettings",
    "SigningAlg",
    "TokenExchangeRule",
    "TokenSettings",
    "UnknownClientSettings",
]
