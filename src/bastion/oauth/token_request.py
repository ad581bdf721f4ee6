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
from typing import Literal, get_args

from bastion.oauth.errors import InvalidRequest, InvalidTarget, UnsupportedGrantType
from bastion.oauth.form import Params, single

GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]

GRANT_TYPES: tuple[GrantType, ...] = get_args(GrantType)
"""The grant types bastion implements, in the order its errors and metadata list them."""


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


TokenRequest = AuthorizationCodeRequest | RefreshTokenRequest | ClientCredentialsRequest


def grant_type(params: Params) -> GrantType:
    """The ``grant_type`` parameter, compared case-sensitively (RFC 6749 §5.2:
    invalid_request when missing, unsupported_grant_type when not one of :data:`GRANT_TYPES`)."""
    sent = single(params, "grant_type")
    if sent is None:
        raise InvalidRequest("grant_type is required")
    for known in GRANT_TYPES:
        if sent == known:
            return known
    raise UnsupportedGrantType(
        f"grant_type {sent} is not supported; use one of {', '.join(GRANT_TYPES)}"
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
    return ClientCredentialsRequest(
        scope=single(params, "scope"), resource=tuple(params.get("resource", ()))
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
    "GRANT_TYPES",
    "AuthorizationCodeRequest",
    "ClientCredentialsRequest",
    "GrantType",
    "RefreshTokenRequest",
    "TokenRequest",
    "grant_type",
    "parse",
]
