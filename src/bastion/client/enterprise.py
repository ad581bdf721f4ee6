"""Enterprise-managed authorization on the client side (MCP extension
``io.modelcontextprotocol/enterprise-managed-authorization``, the Identity Assertion JWT
Authorization Grant, "ID-JAG").

Two token requests, no browser:

1. at the enterprise IdP's token endpoint, an RFC 8693 token exchange (ID-JAG §4): the user's
   ID token as ``subject_token`` (type ``urn:ietf:params:oauth:token-type:id_token``),
   ``requested_token_type`` ``urn:ietf:params:oauth:token-type:id-jag``, ``audience`` the MCP
   server's authorization server issuer, ``resource`` the MCP server's resource identifier
   (RFC 9728), ``scope`` when there are scopes, and this client's authentication at the IdP.
   The answer must say ``issued_token_type`` id-jag (§4.2);
2. at the MCP server's authorization server, the JWT bearer grant (RFC 7523, ID-JAG §5) with the
   ID-JAG as ``assertion`` and the client's own credentials there
   (:func:`bastion.client.flow.jwt_bearer`, which also sends ``resource``).

Where the ID token comes from: a file (``id_token_file``) or an environment variable
(``id_token_env``) of the ``enterprise`` settings, read at each exchange, so whatever performs
the enterprise single sign-on (an OIDC login of another tool, a desktop agent) can keep it fresh.
An OIDC login to the IdP by bastion itself is not built in yet. An ID token that has visibly
expired is not sent: the error says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence

import httpx
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from bastion.client.client_auth import authenticate
from bastion.client.discovery import check_endpoint, fetch_authorization_server
from bastion.client.errors import AssertionUnavailable, TokenEndpointError
from bastion.client.flow import parse_token_response
from bastion.client.models import RegisteredClient
from bastion.client.scope_selection import scope_parameter
from bastion.client.settings import EnterpriseIdp
from bastion.client.trace import Trace
from bastion.client.workload import environment_value

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # RFC 8693 §2.1
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # RFC 8693 §3
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
MAX_ID_TOKEN_BYTES = 64 * 1024


def read_id_token(
    idp: EnterpriseIdp,
    *,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
) -> str:
    """The user's ID token from the configured file or environment variable, read now."""
    if idp.id_token_file is not None:
        where = f"the ID token file {idp.id_token_file}"
        try:
            with idp.id_token_file.open("rb") as file:
                token = file.read(MAX_ID_TOKEN_BYTES).decode("utf-8", errors="replace").strip()
        except OSError as exc:
            raise AssertionUnavailable(f"cannot read {where}: {exc.strerror or exc}") from None
    else:
        name = idp.id_token_env or ""
        where = f"the environment variable {name}"
        token = environment_value(name, environ).strip()
    if not token:
        raise AssertionUnavailable(
            f"{where} holds no ID token; sign in to the enterprise IdP again"
        )
    exp = _unverified_exp(token)
    if exp is not None and exp <= now():
        raise AssertionUnavailable(
            f"the ID token in {where} expired at {int(exp)}; sign in to the enterprise IdP "
            "again (the IdP would refuse it)"
        )
    return token


def _unverified_exp(token: str) -> float | None:
    """``exp`` of a JWT, unverified (only to avoid sending a dead token), or None."""
    try:
        claims = json.loads(extract_compact(token.encode()).payload)
    except (JoseError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


async def idp_token_endpoint(
    http: httpx.AsyncClient,
    idp: EnterpriseIdp,
    *,
    allow_insecure_http: bool = False,
    https_only: bool = False,
) -> str:
    """The IdP's token endpoint: configured, or from its metadata (RFC 8414, OIDC Discovery;
    the issuer compared exactly)."""
    if idp.idp_token_endpoint is not None:
        return check_endpoint(
            idp.idp_token_endpoint,
            "idp_token_endpoint",
            allow_insecure_http=allow_insecure_http,
            https_only=https_only,
        )
    assert idp.idp_issuer is not None  # the settings demand one of the two
    metadata = await fetch_authorization_server(
        http,
        idp.idp_issuer,
        Trace(),
        require_pkce=False,
        allow_insecure_http=allow_insecure_http,
        https_only=https_only,
    )
    return metadata.token_endpoint


def _idp_client(idp: EnterpriseIdp, endpoint: str) -> RegisteredClient:
    secret = idp.idp_client_secret.get_secret_value() if idp.idp_client_secret else None
    method = idp.idp_token_endpoint_auth_method or (
        "client_secret_post" if secret is not None else "none"
    )
    return RegisteredClient(
        issuer=idp.idp_issuer or endpoint,
        client_id=idp.idp_client_id,
        source="pre-registered",
        token_endpoint_auth_method=method,
        client_secret=secret,
    )


async def request_id_jag(
    http: httpx.AsyncClient,
    idp: EnterpriseIdp,
    *,
    audience: str,
    resource: str,
    scopes: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
    allow_insecure_http: bool = False,
    https_only: bool = False,
) -> str:
    """Exchange the user's ID token for an ID-JAG at the IdP (ID-JAG §4, RFC 8693 §2.1).

    Raises :class:`AssertionUnavailable` without an ID token, and :class:`TokenEndpointError`
    with the IdP's error code and description when it refuses (§4.2.1), or when it answers
    anything but an ID-JAG."""
    id_token = read_id_token(idp, environ=environ, now=now)
    endpoint = await idp_token_endpoint(
        http, idp, allow_insecure_http=allow_insecure_http, https_only=https_only
    )
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "requested_token_type": ID_JAG,
        "audience": audience,
        "resource": resource,
        "subject_token": id_token,
        "subject_token_type": ID_TOKEN,
    }
    scope = scope_parameter(scopes)
    if scope:
        form["scope"] = scope
    headers = {"Accept": "application/json"}
    client = _idp_client(idp, endpoint)
    authenticate(client, form, headers, issuer=client.issuer, now=now)
    try:
        response = await http.post(endpoint, data=form, headers=headers)
    except httpx.HTTPError as exc:
        raise TokenEndpointError(
            f"the token exchange at the enterprise IdP ({endpoint}) failed: {exc}"
        ) from exc
    # RFC 8693 §2.2.1: token_type N_A for what is not an access token.
    answer = parse_token_response(response, endpoint, token_types=("N_A", "Bearer"))
    issued = answer.extra.get("issued_token_type")
    if issued != ID_JAG:
        raise TokenEndpointError(
            f"the enterprise IdP ({endpoint}) issued {issued!r}, not an ID-JAG ({ID_JAG}); "
            "check that ID-JAG (cross-app access) is enabled for this client at the IdP"
        )
    return answer.access_token


__all__ = [
    "ID_JAG",
    "ID_TOKEN",
    "TOKEN_EXCHANGE",
    "idp_token_endpoint",
    "read_id_token",
    "request_id_jag",
]
