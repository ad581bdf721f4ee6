"""Small real servers for the client tests.

- :class:`ResourceServer`: an MCP-ish protected resource (RFC 9728 metadata, RFC 6750 challenges,
  JWT access tokens verified against the AS's JWKS: signature, iss, aud = its resource, exp,
  scopes per JSON-RPC method). It records every request it sees.
- :class:`MetadataServer`: serves fixed JSON documents at fixed paths (404 elsewhere) and records
  the paths requested, for discovery tests (several well-known URLs, broken documents).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.oauth.www_authenticate import build_bearer_challenge


@dataclass
class Seen:
    """One request the resource server received."""

    method: str
    path: str
    query: str
    authorization: str | None
    rpc_method: str | None
    status: int = 0


@dataclass
class ResourceServer:
    """A protected MCP endpoint at ``<base>/mcp`` trusting one authorization server.

    ``required`` maps JSON-RPC methods (``*``: any other) to the scopes they need; methods in
    ``forbid`` always get 403 ``insufficient_scope`` (a server that cannot be satisfied).
    """

    issuer: str
    base: str
    required: Mapping[str, Sequence[str]] = field(default_factory=lambda: {"*": ["mcp:tools"]})
    scopes_supported: Sequence[str] | None = ("mcp:tools",)
    header_points_to_metadata: bool = True
    scope_in_challenge: bool = True
    forbid: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    _keys: KeySet | None = None

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"

    def _needs(self, rpc_method: str | None) -> list[str]:
        return list(self.required.get(rpc_method or "", self.required.get("*", [])))

    def _challenge(self, scopes: list[str], error: str | None = None) -> str:
        return build_bearer_challenge(
            resource_metadata=self.metadata_url if self.header_points_to_metadata else None,
            scope=" ".join(scopes) if scopes and self.scope_in_challenge else None,
            error=error,
        )

    async def _verify(self, token: str) -> dict[str, Any] | None:
        if self._keys is None:
            async with httpx.AsyncClient() as http:
                self._keys = KeySet.import_key_set((await http.get(f"{self.issuer}/jwks")).json())
        try:
            claims = jwt.decode(token, self._keys).claims
        except (JoseError, ValueError):
            return None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.issuer or self.url not in audiences:
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            return None
        return claims

    async def metadata(self, request: Request) -> Response:
        document: dict[str, Any] = {"resource": self.url, "authorization_servers": [self.issuer]}
        if self.scopes_supported is not None:
            document["scopes_supported"] = list(self.scopes_supported)
        return JSONResponse(document)

    async def mcp(self, request: Request) -> Response:
        body = await request.json() if request.method == "POST" else {}
        rpc_method = body.get("method") if isinstance(body, dict) else None
        seen = Seen(
            request.method,
            request.url.path,
            request.url.query,
            request.headers.get("authorization"),
            rpc_method,
        )
        self.seen.append(seen)
        needed = self._needs(rpc_method)
        header = request.headers.get("authorization") or ""
        if not header.startswith("Bearer "):
            seen.status = 401
            return JSONResponse(
                {"error": "unauthorized"},
                status_code=401,
                headers={"WWW-Authenticate": self._challenge(needed)},
            )
        claims = await self._verify(header[7:])
        if claims is None:
            seen.status = 401
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": self._challenge(needed, "invalid_token")},
            )
        granted = set(str(claims.get("scope", "")).split())
        if not set(needed) <= granted or rpc_method in self.forbid:
            seen.status = 403
            return JSONResponse(
                {"error": "insufficient_scope"},
                status_code=403,
                headers={"WWW-Authenticate": self._challenge(needed, "insufficient_scope")},
            )
        seen.status = 200
        result = {"sub": claims.get("sub"), "scope": claims.get("scope"), "aud": claims["aud"]}
        return JSONResponse({"jsonrpc": "2.0", "id": body.get("id"), "result": result})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/oauth-protected-resource/mcp", self.metadata),
                Route("/mcp", self.mcp, methods=["POST"]),
            ]
        )

    @property
    def authorizations(self) -> list[str | None]:
        """The Authorization header of every request, in order."""
        return [s.authorization for s in self.seen]


@dataclass
class MetadataServer:
    """Fixed documents at fixed paths; everything else 404. ``requested`` lists the paths asked
    for, in order. A value that is an ``int`` is answered with that status and no body."""

    documents: dict[str, dict[str, Any] | int] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    base: str = ""

    async def serve_path(self, request: Request) -> Response:
        path = request.url.path
        self.requested.append(path)
        document = self.documents.get(path)
        if document is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if isinstance(document, int):
            return Response(status_code=document)
        return JSONResponse(document)

    async def register(self, request: Request) -> Response:
        self.requested.append(request.url.path)
        body = await request.json()
        self.registrations.append(body)
        answer = {"client_id": f"dcr-{len(self.registrations)}", **body}
        if body.get("token_endpoint_auth_method") in ("client_secret_basic", "client_secret_post"):
            answer["client_secret"] = "dcr-secret"
        return JSONResponse(answer, status_code=201)

    registrations: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/register", self.register, methods=["POST"]),
                Route("/{path:path}", self.serve_path),
            ]
        )

    def as_metadata(self, issuer: str, **fields: Any) -> dict[str, Any]:
        """A complete, valid AS metadata document for ``issuer`` on this server."""
        document: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token",
            "registration_endpoint": f"{self.base}/register",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }
        document.update(fields)
        return {k: v for k, v in document.items() if v is not None}


@dataclass
class RedirectingAS:
    """An authorization server that approves at once (like the conformance suite's mock): its
    /authorize redirects straight back with a code, ``state`` and (per ``iss_mode``) ``iss``.

    ``metadata`` overrides fields of its RFC 8414 document (None removes one); ``granted``
    is the ``scope`` of its token responses (None: the requested scope); ``state_mode`` and
    ``error`` make it answer wrongly on purpose; ``token_error`` makes every token request get
    400 with that error. Every request is recorded.
    """

    base: str = ""
    path: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    iss_mode: str = "correct"  # correct | wrong | omit | normalized
    state_mode: str = "echo"  # echo | wrong | omit
    error: str | None = None
    token_error: str | None = None
    granted: str | None = None
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    metadata_requests: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"{self.base}{self.path}"

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "registration_endpoint": f"{self.issuer}/register",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "token_endpoint_auth_methods_supported": ["none"],
        }
        doc.update(self.metadata)
        return {k: v for k, v in doc.items() if v is not None}

    async def _metadata(self, request: Request) -> Response:
        self.metadata_requests.append(request.url.path)
        return JSONResponse(self.document())

    async def _authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append(params)
        answer: list[tuple[str, str]] = []
        if self.error:
            answer.append(("error", self.error))
            answer.append(("error_description", "refused by the test"))
        else:
            answer.append(("code", f"code-{len(self.authorize_requests)}"))
        if self.state_mode == "echo":
            answer.append(("state", params.get("state", "")))
        elif self.state_mode == "wrong":
            answer.append(("state", "not-the-state"))
        iss = {
            "correct": self.issuer,
            "wrong": "https://evil.example.com",
            "normalized": f"{self.issuer}/",
        }.get(self.iss_mode)
        if iss is not None:
            answer.append(("iss", iss))
        return Response(
            status_code=302,
            headers={"Location": f"{params['redirect_uri']}?{urlencode(answer)}"},
        )

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        if self.token_error is not None:
            return JSONResponse({"error": self.token_error}, 400)
        body: dict[str, Any] = {
            "access_token": f"tok-{len(self.token_requests)}",
            "token_type": "Bearer",
            "expires_in": 3600,
        }
        scope = self.granted if self.granted is not None else form.get("scope")
        if scope is not None:
            body["scope"] = scope
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _register(self, request: Request) -> Response:
        body = await request.json()
        self.registrations.append(body)
        return JSONResponse({"client_id": f"client-{len(self.registrations)}", **body}, 201)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"/.well-known/oauth-authorization-server{self.path}", self._metadata),
                Route(f"{self.path}/authorize", self._authorize),
                Route(f"{self.path}/token", self._token, methods=["POST"]),
                Route(f"{self.path}/register", self._register, methods=["POST"]),
            ]
        )


@dataclass
class StubResource:
    """A resource server for :class:`RedirectingAS` tokens (``tok-…``): 401 without one, 403
    ``insufficient_scope`` for methods in ``forbid``; PRM at the path-inserted URL whose
    ``resource`` is ``resource`` (default: its own URL).

    ``issuers`` replaces ``[issuer]`` in the metadata's ``authorization_servers``. Broken on
    purpose: ``challenge`` False sends its 401s without ``WWW-Authenticate``; ``serve_metadata``
    False answers 404 at the metadata URL."""

    issuer: str
    base: str = ""
    resource: str | None = None
    challenge_scope: str | None = "mcp:basic"
    issuers: list[str] | None = None
    challenge: bool = True
    serve_metadata: bool = True
    forbid: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"

    async def _metadata(self, request: Request) -> Response:
        if not self.serve_metadata:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(
            {
                "resource": self.resource or self.url,
                "authorization_servers": self.issuers or [self.issuer],
            }
        )

    async def _mcp(self, request: Request) -> Response:
        body = await request.json()
        method = body.get("method")
        header = request.headers.get("authorization")
        seen = Seen("POST", "/mcp", request.url.query, header, method)
        self.seen.append(seen)
        if not header or not header.startswith("Bearer tok-"):
            seen.status = 401
            if not self.challenge:
                return JSONResponse({}, 401)
            challenge = build_bearer_challenge(
                resource_metadata=self.metadata_url, scope=self.challenge_scope
            )
            return JSONResponse({}, 401, headers={"WWW-Authenticate": challenge})
        if method in self.forbid:
            seen.status = 403
            challenge = build_bearer_challenge(
                resource_metadata=self.metadata_url,
                scope=self.forbid[method],
                error="insufficient_scope",
            )
            return JSONResponse({}, 403, headers={"WWW-Authenticate": challenge})
        seen.status = 200
        return JSONResponse({"jsonrpc": "2.0", "id": body.get("id"), "result": {}})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/oauth-protected-resource/mcp", self._metadata),
                Route("/mcp", self._mcp, methods=["POST"]),
            ]
        )
