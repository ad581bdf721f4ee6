"""Client authentication at the token endpoint (OAuth 2.1 §2.4).

- ``none``: a public client sends its ``client_id`` in the body (OAuth 2.1 §2.4, RFC 7636).
- ``client_secret_basic``: ``Authorization: Basic`` over the form-urlencoded id and secret
  (RFC 6749 §2.3.1).
- ``client_secret_post``: ``client_id`` and ``client_secret`` in the body (RFC 6749 §2.3.1).
- ``private_key_jwt``: a signed JWT assertion (RFC 7523 §2.2, §3) with ``iss`` = ``sub`` = the
  client_id and ``aud`` = the authorization server's issuer identifier (as
  draft-ietf-oauth-rfc7523bis recommends, and the MCP client-credentials extension expects).
  An Ed25519 key signs with ``alg`` ``EdDSA`` (RFC 8037 §3.1), the name authorization servers
  widely accept; RFC 9864 deprecates it for the fully-specified ``Ed25519``, which fewer know.
"""

from __future__ import annotations

import base64
import secrets
import time
import warnings
from collections.abc import Callable
from urllib.parse import quote

from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion.client.errors import TokenEndpointError
from bastion.client.models import RegisteredClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60


def basic_authorization(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value of client_secret_basic (RFC 6749 §2.3.1: each part
    application/x-www-form-urlencoded, then joined by ":" and base64-encoded)."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def client_assertion(
    client: RegisteredClient, audience: str, *, now: Callable[[], float] = time.time
) -> str:
    """A private_key_jwt client assertion (RFC 7523 §3): iss, sub, aud, jti, iat, exp."""
    if client.private_key_pem is None:
        raise TokenEndpointError(
            f"client {client.client_id} uses private_key_jwt but has no private_key_pem"
        )
    alg = "EdDSA" if client.signing_alg == "Ed25519" else client.signing_alg
    key: ECKey | RSAKey | OKPKey
    if alg.startswith("ES"):
        key = ECKey.import_key(client.private_key_pem)
    elif alg == "EdDSA":
        key = OKPKey.import_key(client.private_key_pem)
    else:
        key = RSAKey.import_key(client.private_key_pem)
    issued = int(now())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": audience,
        "jti": secrets.token_urlsafe(24),
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    header = {"alg": alg, "typ": "JWT"}
    if client.key_id:
        header["kid"] = client.key_id
    with warnings.catch_warnings():
        # joserfc warns on the polymorphic "EdDSA" name (RFC 9864): chosen above on purpose.
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, claims, key, algorithms=[alg])


def authenticate(
    client: RegisteredClient,
    form: dict[str, str],
    headers: dict[str, str],
    *,
    issuer: str,
    now: Callable[[], float] = time.time,
) -> None:
    """Add the client's authentication to a token request's ``form`` and ``headers``."""
    method = client.token_endpoint_auth_method
    if method == "none":
        form["client_id"] = client.client_id
    elif method == "client_secret_basic":
        headers["Authorization"] = basic_authorization(client.client_id, _secret(client))
    elif method == "client_secret_post":
        form["client_id"] = client.client_id
        form["client_secret"] = _secret(client)
    else:
        form["client_id"] = client.client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = client_assertion(client, issuer, now=now)


def _secret(client: RegisteredClient) -> str:
    if not client.client_secret:
        raise TokenEndpointError(
            f"client {client.client_id} uses {client.token_endpoint_auth_method} but has no "
            "client_secret; configure one for this issuer or register the client again"
        )
    return client.client_secret


__all__ = ["ASSERTION_TYPE", "authenticate", "basic_authorization", "client_assertion"]
