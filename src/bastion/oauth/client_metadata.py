"""Client metadata (RFC 7591 §2) and its validation rules.

Used for Dynamic Client Registration (RFC 7591/7592), Client ID Metadata Documents
(draft-ietf-oauth-client-id-metadata-document) and pre-registered clients alike, so that every
client obeys one set of rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from bastion.oauth import endpoint_url
from bastion.oauth.endpoint_url import EndpointUrlPolicy
from bastion.oauth.errors import InvalidClientMetadata, InvalidRedirectUri
from bastion.oauth.redirect_uri import (
    RedirectUriError,
    validate_for_registration,
)
from bastion.oauth.token_request import GRANT_TYPES, JWT_BEARER

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
# Grants with no person behind them: a client uses them acting for itself.
PERSONLESS_GRANTS = frozenset({"client_credentials"})
# Grants only an operator gives a client: acting alone, and jwt-bearer (RFC 7523), with which
# an identity provider's assertion (an ID-JAG) or a workload's token obtains tokens without a
# person's consent here.
OPERATOR_GRANTS = PERSONLESS_GRANTS | {JWT_BEARER}
RESPONSE_TYPES = ("code",)
CONFIDENTIAL_METHODS = frozenset({"client_secret_basic", "client_secret_post", "private_key_jwt"})

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]


class ClientMetadata(BaseModel):
    """The registered metadata of a client (RFC 7591 §2, OpenID Connect Registration §2)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    redirect_uris: list[str] = Field(default_factory=list)
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code"])
    response_types: list[str] = Field(default_factory=lambda: ["code"])
    client_name: str | None = Field(None, max_length=200)
    client_uri: str | None = Field(None, max_length=2000)
    logo_uri: str | None = Field(None, max_length=2000)
    scope: str | None = Field(None, max_length=2000)
    contacts: list[str] | None = None
    tos_uri: str | None = Field(None, max_length=2000)
    policy_uri: str | None = Field(None, max_length=2000)
    jwks_uri: str | None = Field(None, max_length=2000)
    jwks: dict[str, object] | None = None
    software_id: str | None = Field(None, max_length=200)
    software_version: str | None = Field(None, max_length=200)
    application_type: Literal["web", "native"] = "web"
    # RFC 9449 §5.2: the client always uses DPoP; a token request without a proof is refused.
    dpop_bound_access_tokens: StrictBool | None = None

    @property
    def is_public(self) -> bool:
        """A public client has no credentials (token_endpoint_auth_method none)."""
        return self.token_endpoint_auth_method == "none"

    def public_dict(self) -> dict[str, object]:
        """The metadata as returned in registration responses: set fields only."""
        return self.model_dump(exclude_none=True)


_JWKS_URI = EndpointUrlPolicy(credentials=False)
_HTTPS = "must use https (http only on a loopback host: localhost, 127.0.0.1, [::1])"
_JWKS_URI_REASONS = {**endpoint_url.REASONS, "scheme": _HTTPS, "http": _HTTPS}


def jwks_uri_problem(uri: str) -> str | None:
    """What makes ``uri`` unfit as a client's jwks_uri, or None. The keys it serves
    authenticate the client (RFC 7523 §3): fetched without TLS, anyone on the path could swap in
    their own and sign in as the client. So https, or http on a loopback host (development):
    the endpoint URL rule (:mod:`bastion.oauth.endpoint_url`) without credentials in the URL."""
    problem = _JWKS_URI.problem(uri)
    return None if problem is None else _JWKS_URI_REASONS[problem]


def _reject(field: str, message: str) -> InvalidClientMetadata:
    return InvalidClientMetadata(f"{field}: {message}")


def parse(data: object, *, default_auth_method: AuthMethod | None = None) -> ClientMetadata:
    """Validate a metadata object into a :class:`ClientMetadata`; raise the RFC 7591 error.

    ``default_auth_method`` replaces RFC 7591's default ``client_secret_basic`` when the client
    omits the field (CIMD documents default to ``none``).
    """
    if not isinstance(data, dict):
        raise InvalidClientMetadata("client metadata must be a JSON object")
    if default_auth_method is not None and "token_endpoint_auth_method" not in data:
        data = {**data, "token_endpoint_auth_method": default_auth_method}
    for list_field in ("redirect_uris", "grant_types", "response_types", "contacts"):
        value = data.get(list_field)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            if list_field == "redirect_uris":
                raise InvalidRedirectUri("redirect_uris must be an array of strings")
            raise _reject(list_field, "must be an array of strings")
    try:
        meta = ClientMetadata.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "metadata"
        raise _reject(where, first["msg"]) from None
    _check_consistency(meta)
    return meta


def _check_consistency(meta: ClientMetadata) -> None:
    unknown = [g for g in meta.grant_types if g not in GRANT_TYPES]
    if unknown:
        raise _reject(
            "grant_types",
            f"unsupported {', '.join(unknown)}; supported: {', '.join(GRANT_TYPES)} "
            "(implicit and password grants are not part of OAuth 2.1)",
        )
    bad_rt = [r for r in meta.response_types if r not in RESPONSE_TYPES]
    if bad_rt:
        raise _reject("response_types", f"unsupported {', '.join(bad_rt)}; only 'code' is")
    uses_code = "authorization_code" in meta.grant_types
    if uses_code and "code" not in meta.response_types:
        raise _reject("response_types", "must include 'code' for the authorization_code grant")
    if "code" in meta.response_types and not uses_code:
        raise _reject("grant_types", "must include 'authorization_code' for response type 'code'")
    if "refresh_token" in meta.grant_types and not uses_code:
        raise _reject("grant_types", "refresh_token is only issued with authorization_code")
    if "client_credentials" in meta.grant_types and meta.is_public:
        raise _reject(
            "grant_types",
            "client_credentials requires a confidential client (not auth method none)",
        )
    if meta.jwks is not None and meta.jwks_uri is not None:
        # RFC 7591 §2: MUST NOT both be present, whatever the authentication method.
        raise _reject("jwks", "jwks and jwks_uri must not both be present (RFC 7591 2)")
    if meta.token_endpoint_auth_method == "private_key_jwt" and not meta.jwks and not meta.jwks_uri:
        raise _reject("jwks", "private_key_jwt needs jwks or jwks_uri")
    if meta.jwks_uri is not None and (problem := jwks_uri_problem(meta.jwks_uri)):
        raise _reject("jwks_uri", f"{meta.jwks_uri} {problem}")
    if meta.jwks is not None and not isinstance(meta.jwks.get("keys"), list):
        raise _reject("jwks", "must be a JWK Set with a 'keys' array")
    if uses_code and not meta.redirect_uris:
        raise InvalidRedirectUri("redirect_uris is required for the authorization_code grant")
    for uri in meta.redirect_uris:
        try:
            validate_for_registration(uri, application_type=meta.application_type)
        except RedirectUriError as exc:
            raise InvalidRedirectUri(str(exc)) from None


__all__ = [
    "AUTH_METHODS",
    "CONFIDENTIAL_METHODS",
    "GRANT_TYPES",
    "OPERATOR_GRANTS",
    "PERSONLESS_GRANTS",
    "RESPONSE_TYPES",
    "AuthMethod",
    "ClientMetadata",
    "jwks_uri_problem",
    "parse",
]
