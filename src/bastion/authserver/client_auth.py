"""Client authentication at the token, introspection and revocation endpoints.

Methods (RFC 6749 §2.3, OAuth 2.1 §2.4, RFC 7523 §2.2): ``client_secret_basic``,
``client_secret_post``, ``private_key_jwt``, and ``none`` for public clients (client_id only).
A client uses exactly one method per request, the one it registered.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.requests import Request

from bastion.authserver.context import AuthServer
from bastion.authserver.http import single
from bastion.authserver.quotas import requester
from bastion.oauth import jose
from bastion.oauth.errors import InvalidClient, InvalidRequest
from bastion.store import grants
from bastion.store.clients import Client
from bastion.tokens import secrets as opaque

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# RFC 7518 §3.1 and RFC 9864 §2: Ed25519 and Ed448 are the fully specified names, EdDSA the
# older one for both (the algorithm table of bastion.oauth.jose).
ASSERTION_ALGS = [
    "ES256",
    "ES384",
    "ES512",
    "Ed25519",
    "Ed448",
    "EdDSA",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
]
MAX_ASSERTION_LIFETIME = 600
# Clock skew allowed on exp and nbf; the jti is remembered this long after exp, so that an
# assertion cannot be replayed while it is still accepted.
ASSERTION_LEEWAY = 5


@dataclass(frozen=True)
class Presented:
    """The credentials a request carried."""

    method: str
    client_id: str
    secret: str | None = None
    assertion: str | None = None


def presented(request: Request, params: dict[str, list[str]]) -> Presented:
    """Work out which authentication method a request used; refuse more than one."""
    header = request.headers.get("authorization")
    form_id = single(params, "client_id")
    form_secret = single(params, "client_secret")
    assertion = single(params, "client_assertion")
    used: list[Presented] = []
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClient("only HTTP Basic client authentication is accepted in the header")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII (obs-text)
            raise InvalidClient("the Basic credentials are not valid base64") from None
        cid, sep, secret = decoded.partition(":")
        if not sep:
            raise InvalidClient("the Basic credentials must be client_id:client_secret")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        cid, secret = unquote_plus(cid), unquote_plus(secret)
        if form_id is not None and form_id != cid:
            raise InvalidRequest("client_id in the body differs from the Basic credentials")
        used.append(Presented("client_secret_basic", cid, secret=secret))
    if form_secret is not None:
        used.append(Presented("client_secret_post", form_id or "", secret=form_secret))
    if assertion is not None:
        if single(params, "client_assertion_type") != ASSERTION_TYPE:
            raise InvalidClient(f"client_assertion_type must be {ASSERTION_TYPE}")
        used.append(Presented("private_key_jwt", form_id or "", assertion=assertion))
    if len(used) > 1:
        raise InvalidRequest("use exactly one client authentication method per request")
    if used:
        return used[0]
    if form_id is None:
        raise InvalidClient("client authentication is required (or client_id for public clients)")
    return Presented("none", form_id)


def sends_credentials(request: Request, params: dict[str, list[str]]) -> bool:
    """Whether a request carries client credentials (HTTP Basic, a secret or a client
    assertion), more than a bare client_id."""
    return (
        "authorization" in request.headers
        or single(params, "client_secret") is not None
        or single(params, "client_assertion") is not None
    )


async def authenticate(
    bastion: AuthServer, request: Request, params: dict[str, list[str]]
) -> Client:
    """The client a request authenticates as; InvalidClient when authentication fails."""
    cred = presented(request, params)
    if cred.method == "private_key_jwt" and not cred.client_id:
        cred = Presented(
            cred.method, _assertion_subject(cred.assertion or ""), None, cred.assertion
        )
    if not cred.client_id:
        raise InvalidClient("client_id is missing")
    client = await bastion.clients.find(cred.client_id, requester=lambda: requester(request.scope))
    expected = client.metadata.token_endpoint_auth_method
    if cred.method != expected:
        raise InvalidClient(
            f"client {client.client_id} is registered for {expected} authentication, "
            f"but the request used {cred.method}"
        )
    if cred.method in ("client_secret_basic", "client_secret_post"):
        if not client.secret_hash or not opaque.matches(cred.secret or "", client.secret_hash):
            raise InvalidClient("client authentication failed")
    elif cred.method == "private_key_jwt":
        await _verify_assertion(bastion, client, cred.assertion or "")
    return client


def _assertion_subject(assertion: str) -> str:
    """The unverified ``sub`` of an assertion, only to find the client whose keys verify it."""
    sub = jose.read_claims(assertion).get("sub")
    return sub if isinstance(sub, str) else ""


async def _client_keys(bastion: AuthServer, client: Client, assertion: str) -> jose.UsableKeys:
    """The client's registered keys: its ``jwks``, or the set at its ``jwks_uri`` (cached,
    fetched again when the assertion names a key the cached set lacks)."""
    meta = client.metadata
    if meta.jwks is None and meta.jwks_uri:
        try:
            kid = jose.read_header(assertion).get("kid")
        except jose.JoseError:
            kid = None
        return await bastion.client_jwks.keys(
            meta.jwks_uri, kid=kid if isinstance(kid, str) else None
        )
    try:
        return jose.usable_keys(meta.jwks)
    except jose.NotAJwkSet:
        raise InvalidClient("the client's JWK Set cannot be used") from None


def _time_refusal(exc: jose.TimeClaimError) -> InvalidClient:
    """invalid_client for a time claim :func:`bastion.oauth.jose.check_times` refused."""
    if exc.claim == "exp" and exc.problem in ("missing", "not_a_number", "expired"):
        return InvalidClient("the client assertion has expired")
    if exc.problem == "too_long":
        return InvalidClient("the client assertion lives too long (at most 10 minutes)")
    if exc.problem == "not_yet_valid":
        return InvalidClient("the client assertion is not valid yet (nbf)")
    return InvalidClient(f"the client assertion's {exc.claim} is not a number")


async def _verify_assertion(bastion: AuthServer, client: Client, assertion: str) -> None:
    """RFC 7523 §3: signature, iss = sub = client_id, aud names this AS, exp (and nbf), single
    use."""
    keys = await _client_keys(bastion, client, assertion)
    try:
        claims = jose.verify(assertion, keys, ASSERTION_ALGS).claims
    except jose.JoseError:
        raise InvalidClient("the client assertion's signature does not verify") from None
    now = bastion.clock()
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    accepted = {bastion.issuer, bastion.url("/token")}
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise InvalidClient("the client assertion's iss and sub must both be the client_id")
    if not accepted.intersection(a for a in audiences if isinstance(a, str)):
        raise InvalidClient(f"the client assertion's aud must be {bastion.issuer}")
    try:
        # RFC 7523 §3 items 4 and 5: exp required and not passed, nbf honoured; RFC 7523 sets
        # no rule for an iat in the future, so none is made here.
        exp = jose.check_times(
            claims,
            now=now,
            leeway=ASSERTION_LEEWAY,
            refuse_future_iat=False,
            max_lifetime=MAX_ASSERTION_LIFETIME,
        )
    except jose.TimeClaimError as exc:
        raise _time_refusal(exc) from None
    assert exp is not None  # required above
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise InvalidClient("the client assertion needs a jti")
    key = opaque.digest(f"{client.client_id} {jti}")
    async with bastion.db.transaction() as conn:
        fresh = await grants.use_assertion_once(conn, key, int(exp) + ASSERTION_LEEWAY, now)
    if not fresh:
        raise InvalidClient("the client assertion was already used")


__all__ = ["ASSERTION_TYPE", "Presented", "authenticate", "presented", "sends_credentials"]
