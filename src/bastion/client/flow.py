"""The grants: authorization code with PKCE, refresh, client credentials (OAuth 2.1 §4).

Authorization code (OAuth 2.1 §4.1, MCP "Authorization Flow Steps"):

- PKCE with S256 only, refused unless advertised (RFC 7636, MCP security considerations) [C10];
- ``state`` of 256 bits, checked on return (OAuth 2.1 §7.12, MCP "Open Redirection") [C17];
- the validated issuer recorded with state and verifier before the browser opens; the response's
  ``iss`` compared by simple string comparison, its absence refused when the server advertises
  ``authorization_response_iss_parameter_supported``; ``error`` fields acted on only after that
  (RFC 9207 §2.4, MCP "Authorization Response Validation") [C11];
- ``resource`` (RFC 8707 §2) in the authorization and every token request [C12];
- the authorization URL opened only if it is https (loopback http excepted) [C18].

Client credentials (OAuth 2.1 §4.2) for machine clients, with client_secret_basic,
client_secret_post or private_key_jwt (:mod:`bastion.client.client_auth`); the only token
request sent again when a load balancer reports it cut off (it redeems nothing).

The JWT bearer grant (RFC 7523 §2.1) for an assertion: a workload identity token or an ID-JAG
(:mod:`bastion.client.workload`, :mod:`bastion.client.enterprise`). Never sent twice: a refused
assertion is reported, not retried (SEP-1933).

DPoP (RFC 9449 §5): with a :class:`~bastion.client.dpop.Prover`, every token request carries a
fresh proof; a ``400 use_dpop_nonce`` with a ``DPoP-Nonce`` is answered once with a new proof
carrying that nonce (§8; the server refused before redeeming anything), and a second one is
the error. The answer may then be ``token_type`` DPoP (or Bearer: the server chose not to bind
it, §5).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from bastion.client.client_auth import authenticate
from bastion.client.dpop import SCHEME, Prover
from bastion.client.errors import (
    AuthorizationDenied,
    InvalidCallback,
    IssuerResponseMismatch,
    PkceNotSupported,
    StateMismatch,
    TokenEndpointError,
)
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient
from bastion.client.scope_selection import scope_parameter
from bastion.oauth import pkce, token_response
from bastion.oauth.token_response import MalformedTokenResponse, TokenErrorResponse, TokenResponse

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523 §2.1


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorization request and what its response is checked against."""

    url: str = field(repr=False)
    state: str = field(repr=False)
    verifier: str = field(repr=False)
    redirect_uri: str
    expected_issuer: str
    iss_required: bool
    resource: str
    scopes: tuple[str, ...]
    client_id: str


def build_authorization_request(
    metadata: AuthorizationServerMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    resource: str,
    scopes: Sequence[str] = (),
) -> AuthorizationRequest:
    """The authorization URL (OAuth 2.1 §4.1.1) with PKCE S256, state and ``resource``.

    The endpoint's own query is kept (OAuth 2.1 §3.1). Raises :class:`PkceNotSupported` when
    the server does not advertise S256 (C10).
    """
    if metadata.authorization_endpoint is None:
        raise PkceNotSupported(
            f"authorization server {metadata.issuer} has no authorization_endpoint; it cannot "
            "be used for an interactive log-in"
        )
    if not metadata.supports_s256:
        raise PkceNotSupported(
            f"authorization server {metadata.issuer} does not advertise PKCE S256 "
            "(code_challenge_methods_supported); refusing to proceed"
        )
    verifier = pkce.new_verifier()
    state = secrets.token_urlsafe(32)
    params: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("code_challenge", pkce.s256(verifier)),
        ("code_challenge_method", "S256"),
        ("resource", resource),
    ]
    scope = scope_parameter(scopes)
    if scope:
        params.append(("scope", scope))
    parts = urlsplit(metadata.authorization_endpoint)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    names = {k for k, _ in params}
    query = urlencode([*(kv for kv in kept if kv[0] not in names), *params])
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return AuthorizationRequest(
        url=url,
        state=state,
        verifier=verifier,
        redirect_uri=redirect_uri,
        expected_issuer=metadata.issuer,
        iss_required=metadata.iss_parameter_supported,
        resource=resource,
        scopes=tuple(scopes),
        client_id=client_id,
    )


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise InvalidCallback(f"the authorization response repeats {name} (RFC 6749 §3.1)")
    return values[0]


def validate_callback(query: str, request: AuthorizationRequest) -> str:
    """Check an authorization response's query and return its ``code``.

    In order: ``state`` equal (C17); ``iss`` equal to the recorded issuer by simple string
    comparison, or absent only when the server does not advertise it (RFC 9207 §2.4, C11); only
    then an ``error`` is reported (:class:`AuthorizationDenied`); ``code`` exactly once.
    """
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    state = _single(params, "state")
    if state is None or not secrets.compare_digest(state.encode(), request.state.encode()):
        raise StateMismatch(
            "the authorization response's state is missing or does not match the request; the "
            "response was discarded (it may be forged or from another log-in)"
        )
    iss = _single(params, "iss")
    if iss is None:
        if request.iss_required:
            raise IssuerResponseMismatch(
                f"authorization server {request.expected_issuer} advertises "
                "authorization_response_iss_parameter_supported but its response has no iss; "
                "the response was discarded (RFC 9207 §2.4)"
            )
    elif iss != request.expected_issuer:
        raise IssuerResponseMismatch(
            f"the authorization response came with iss {iss!r}, not the issuer the request was "
            f"sent to ({request.expected_issuer!r}); discarded as a possible mix-up attack "
            "(RFC 9207 §2.4)"
        )
    error = _single(params, "error")
    if error is not None:
        raise AuthorizationDenied(error, _single(params, "error_description"))
    code = _single(params, "code")
    if not code:
        raise InvalidCallback("the authorization response has no code (RFC 6749 §4.1.2)")
    return code


def parse_token_response(
    response: httpx.Response, endpoint: str, *, token_types: Sequence[str] = ("Bearer",)
) -> TokenResponse:
    """Read a token endpoint answer (:func:`bastion.oauth.token_response.read`); raise
    :class:`TokenEndpointError` for an error response (RFC 6749 §5.2) and for answers this
    client cannot use (a token type not in ``token_types``: Bearer, RFC 6750, and DPoP when a
    proof was sent, RFC 9449 §5)."""
    try:
        data: object = json.loads(response.content)
    except ValueError:
        data = None
    try:
        answer = token_response.read(response.status_code, data, token_types=token_types)
    except MalformedTokenResponse as exc:
        raise _unusable(exc, response.status_code, endpoint, token_types) from None
    if isinstance(answer, TokenErrorResponse):
        raise TokenEndpointError(
            f"{endpoint} answered HTTP {response.status_code} {answer.error}"
            + (f": {answer.error_description}" if answer.error_description is not None else ""),
            error=answer.error,
            status=response.status_code,
        )
    return answer


def _unusable(
    exc: MalformedTokenResponse, status: int, endpoint: str, token_types: Sequence[str]
) -> TokenEndpointError:
    """The client's words for an answer that is neither a success nor an error response."""
    if exc.problem == "not_a_success":
        return TokenEndpointError(f"{endpoint} answered HTTP {status}", status=status)
    if exc.problem == "not_an_object":
        return TokenEndpointError(f"{endpoint} answered 200 without a JSON object")
    if exc.problem == "no_access_token":
        return TokenEndpointError(f"{endpoint} answered without an access_token")
    if exc.problem == "not_bearer":
        usable = " or ".join(token_types)
        unbound = isinstance(exc.value, str) and exc.value.lower() == "dpop"
        return TokenEndpointError(
            f"{endpoint} issued a token of type {exc.value!r}"
            + (" (bound to a key, yet this request sent no DPoP proof)" if unbound else "")
            + "; "
            + (
                "this client uses Bearer tokens"
                if tuple(token_types) == ("Bearer",)
                else f"this request can use {usable}"
            )
        )
    return TokenEndpointError(
        f"{endpoint} answered a scope that is not a string (RFC 6749 §3.3): {exc.value!r}"
    )


async def token_request(
    http: httpx.AsyncClient,
    metadata_issuer: str,
    token_endpoint: str,
    client: RegisteredClient,
    form: dict[str, str],
    *,
    now: Callable[[], float] = time.time,
    repeatable: bool = False,
    dpop: Prover | None = None,
) -> TokenResponse:
    """POST a token request with the client's authentication (OAuth 2.1 §3.2) and, with
    ``dpop``, a DPoP proof (RFC 9449 §5), retried once on ``use_dpop_nonce`` (§8).

    A ``repeatable`` request (one that consumes nothing, like client credentials) is sent once
    more when it was cut off on the way: the connection closed without an answer, or a proxy's
    502 instead of the server's answer (:func:`_cut_off`), as when the replica behind a load
    balancer died holding it (docs/replicas.md). A code or refresh token redemption is never
    sent twice: the server may have redeemed it, and a second redemption is a replay."""
    response = await _post(
        http, metadata_issuer, token_endpoint, client, form, now, repeatable, dpop
    )
    if dpop is not None and _nonce_demanded(response):
        response = await _post(
            http, metadata_issuer, token_endpoint, client, form, now, repeatable, dpop
        )
    types = ("Bearer", SCHEME) if dpop is not None else ("Bearer",)
    return parse_token_response(response, token_endpoint, token_types=types)


async def _post(
    http: httpx.AsyncClient,
    metadata_issuer: str,
    token_endpoint: str,
    client: RegisteredClient,
    form: dict[str, str],
    now: Callable[[], float],
    repeatable: bool,
    dpop: Prover | None,
) -> httpx.Response:
    """One token request (sent twice only when ``repeatable`` and cut off); the server's
    ``DPoP-Nonce`` is remembered from whatever it answers."""
    for attempt in range(2 if repeatable else 1):
        last = attempt == 1 or not repeatable
        sent = dict(form)  # a fresh client assertion (its own jti) on each attempt
        headers = {"Accept": "application/json"}
        authenticate(client, sent, headers, issuer=metadata_issuer, now=now)
        if dpop is not None:
            headers["DPoP"] = dpop.token_proof(token_endpoint)  # a fresh jti each time
        try:
            response = await http.post(token_endpoint, data=sent, headers=headers)
        except httpx.RemoteProtocolError as exc:
            if last:
                raise TokenEndpointError(
                    f"the token request to {token_endpoint} failed: {exc}"
                ) from exc
            continue
        except httpx.HTTPError as exc:
            raise TokenEndpointError(
                f"the token request to {token_endpoint} failed: {exc}"
            ) from exc
        if dpop is not None:
            dpop.nonces.remember("token", token_endpoint, response.headers.get("dpop-nonce"))
        if last or not _cut_off(response):
            break
    return response


def _nonce_demanded(response: httpx.Response) -> bool:
    """A ``400 use_dpop_nonce`` that came with a ``DPoP-Nonce`` to use (RFC 9449 §8)."""
    if response.status_code != 400 or not response.headers.get("dpop-nonce"):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"


def _cut_off(response: httpx.Response) -> bool:
    """A proxy's 502 (RFC 9110 §15.6.3) rather than the token endpoint's own answer, which is
    JSON (RFC 6749 §5.1, §5.2): the request may not have reached a server, or reached one that
    died before answering."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return response.status_code == 502 and media_type != "application/json"


async def exchange_code(
    http: httpx.AsyncClient,
    metadata: AuthorizationServerMetadata,
    client: RegisteredClient,
    request: AuthorizationRequest,
    code: str,
    *,
    now: Callable[[], float] = time.time,
    dpop: Prover | None = None,
) -> TokenResponse:
    """Redeem the code with the PKCE verifier and the same ``resource`` (OAuth 2.1 §4.1.3,
    RFC 8707 §2)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.verifier,
        "resource": request.resource,
    }
    return await token_request(
        http, metadata.issuer, metadata.token_endpoint, client, form, now=now, dpop=dpop
    )


async def refresh(
    http: httpx.AsyncClient,
    issuer: str,
    token_endpoint: str,
    client: RegisteredClient,
    refresh_token: str,
    resource: str,
    *,
    now: Callable[[], float] = time.time,
    dpop: Prover | None = None,
) -> TokenResponse:
    """The refresh_token grant (OAuth 2.1 §4.3) for the same ``resource`` (RFC 8707 §2); a
    DPoP-bound grant is refreshed with a proof of the same key (RFC 9449 §5)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    return await token_request(http, issuer, token_endpoint, client, form, now=now, dpop=dpop)


async def client_credentials(
    http: httpx.AsyncClient,
    metadata: AuthorizationServerMetadata,
    client: RegisteredClient,
    resource: str,
    scopes: Sequence[str] = (),
    *,
    now: Callable[[], float] = time.time,
    dpop: Prover | None = None,
) -> TokenResponse:
    """The client credentials grant (OAuth 2.1 §4.2) for ``resource``."""
    form = {"grant_type": "client_credentials", "resource": resource}
    scope = scope_parameter(scopes)
    if scope:
        form["scope"] = scope
    return await token_request(
        http,
        metadata.issuer,
        metadata.token_endpoint,
        client,
        form,
        now=now,
        repeatable=True,
        dpop=dpop,
    )


async def jwt_bearer(
    http: httpx.AsyncClient,
    metadata: AuthorizationServerMetadata,
    client: RegisteredClient,
    assertion: str,
    resource: str,
    scopes: Sequence[str] = (),
    *,
    now: Callable[[], float] = time.time,
    dpop: Prover | None = None,
) -> TokenResponse:
    """The JWT bearer grant (RFC 7523 §2.1): ``assertion`` (a workload token or an ID-JAG),
    ``scope`` when there are scopes, and ``resource`` (RFC 8707 §2; MCP asks for it in every
    token request). Sent once: a refused assertion is the caller's error, never retried."""
    form = {"grant_type": JWT_BEARER, "assertion": assertion, "resource": resource}
    scope = scope_parameter(scopes)
    if scope:
        form["scope"] = scope
    return await token_request(
        http, metadata.issuer, metadata.token_endpoint, client, form, now=now, dpop=dpop
    )


__all__ = [
    "JWT_BEARER",
    "AuthorizationRequest",
    "TokenResponse",
    "build_authorization_request",
    "client_credentials",
    "exchange_code",
    "jwt_bearer",
    "parse_token_response",
    "refresh",
    "token_request",
    "validate_callback",
]
