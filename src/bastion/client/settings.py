"""The client's own small settings model (house rule 5: built by the caller and passed in).

The CLI fills it from its configuration file; library users build it directly. Nothing here reads
the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
GrantType = Literal["authorization_code", "client_credentials", "jwt-bearer"]
DPoPMode = Literal["auto", "always", "never"]
IdpAuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
SigningAlg = Literal["ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519"]


def _absolute_http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(
            f"{what} must be an absolute http(s) URL without a fragment; got {value!r}"
        )
    return value


def _env_name(value: str | None) -> str | None:
    if value is not None and not value.replace("_", "").isalnum():
        raise ValueError(f"not an environment variable name: {value!r}")
    return value


class EnterpriseIdp(BaseModel):
    """Enterprise-managed authorization (ID-JAG): where the ID token is exchanged for an
    Identity Assertion JWT Authorization Grant (RFC 8693 at the enterprise IdP), and where the
    ID token comes from (a file or an environment variable, read at each exchange)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    idp_issuer: str | None = Field(
        None, description="The IdP's issuer; its token endpoint is discovered (RFC 8414, OIDC)."
    )
    idp_token_endpoint: str | None = Field(
        None, description="The IdP's token endpoint (instead of discovery)."
    )
    idp_client_id: str = Field(min_length=1, description="This client's client_id at the IdP.")
    idp_client_secret: SecretStr | None = None
    idp_token_endpoint_auth_method: IdpAuthMethod | None = Field(
        None, description="Default: client_secret_post with a secret (the MCP example), else none."
    )
    id_token_file: Path | None = Field(None, description="A file holding the user's ID token.")
    id_token_env: str | None = Field(None, description="An environment variable holding it.")

    @field_validator("idp_issuer", "idp_token_endpoint")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_http_url(value, "the IdP URL")

    @field_validator("id_token_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _complete(self) -> EnterpriseIdp:
        if (self.idp_issuer is None) == (self.idp_token_endpoint is None):
            raise ValueError("enterprise needs exactly one of idp_issuer and idp_token_endpoint")
        if (self.id_token_file is None) == (self.id_token_env is None):
            raise ValueError("enterprise needs exactly one of id_token_file and id_token_env")
        method = self.idp_token_endpoint_auth_method
        if method not in (None, "none") and self.idp_client_secret is None:
            raise ValueError(f"idp_token_endpoint_auth_method {method} needs idp_client_secret")
        return self


class PreRegisteredClient(BaseModel):
    """Client credentials registered with one authorization server out of band.

    Bound to ``issuer`` and used with no other authorization server (MCP client registration,
    "Authorization Server Binding"; checklist C03, C09). ``grant_type`` ``client_credentials``
    makes a machine client: no browser, the token comes from the client credentials grant
    (OAuth 2.1 §4.2). ``jwt-bearer`` (RFC 7523 §2.1) gets the token for an assertion: a
    workload identity token (``assertion_file`` or ``assertion_env``, read at each token
    request), or an ID-JAG from the enterprise IdP (``enterprise``). ``dpop`` overrides the
    client-wide DPoP setting for this authorization server.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(description="The authorization server's issuer, compared exactly.")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    private_key_pem: SecretStr | None = Field(
        None, description="PKCS#8 PEM private key for private_key_jwt (RFC 7523 §2.2)."
    )
    signing_alg: SigningAlg = "ES256"
    key_id: str | None = Field(None, description="`kid` of the assertion's header, if needed.")
    token_endpoint_auth_method: AuthMethod | None = Field(
        None,
        description="Default: private_key_jwt with a key, else a secret method the AS lists "
        "(client_secret_basic first), else none.",
    )
    grant_type: GrantType = "authorization_code"
    redirect_uri: str | None = Field(
        None, description="The loopback redirect URI registered for this client, if fixed."
    )
    assertion_file: Path | None = Field(
        None, description="jwt-bearer: a file holding the workload token (re-read each time)."
    )
    assertion_env: str | None = Field(
        None, description="jwt-bearer: an environment variable holding the workload token."
    )
    enterprise: EnterpriseIdp | None = Field(
        None, description="jwt-bearer with an ID-JAG from this enterprise IdP."
    )
    dpop: DPoPMode | None = Field(None, description="Overrides the client-wide dpop setting.")

    @field_validator("assertion_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _absolute_http_url(value, "issuer")

    @model_validator(mode="after")
    def _credentials(self) -> PreRegisteredClient:
        method = self.token_endpoint_auth_method
        if method == "private_key_jwt" and self.private_key_pem is None:
            raise ValueError("token_endpoint_auth_method private_key_jwt needs private_key_pem")
        if method in ("client_secret_basic", "client_secret_post") and self.client_secret is None:
            raise ValueError(f"token_endpoint_auth_method {method} needs client_secret")
        if self.grant_type == "client_credentials" and (
            self.client_secret is None and self.private_key_pem is None
        ):
            raise ValueError(
                "a client_credentials client needs client_secret or private_key_pem "
                "(OAuth 2.1 §4.2: only confidential clients use this grant)"
            )
        sources = [
            name
            for name in ("assertion_file", "assertion_env", "enterprise")
            if getattr(self, name) is not None
        ]
        if self.grant_type == "jwt-bearer" and len(sources) != 1:
            raise ValueError(
                "a jwt-bearer client needs exactly one of assertion_file, assertion_env (a "
                "workload token) and enterprise (an ID-JAG); got " + (", ".join(sources) or "none")
            )
        if self.grant_type != "jwt-bearer" and sources:
            raise ValueError(f'{sources[0]} needs grant_type = "jwt-bearer"')
        if (
            self.enterprise is not None
            and self.client_secret is None
            and self.private_key_pem is None
        ):
            raise ValueError(
                "an enterprise (ID-JAG) client authenticates at the authorization server: it "
                "needs client_secret or private_key_pem (ID-JAG §5)"
            )
        return self


class ClientSettings(BaseModel):
    """Everything the MCP client needs to know that it cannot discover."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_name: str = Field("mcp-bastion", min_length=1, max_length=200)
    client_metadata_url: str | None = Field(
        None,
        description="This client's Client ID Metadata Document URL (used as client_id when the "
        "AS advertises client_id_metadata_document_supported). https with a path (C07).",
    )
    redirect_host: Literal["127.0.0.1", "localhost", "[::1]"] = Field(
        "127.0.0.1", description="Host of the loopback redirect URI (RFC 8252 §7.3)."
    )
    redirect_path: str = Field("/callback", pattern=r"^/[A-Za-z0-9\-._~/]*$")
    redirect_port: int = Field(0, ge=0, le=65535, description="0: an ephemeral port.")
    callback_timeout: float = Field(300.0, gt=0, description="Seconds to wait for the browser.")
    preferred_issuers: list[str] = Field(
        default_factory=list,
        description="Authorization servers to prefer, in order, when the resource lists several "
        "(RFC 9728 §7.6). Others follow in the resource's order.",
    )
    pre_registered: list[PreRegisteredClient] = Field(default_factory=list)
    static_headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Server URL -> Authorization header value; disables OAuth for that URL.",
    )
    dpop: DPoPMode = Field(
        "auto",
        description="DPoP-bound tokens (RFC 9449): auto (when the AS lists ES256 in "
        "dpop_signing_alg_values_supported), always, or never.",
    )
    request_offline_access: bool = Field(
        True, description="Add offline_access to scoped requests when the AS lists it (C16)."
    )
    max_authorizations: int = Field(
        3, ge=1, le=3, description="Authorizations one request may trigger (C15 retry limit)."
    )
    http_timeout: float = Field(10.0, gt=0, le=120)
    expiry_skew: int = Field(60, ge=0, le=600, description="Refresh this many seconds early.")
    allow_insecure_http: bool = Field(
        False, description="Accept http endpoints on non-loopback hosts (test networks only)."
    )
    ssrf_guard: bool = Field(
        False,
        description="For clients running on a server (C19): https only and no loopback, private "
        "or link-local addresses for every discovery and token request.",
    )
    legacy_2025_03_26: bool = Field(
        False,
        description="Also talk to servers of the 2025-03-26 revision: without Protected Resource "
        "Metadata the server's origin is taken as the authorization server and, without its "
        "metadata, /authorize, /token and /register at that origin. Off by default: the current "
        "revision requires Protected Resource Metadata and advertised PKCE support.",
    )
    storage_path: Path | None = Field(
        None, description="Token file; default: tokens.json in the user's config directory."
    )
    use_keyring: bool = Field(True, description="Use the OS keyring when one is usable.")
    registry_url: str | None = Field(
        None,
        description="The registry `bastion registry publish` sends to when --registry is not "
        "given (the registry URL; its API is at <registry_url>/v0.1).",
    )
    local_ca_dir: Path | None = Field(
        None,
        description="The registry bridge's local CA (https on loopback); default: local-ca in "
        "the user's data directory.",
    )

    @field_validator("client_metadata_url")
    @classmethod
    def _cimd_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.path in ("", "/"):
            raise ValueError(
                "client_metadata_url must be an https URL with a path, e.g. "
                f"https://example.com/client.json (MCP client registration); got {value!r}"
            )
        if parts.fragment:
            raise ValueError(f"client_metadata_url must not have a fragment; got {value!r}")
        return value

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        return None if value is None else _absolute_http_url(value, "registry_url")

    @field_validator("preferred_issuers")
    @classmethod
    def _issuers(cls, value: list[str]) -> list[str]:
        return [_absolute_http_url(v, "preferred issuer") for v in value]

    @field_validator("static_headers")
    @classmethod
    def _static(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for url, header in value.items():
            _absolute_http_url(url, "static header URL")
            if any(c in header.get_secret_value() for c in "\r\n"):
                raise ValueError(f"the static Authorization header for {url} has a line break")
        return value

    def pre_registered_for(self, issuer: str) -> PreRegisteredClient | None:
        """The pre-registered client of exactly this issuer (simple string comparison)."""
        for client in self.pre_registered:
            if client.issuer == issuer:
                return client
        return None


__all__ = [
    "AuthMethod",
    "ClientSettings",
    "DPoPMode",
    "EnterpriseIdp",
    "GrantType",
    "IdpAuthMethod",
    "PreRegisteredClient",
    "SigningAlg",
]
