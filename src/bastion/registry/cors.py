"""CORS for the registry API, outside the token check (browsers send preflights without tokens).

GitHub Copilot needs ``Access-Control-Allow-Headers: Authorization, Content-Type``; a preflight
from an allowed origin gets that and ``DPoP`` (a DPoP client's proof, RFC 9449 §7.1), the
registry's methods, and a max-age. Answers to allowed origins carry
``Access-Control-Allow-Origin`` and expose ``WWW-Authenticate`` and ``DPoP-Nonce`` so a browser
client can read a 401's challenge and the nonce to use (RFC 9449 §7.1, §9). No credentials
mode: the API uses tokens, not cookies.
Paths in ``skip`` (the protected-resource metadata, whose middleware answers CORS itself) pass
through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_HEADERS = "Authorization, Content-Type, DPoP"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSE_HEADERS = "WWW-Authenticate, DPoP-Nonce"
MAX_AGE = "600"


def _origin(scope: Scope) -> str | None:
    """The request's first Origin header (what ``Headers.get`` gives, without building it for
    every request)."""
    for name, value in scope["headers"]:
        if name == b"origin":
            return str(value.decode("latin-1"))
    return None


class RegistryCors:
    """A plain ASGI CORS middleware (Fetch standard, "CORS protocol")."""

    def __init__(
        self, app: ASGIApp, *, allowed_origins: Sequence[str], skip: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.any_origin = "*" in allowed_origins
        self.origins = {o.rstrip("/").lower() for o in allowed_origins if o != "*"}
        self.skip = frozenset(skip)

    def _allowed(self, origin: str) -> bool:
        return self.any_origin or origin.lower() in self.origins

    def _allow_origin(self, origin: str) -> list[tuple[bytes, bytes]]:
        value = "*" if self.any_origin else origin
        out = [(b"access-control-allow-origin", value.encode("latin-1"))]
        if not self.any_origin:
            out.append((b"vary", b"Origin"))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip:
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in Headers(
            scope=scope
        )
        if preflight:
            await self._preflight(origin, send)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        extra = [
            *self._allow_origin(origin),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, send: Send) -> None:
        if not self._allowed(origin):
            headers = [(b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [
            *self._allow_origin(origin),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


__all__ = ["ALLOW_HEADERS", "ALLOW_METHODS", "EXPOSE_HEADERS", "RegistryCors"]
