"""Small real servers for the client's DPoP, workload identity and ID-JAG tests.

- :class:`TokenServer`: an authorization server (RFC 8414 metadata with
  ``dpop_signing_alg_values_supported``) whose token endpoint checks DPoP proofs with bastion's
  own verifier (:func:`bastion.oauth.dpop.verify_proof`), binds tokens to the proof's key,
  optionally demands a nonce (RFC 9449 §8) or refuses every grant with a configured error.
- :class:`DPoPResource`: an MCP endpoint taking DPoP-bound tokens (proof with ``ath``, key
  equal to the binding, optional nonce, §7.1, §9), Bearer-only when ``dpop`` is False.
- :class:`EnterpriseIdp`: an IdP token endpoint doing the ID-JAG token exchange (RFC 8693).

Every request is recorded with its form, headers and decoded proof claims.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.oauth.dpop import DPoPError, verify_proof


def claims_of(proof: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (what the test inspects after the server checked it)."""
    payload = proof.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


@dataclass
class Seen:
    """One request a test server received."""

    method: str
    url: str
    form: dict[str, str]
    authorization: str | None
    proofs: list[str]
    status: int = 0

    @property
    def claims(self) -> dict[str, Any]:
        return claims_of(self.proofs[0])


async def _seen(request: Request) -> Seen:
    form = {k: str(v) for k, v in (await request.form()).items()}
    return Seen(
        request.method,
        str(request.url),
        form,
        request.headers.get("authorization"),
        request.headers.getlist("dpop"),
    )


@dataclass
class TokenServer:
    """An authorization server at ``base`` (set once it listens)."""

    base: str = ""
    advertise_dpop: bool = True
    nonce: str | None = None  # demanded in every proof (RFC 9449 §8)
    nonce_always_stale: bool = False  # answer use_dpop_nonce whatever the proof says
    refuse: dict[str, str] | None = None  # the error answer to every grant
    refresh_tokens: bool = True
    expires_in: int = 3600
    seen: list[Seen] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)  # access or refresh token -> jkt
    issued: int = 0

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def token_endpoint(self) -> str:
        return f"{self.base}/token"

    async def _metadata(self, request: Request) -> Response:
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "authorization_endpoint": f"{self.base}/authorize",
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": [
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
            ],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        }
        if self.advertise_dpop:
            doc["dpop_signing_alg_values_supported"] = ["ES256"]
        return JSONResponse(doc)

    def _error(self, seen: Seen, status: int, body: dict[str, str], **headers: str) -> Response:
        seen.status = status
        return JSONResponse(body, status, headers=headers)

    async def _token(self, request: Request) -> Response:
        seen = await _seen(request)
        self.seen.append(seen)
        jkt: str | None = None
        if seen.proofs:
            stale = self.nonce_always_stale
            try:
                proof = verify_proof(
                    seen.proofs,
                    method="POST",
                    uri=self.token_endpoint,
                    now=int(time.time()),
                    nonce="never-this" if stale else self.nonce,
                )
            except DPoPError as exc:
                fresh = {"DPoP-Nonce": "n-stale" if stale else (self.nonce or "")}
                return self._error(
                    seen, 400, {"error": exc.code, "error_description": str(exc)}, **fresh
                )
            jkt = proof.jkt
        if self.refuse is not None:
            return self._error(seen, 400, self.refuse)
        if seen.form.get("grant_type") == "refresh_token":
            bound = self.bound.get(seen.form.get("refresh_token", ""))
            if bound is not None and bound != jkt:
                return self._error(
                    seen, 400, {"error": "invalid_grant", "error_description": "other key"}
                )
        self.issued += 1
        access, refresh = f"at-{self.issued}", f"rt-{self.issued}"
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": self.expires_in,
        }
        if self.refresh_tokens:
            body["refresh_token"] = refresh
        if jkt:
            self.bound[access] = self.bound[refresh] = jkt
        seen.status = 200
        return JSONResponse(body)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", self._metadata),
                Route("/token", self._token, methods=["POST"]),
            ]
        )


@dataclass
class DPoPResource:
    """An MCP endpoint at ``<base>/mcp`` for the tokens of ``server``."""

    server: TokenServer
    base: str = ""
    dpop: bool = True
    nonce: str | None = None
    nonce_always_stale: bool = False
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"

    @property
    def authenticated(self) -> list[Seen]:
        return [s for s in self.seen if s.authorization]

    async def _metadata(self, request: Request) -> Response:
        doc: dict[str, Any] = {"resource": self.url, "authorization_servers": [self.server.issuer]}
        if self.dpop:
            doc["dpop_signing_alg_values_supported"] = ["ES256"]
        return JSONResponse(doc)

    def _refuse(self, seen: Seen, error: str | None, **headers: str) -> Response:
        seen.status = 401
        params = f'resource_metadata="{self.metadata_url}"'
        if error:
            params = f'error="{error}", {params}'
        scheme = 'DPoP algs="ES256", ' if self.dpop else "Bearer "
        challenge = f"{scheme}{params}"
        return JSONResponse({}, 401, headers={"WWW-Authenticate": challenge, **headers})

    async def _mcp(self, request: Request) -> Response:
        seen = await _seen(request)
        self.seen.append(seen)
        header = seen.authorization or ""
        scheme, _, token = header.partition(" ")
        if not header:
            return self._refuse(seen, None)
        if scheme.lower() == "bearer":
            if token in self.server.bound:  # RFC 9449 §7.2: a bound token is not a Bearer one
                return self._refuse(seen, "invalid_token")
            seen.status = 200
            return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {}})
        stale = self.nonce_always_stale
        try:
            proof = verify_proof(
                seen.proofs,
                method=request.method,
                uri=str(request.url),
                now=int(time.time()),
                nonce="never-this" if stale else self.nonce,
                access_token=token,
            )
        except DPoPError as exc:
            nonce = {"DPoP-Nonce": "r-stale" if stale else (self.nonce or "")}
            return self._refuse(seen, exc.code, **(nonce if exc.code == "use_dpop_nonce" else {}))
        if self.server.bound.get(token) != proof.jkt:
            return self._refuse(seen, "invalid_token")
        seen.status = 200
        return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {}})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/oauth-protected-resource/mcp", self._metadata),
                Route("/mcp", self._mcp, methods=["POST"]),
            ]
        )


@dataclass
class EnterpriseIdp:
    """An enterprise IdP's token endpoint: RFC 8693 exchange of an ID token for an ID-JAG."""

    base: str = ""
    refuse: dict[str, str] | None = None
    issued_token_type: str = "urn:ietf:params:oauth:token-type:id-jag"
    seen: list[Seen] = field(default_factory=list)

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse({"issuer": self.base, "token_endpoint": f"{self.base}/token"})

    async def _token(self, request: Request) -> Response:
        seen = await _seen(request)
        self.seen.append(seen)
        if self.refuse is not None:
            seen.status = 400
            return JSONResponse(self.refuse, 400)
        seen.status = 200
        return JSONResponse(
            {
                "access_token": f"id-jag-for-{seen.form.get('audience')}",
                "issued_token_type": self.issued_token_type,
                "token_type": "N_A",
                "expires_in": 300,
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._metadata),
                Route("/token", self._token, methods=["POST"]),
            ]
        )
