"""A stand-in enterprise identity provider for tests: a real HTTP server on loopback that signs
people in (it mints their ID tokens on request) and exchanges an ID token for an Identity
Assertion JWT Authorization Grant (ID-JAG) by RFC 8693 token exchange, as the MCP extension
"Enterprise-Managed Authorization" §4 describes and as the official conformance suite's mock IdP
does.

Its own policy, like an enterprise IdP's: which of its clients may get ID-JAGs, for which
person, authorization server (``audience``) and resource, and the ``client_id`` each of its
clients has at that authorization server (§6.1: "the IdP will need to be aware of the MCP
Client's client_id"). Every exchange it answers is kept in :attr:`EnterpriseIdP.exchanges`.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.live import serve

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ID_JAG_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
ID_JAG_TYP = "oauth-id-jag+jwt"


@dataclass
class IdpClient:
    """A client registered at the IdP: its secret there and its ``client_id`` at the MCP
    server's authorization server (what the ID-JAG's ``client_id`` claim says)."""

    secret: str
    client_id_at_as: str


@dataclass
class EnterpriseIdP:
    """The IdP's state; :func:`enterprise_idp` serves it. ``allowed`` is the IdP's policy:
    (person, audience, resource) triples it grants ID-JAGs for."""

    clients: dict[str, IdpClient] = field(default_factory=dict)
    allowed: set[tuple[str, str, str]] = field(default_factory=set)
    id_jag_ttl: int = 300
    issuer: str = ""
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", {"kid": "idp-1"}))
    exchanges: list[dict[str, str]] = field(default_factory=list)

    def jwks(self) -> dict[str, Any]:
        """The public keys, as served at ``/jwks``."""
        return KeySet([self.key]).as_dict(private=False)

    def sign(self, claims: dict[str, Any], typ: str | None = None) -> str:
        """A JWT signed with the IdP's key (ES256)."""
        header: dict[str, Any] = {"alg": "ES256", "kid": self.key.kid}
        if typ:
            header["typ"] = typ
        return jwt.encode(header, claims, self.key)

    def id_token(self, person: str, idp_client: str, *, email: str | None = None) -> str:
        """The ID token a sign-in of ``person`` at ``idp_client`` gives (OpenID Connect)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person,
            "aud": idp_client,
            "iat": now,
            "exp": now + 3600,
        }
        if email:
            claims["email"] = email
        return self.sign(claims)

    def id_jag(
        self, person: str, *, audience: str, resource: str, client_id: str, **extra: Any
    ) -> str:
        """An ID-JAG as the token exchange makes it (tests also forge variants with
        ``extra``, e.g. ``typ=None`` or another ``exp``)."""
        now = int(time.time())
        typ = extra.pop("typ", ID_JAG_TYP)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person,
            "aud": audience,
            "resource": resource,
            "client_id": client_id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + self.id_jag_ttl,
            **extra,
        }
        return self.sign({k: v for k, v in claims.items() if v is not None}, typ)

    def _client(self, request: Request, form: dict[str, str]) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                pair = base64.b64decode(header[6:]).decode()
            except ValueError:
                return None
            client_id, _, secret = pair.partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        known = self.clients.get(client_id)
        return client_id if known is not None and known.secret == secret else None

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id = self._client(request, form)
        if client_id is None:
            return _error("invalid_client", "unknown client or wrong secret", 401)
        if form.get("grant_type") != TOKEN_EXCHANGE:
            return _error("unsupported_grant_type", "this IdP only does token exchange")
        if form.get("requested_token_type") != ID_JAG_TYPE:
            return _error("invalid_request", f"requested_token_type must be {ID_JAG_TYPE}")
        if form.get("subject_token_type") != ID_TOKEN_TYPE:
            return _error("invalid_request", f"subject_token_type must be {ID_TOKEN_TYPE}")
        audience, resource = form.get("audience", ""), form.get("resource", "")
        if not audience or not resource:
            return _error("invalid_request", "audience and resource are required")
        try:
            token = jwt.decode(form.get("subject_token", ""), self.key)
        except (JoseError, ValueError):
            return _error("invalid_grant", "the subject token is not an ID token of this IdP")
        claims = token.claims
        # §4.1: the ID token's audience is the client making the request.
        if claims.get("iss") != self.issuer or claims.get("aud") != client_id:
            return _error("invalid_grant", "the ID token was not issued to this client")
        if int(claims.get("exp", 0)) <= time.time():
            return _error("invalid_grant", "the ID token has expired")
        person = str(claims["sub"])
        if (person, audience, resource) not in self.allowed:
            return _error("invalid_grant", "the IdP's policy does not allow this")
        self.exchanges.append({"client": client_id, "person": person, **form})
        extra: dict[str, Any] = {}
        if form.get("scope"):
            extra["scope"] = form["scope"]
        if claims.get("email"):
            extra["email"] = claims["email"]
            extra["email_verified"] = True
        grant = self.id_jag(
            person,
            audience=audience,
            resource=resource,
            client_id=self.clients[client_id].client_id_at_as,
            **extra,
        )
        return JSONResponse(
            {
                "issued_token_type": ID_JAG_TYPE,
                "access_token": grant,
                "token_type": "N_A",
                "expires_in": self.id_jag_ttl,
                **({"scope": form["scope"]} if form.get("scope") else {}),
            },
            headers={"Cache-Control": "no-store"},
        )

    def app(self) -> Starlette:
        """The IdP's HTTP interface: discovery, JWKS and the token endpoint."""

        async def metadata(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                    "grant_types_supported": [TOKEN_EXCHANGE],
                }
            )

        async def jwks(request: Request) -> Response:
            return JSONResponse(self.jwks())

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", metadata),
                Route("/jwks", jwks),
                Route("/token", self._token, methods=["POST"]),
            ]
        )


def _error(code: str, description: str, status: int = 400) -> Response:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


@asynccontextmanager
async def enterprise_idp(idp: EnterpriseIdP | None = None) -> AsyncIterator[EnterpriseIdP]:
    """Serve an :class:`EnterpriseIdP` on 127.0.0.1 until the block ends."""
    idp = idp or EnterpriseIdP()
    async with serve(idp.app()) as url:
        idp.issuer = url
        yield idp


__all__ = ["EnterpriseIdP", "IdpClient", "enterprise_idp"]
