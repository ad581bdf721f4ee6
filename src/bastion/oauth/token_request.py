"""The token request (OAuth 2.1 §3.2.2) as a union discriminated on ``grant_type``.

:func:`grant_type` reads the discriminator and :func:`parse` the parameters of that grant, each
once: the token endpoint authenticates the client between the two (OAuth 2.1 §3.2.1), so that a
client that is not authenticated learns nothing about the rest of its request. Parameters are
already grouped, with empty values dropped and repetitions refused (except ``resource``, RFC 8707
§2); what each grant then demands of their values (a known code, a matching verifier, a known
scope) is the grant's own check, made on the typed request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from bastion.oauth.errors import InvalidRequest, InvalidTarget, UnsupportedGrantType
from bastion.oauth.form import Params, single

TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
"""The grant type of RFC 8693 §2.1."""
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
"""The token type identifier of an access token (RFC 8693 §3)."""
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
"""The grant type of RFC 7523 §2.1: a JWT as the authorization grant."""

ClientGrantType = Literal[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
]
GrantType = Literal[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
]

GRANT_TYPES: tuple[ClientGrantType, ...] = get_args(ClientGrantType)
"""The grant types a client registers for (RFC 7591 §2 ``grant_types``), in the order errors
and metadata list them. Token exchange is not among them: the ``[[token_exchange]]`` rules of
the configuration, not a client's registration, say who may exchange."""
ALL_GRANT_TYPES: tuple[GrantType, ...] = get_args(GrantType)
"""Every grant type the token endpoint knows."""


@dataclass(frozen=True)
class AuthorizationCodeRequest:
    """Redeeming a code (OAuth 2.1 §4.1.3, RFC 7636 §4.5) for at most one ``resource``
    (RFC 8707 §2.2). A missing ``redirect_uri`` or ``code_verifier`` is the grant's to judge
    once it knows the code."""

    code: str
    redirect_uri: str | None = None
    code_verifier: str | None = None
    resource: str | None = None
    grant_type: Literal["authorization_code"] = field(default="authorization_code", init=False)


@dataclass(frozen=True)
class RefreshTokenRequest:
    """Refreshing (OAuth 2.1 §4.3.1): the token, the ``scope`` as sent (RFC 6749 §3.3 syntax
    is checked by the grant, after the token) and at most one ``resource`` (RFC 8707 §2.2)."""

    refresh_token: str
    scope: str | None = None
    resource: str | None = None
    grant_type: Literal["refresh_token"] = field(default="refresh_token", init=False)


@dataclass(frozen=True)
class ClientCredentialsRequest:
    """A client acting for itself (OAuth 2.1 §4.2.1): the ``scope`` as sent and every
    ``resource`` sent (RFC 8707 §2), which the grant narrows to one configured resource."""

    scope: str | None = None
    resource: tuple[str, ...] = ()
    grant_type: Literal["client_credentials"] = field(default="client_credentials", init=False)


@dataclass(frozen=True)
class TokenExchangeRequest:
    """A token exchange (RFC 8693 §2.1): the ``subject_token`` and its type, the optional
    ``actor_token`` and its type (each required with the other), at most one ``resource`` and
    one ``audience`` naming the target, the ``scope`` as sent and the ``requested_token_type``.
    Which token types are supported, and what the target is, is the grant's to judge."""

    subject_token: str = field(repr=False)
    subject_token_type: str
    actor_token: str | None = field(default=None, repr=False)
    actor_token_type: str | None = None
    resource: str | None = None
    audience: str | None = None
    scope: str | None = None
    requested_token_type: str | None = None
    grant_type: Literal["urn:ietf:params:oauth:grant-type:token-exchange"] = field(
        default=TOKEN_EXCHANGE, init=False
    )


@dataclass(frozen=True)
class JwtBearerRequest:
    """A JWT as the authorization grant (RFC 7523 §2.1): the ``assertion`` (an ID-JAG or a
    workload's token), the ``scope`` as sent and at most one ``resource`` (RFC 8707 §2.2)."""

    assertion: str = field(repr=False)
    scope: str | None = None
    resource: str | None = None
    grant_type: Literal["urn:ietf:params:oauth:grant-type:jwt-bearer"] = field(
        default=JWT_BEARER, init=False
    )


TokenRequest = (
    AuthorizationCodeRequest
    | RefreshTokenRequest
    | ClientCredentialsRequest
    | JwtBearerRequest
    | TokenExchangeRequest
)


def grant_type(params: Params) -> GrantType:
    """The ``grant_type`` parameter, compared case-sensitively (RFC 6749 §5.2:
    invalid_request when missing, unsupported_grant_type when not one of
    :data:`ALL_GRANT_TYPES`)."""
    sent = single(params, "grant_type")
    if sent is None:
        raise InvalidRequest("grant_type is required")
    for known in ALL_GRANT_TYPES:
        if sent == known:
            return known
    # Token exchange and jwt-bearer are left out: without configuration they are unsupported.
    always = [g for g in GRANT_TYPES if g != JWT_BEARER]
    raise UnsupportedGrantType(
        f"grant_type {sent} is not supported; use one of {', '.join(always)}"
    )


def parse(kind: GrantType, params: Params) -> TokenRequest:
    """The parameters of a ``kind`` request; invalid_request names a missing one and
    invalid_target refuses a second ``resource`` where one token has one audience."""
    if kind == "authorization_code":
        code = _required(params, "code")
        return AuthorizationCodeRequest(
            code=code,
            redirect_uri=single(params, "redirect_uri"),
            code_verifier=single(params, "code_verifier"),
            resource=_one_resource(params),
        )
    if kind == "refresh_token":
        token = _required(params, "refresh_token")
        return RefreshTokenRequest(
            refresh_token=token, resource=_one_resource(params), scope=single(params, "scope")
        )
    if kind == "client_credentials":
        return ClientCredentialsRequest(
            scope=single(params, "scope"), resource=tuple(params.get("resource", ()))
        )
    if kind == JWT_BEARER:
        return JwtBearerRequest(
            assertion=_required(params, "assertion"),
            scope=single(params, "scope"),
            resource=_one_resource(params),
        )
    return _token_exchange(params)


def _token_exchange(params: Params) -> TokenExchangeRequest:
    subject = _required(params, "subject_token")
    subject_type = _required(params, "subject_token_type")
    actor = single(params, "actor_token")
    actor_type = single(params, "actor_token_type")
    # RFC 8693 §2.1: actor_token_type is REQUIRED with actor_token and MUST NOT come without it.
    if actor is not None and actor_type is None:
        raise InvalidRequest("actor_token_type is required with actor_token")
    if actor is None and actor_type is not None:
        raise InvalidRequest("actor_token_type was sent without actor_token")
    audiences = params.get("audience", ())
    if len(audiences) > 1:
        raise InvalidTarget("send one audience per request: an exchanged token has one")
    return TokenExchangeRequest(
        subject_token=subject,
        subject_token_type=subject_type,
        actor_token=actor,
        actor_token_type=actor_type,
        resource=_one_resource(params),
        audience=audiences[0] if audiences else None,
        scope=single(params, "scope"),
        requested_token_type=single(params, "requested_token_type"),
    )


def _required(params: Params, name: str) -> str:
    value = single(params, name)
    if value is None:
        raise InvalidRequest(f"{name} is required")
    return value


def _one_resource(params: Params) -> str | None:
    resources = params.get("resource", ())
    if len(resources) > 1:
        raise InvalidTarget("send one resource per request")
    return resources[0] if resources else None


__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ALL_GRANT_TYPES",
    "GRANT_TYPES",
    "JWT_BEARER",
    "TOKEN_EXCHANGE",
    "AuthorizationCodeRequest",
    "ClientCredentialsRequest",
    "ClientGrantType",
    "GrantType",
    "JwtBearerRequest",
    "RefreshTokenRequest",
    "TokenExchangeRequest",
    "TokenRequest",
    "grant_type",
    "parse",
]
