"""A small OpenID provider for the federation error paths: it signs in one configured user at
once (no pages) and can be told to misbehave in one precise way.

It follows OpenID Connect Core 1.0 and Discovery 1.0 where bastion looks: discovery document
(with ``authorization_response_iss_parameter_supported``, RFC 9207), JWKS, ``/authorize``
(exact redirect URI, PKCE S256 required, ``iss`` in the response), ``/token``
(client_secret_basic, PKCE verified, single-use codes, RS256 id_token with ``nonce``, ``at_hash``),
``/userinfo``. node-oidc-provider (tests/support/oidc_provider.py) is the real provider of the
browser test; this one exists because a real provider cannot be made to sign with the wrong key
or the wrong nonce.

Faults (``StandIn.fault``): ``deny`` (error=access_denied), ``wrong_key`` (id_token signed by a
key outside the JWKS, same kid), ``wrong_nonce``, ``wrong_audience``, ``wrong_issuer``,
``expired``, ``hs256`` (id_token MACed with the client secret), ``no_id_token``,
``userinfo_other_sub``, ``wrong_iss_param`` (another ``iss`` in the authorization response),
``server_error`` (the token endpoint answers 500).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion.oauth import pkce
from tests.support.live import serve

KID = "standin-rs256"


@dataclass
class StandIn:
    """The provider's configuration and what it saw."""

    client_id: str = "bastion"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redirect_uri: str = ""
    claims: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "user-1",
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Example",
            "preferred_username": "alice",
            "groups": ["engineering", "mcp-users"],
        }
    )
    fault: str | None = None
    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": KID}))
    other_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": KID}))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorization_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": ["openid", "email", "profile", "groups"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False, use="sig", alg="RS256")]})

    async def authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        self.authorization_requests.append(q)
        if q.get("client_id") != self.client_id or q.get("redirect_uri") != self.redirect_uri:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        iss = "http://127.0.0.1:9/other" if self.fault == "wrong_iss_param" else self.issuer
        if self.fault == "deny":
            answer = {
                "error": "access_denied",
                "error_description": "End-User aborted interaction",
                "state": q["state"],
                "iss": iss,
            }
            return RedirectResponse(f"{self.redirect_uri}?{urlencode(answer)}", status_code=303)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = q
        answer = {"code": code, "state": q["state"], "iss": iss}
        return RedirectResponse(f"{self.redirect_uri}?{urlencode(answer)}", status_code=303)

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return header == f"Basic {expected}"

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if self.fault == "server_error":
            return JSONResponse({"error": "server_error"}, status_code=500)
        if not self._authenticated(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        asked = self.codes.pop(str(form.get("code")), None)
        if (
            asked is None
            or form.get("redirect_uri") != asked["redirect_uri"]
            or pkce.s256(str(form.get("code_verifier", ""))) != asked["code_challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access_token = secrets.token_urlsafe(24)
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": "upstream-refresh-" + secrets.token_urlsafe(16),
        }
        if self.fault != "no_id_token":
            body["id_token"] = self.id_token(asked.get("nonce", ""), access_token)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def id_token(self, nonce: str, access_token: str) -> str:
        now = int(time.time())
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.claims["sub"],
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
        }
        if self.fault == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-bastion-sent"
        elif self.fault == "wrong_audience":
            claims["aud"] = "another-client"
        elif self.fault == "wrong_issuer":
            claims["iss"] = self.issuer + "/elsewhere"
        elif self.fault == "expired":
            claims["iat"], claims["exp"] = now - 3600, now - 1800
        if self.fault == "hs256":
            secret = OctKey.import_key(self.client_secret.encode())
            return jwt.encode({"alg": "HS256", "kid": KID}, claims, secret)
        key = self.other_key if self.fault == "wrong_key" else self.key
        return jwt.encode({"alg": "RS256", "kid": KID, "typ": "JWT"}, claims, key)

    async def userinfo(self, request: Request) -> Response:
        claims = dict(self.claims)
        if self.fault == "userinfo_other_sub":
            claims["sub"] = "someone-else"
        return JSONResponse(claims)


@asynccontextmanager
async def standin(**kwargs: Any) -> AsyncIterator[StandIn]:
    """Run a :class:`StandIn` on a free loopback port until the block ends."""
    provider = StandIn(**kwargs)
    async with serve(provider.app()) as base:
        provider.issuer = base
        yield provider
