"""A local bridge to a registry behind OAuth, for clients that send no token
(``bastion proxy registry URL``).

VS Code (setting ``chat.mcp.gallery.serviceUrl``) and the Copilot CLI read an MCP registry
without an ``Authorization`` header. The bridge listens on loopback and answers exactly the
calls they make, forwarding each to the registry with the user's own token (the browser flow
once, silent refresh afterwards: :class:`~bastion.client.registry.RegistryClient`)::

    GET /v0.1/servers                               limit, cursor, search, version=latest
                                                    (``?limit=1`` is VS Code's probe)
    GET /v0.1/servers/{name}/versions
    GET /v0.1/servers/{name}/versions/latest
    GET /v0.1/servers/{name}/versions/{version}
    (and the same under /v0)

The registry's status, JSON body and content type pass through (a 404 stays a 404: both
clients read it as "not in the registry"). A request the bridge cannot complete (no answer, no
token, the token refused) gets a 502 problem (RFC 9457) saying what to do.

It serves https by default, with a certificate of the user's local CA
(:mod:`bastion.client.local_ca`): VS Code's renderer may fetch only ``https:`` under its
content security policy (``connect-src 'self' https: ws:``) and the Copilot CLI takes only an
https registry URL. The certificate is renewed while the bridge runs.

Only this machine may use it: connections from non-loopback addresses get 403, and so does a
``Host`` that is not a loopback name with the bridge's port (DNS rebinding: a web page whose
name resolves to 127.0.0.1 must not read the user's registry through it). The caller's own
``Authorization`` header is ignored. Browser callers (VS Code's renderer sends
``Origin: vscode-file://vscode-app``) get CORS on every answer for the origins allowed, with the
headers GitHub Copilot asks for (``Access-Control-Allow-Headers: Authorization, Content-Type``);
requests from any other origin are refused, since the answers carry the user's private entries.
No allow-list may hold ``*`` or ``null`` (the origin of sandboxed frames and ``data:`` pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import uvicorn
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bastion.client.errors import ClientError
from bastion.client.local_ca import LocalCA
from bastion.client.registry import RegistryClient, RegistryError, is_json, segment
from bastion.oauth.redirect_uri import is_loopback_host

log = logging.getLogger("bastion.client.registry_bridge")

DEFAULT_PORT = 8377
# Browser origins allowed by default: VS Code desktop's renderer, VS Code for the Web.
DEFAULT_ORIGINS = ("vscode-file://vscode-app", "https://vscode.dev", "https://insiders.vscode.dev")
ALLOW_HEADERS = "Authorization, Content-Type"
ALLOW_METHODS = "GET, OPTIONS"
# Query parameters of the registry API that the bridge forwards (others are dropped).
FORWARDED_QUERY = frozenset(
    {"cursor", "limit", "search", "updated_since", "version", "include_deleted"}
)
_API_VERSIONS = ("v0.1", "v0")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
RENEW_CHECK_SECONDS = 6 * 3600.0


def allowed_origin(value: str) -> str:
    """``value`` as the bridge compares origins (lowercase, no trailing slash), or
    :class:`ClientError` when it is not one origin (``scheme://host[:port]``): ``*`` and
    ``null`` included, since either would let any web page read the user's registry."""
    origin = value.strip().rstrip("/").lower()
    if origin in ("*", "null"):
        raise ClientError(
            f"the registry bridge never allows the origin {origin!r}: with it any web page "
            "could read your registry; name each origin, e.g. vscode-file://vscode-app"
        )
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if not parts.scheme or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise ClientError(
            f"{value!r} is not an origin; give scheme://host[:port], e.g. "
            "vscode-file://vscode-app or https://vscode.dev"
        )
    if "@" in parts.netloc:
        raise ClientError(f"{value!r} is not an origin: it has user information")
    return origin


def upstream_path(raw_path: bytes) -> str | None:
    """The registry API path (re-encoded) that a bridge path asks for, or None when the bridge
    does not answer it. A name may arrive encoded (``io.x%2Fy``) or as two segments."""
    parts = raw_path.split(b"?", 1)[0].decode("latin-1").split("/")[1:]
    if len(parts) < 2 or parts[0] not in _API_VERSIONS or parts[1] != "servers":
        return None
    base = f"/{parts[0]}/servers"
    try:
        rest = [unquote(p, errors="strict") for p in parts[2:]]
    except UnicodeDecodeError:
        return None
    if not rest:
        return base
    if "/" in rest[0]:
        name, rest = rest[0], rest[1:]
    elif len(rest) > 1:
        name, rest = f"{rest[0]}/{rest[1]}", rest[2:]
    else:
        return None
    if name.count("/") != 1 or not all(name.split("/")):
        return None
    if rest == ["versions"]:
        return f"{base}/{segment(name)}/versions"
    if len(rest) == 2 and rest[0] == "versions" and rest[1]:
        return f"{base}/{segment(name)}/versions/{segment(rest[1])}"
    return None


def is_loopback_address(host: str | None) -> bool:
    """Whether a peer address is loopback (127.0.0.0/8, ::1, or IPv4-mapped 127.x)."""
    try:
        address = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem answer of the bridge itself."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return Response(
        json.dumps(body).encode("utf-8"),
        status_code=status,
        media_type="application/problem+json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


class RegistryBridge:
    """The bridge as a plain ASGI app (see the module docstring). ``port`` is the port it
    listens on (for the ``Host`` check); ``allowed_origins`` the browser origins it answers
    (:func:`allowed_origin`); ``scheme`` the one it is served with (for messages)."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        port: int,
        allowed_origins: Sequence[str] = DEFAULT_ORIGINS,
        scheme: str = "https",
    ) -> None:
        self.client = client
        self.port = port
        self.scheme = scheme
        self.origins = frozenset(allowed_origin(o) for o in allowed_origins)
        names = [f"{name}:{port}" for name in _LOOPBACK_NAMES]
        if port == 80:
            names += list(_LOOPBACK_NAMES)
        self.hosts = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = await self._answer(scope)
        await response(scope, receive, send)
        # The request target is printable ASCII (h11 refuses anything else): safe to log.
        target = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string", b"")
        shown = (target + (b"?" + query if query else b"")).decode("ascii", "backslashreplace")
        log.info("%s %s -> %d", scope["method"], shown, response.status_code)

    def _origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.origins

    async def _answer(self, scope: Scope) -> Response:
        client = scope.get("client")
        if client is None or not is_loopback_address(client[0]):
            peer = client[0] if client else "an unknown address"
            return problem(403, f"the registry bridge serves this machine only, not {peer}")
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if host.lower() not in self.hosts:
            return problem(
                403,
                f"Host {host[:100]!r} is not this bridge; use {self.scheme}://localhost:{self.port}",
            )
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            return problem(
                403,
                f"origin {origin[:100]!r} may not read this registry; allow it with "
                "`bastion proxy registry URL --allow-origin ORIGIN`",
            )
        cors = self._cors(origin)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = upstream_path(raw_path)
        if path is None:
            return problem(
                404,
                "the bridge answers GET /v0.1/servers, /v0.1/servers/{name}/versions and "
                "/v0.1/servers/{name}/versions/{version|latest} (and /v0)",
                cors,
            )
        method = scope["method"]
        if method == "OPTIONS":
            return self._preflight(headers, cors)
        if method != "GET":
            return problem(
                405, f"{method} is not allowed here; use GET", {**cors, "Allow": ALLOW_METHODS}
            )
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        return await self._forward(path, [(k, v) for k, v in query if k in FORWARDED_QUERY], cors)

    def _cors(self, origin: str | None) -> dict[str, str]:
        if origin is None:
            return {"Vary": "Origin"}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def _preflight(self, headers: Headers, cors: dict[str, str]) -> Response:
        out = {**cors, "Allow": ALLOW_METHODS}
        if "access-control-request-method" in headers:
            out["Access-Control-Allow-Methods"] = ALLOW_METHODS
            out["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            out["Access-Control-Max-Age"] = "600"
            if headers.get("access-control-request-private-network") == "true":
                out["Access-Control-Allow-Private-Network"] = "true"
        return Response(status_code=204, headers=out)

    async def _forward(
        self, path: str, query: list[tuple[str, str]], cors: dict[str, str]
    ) -> Response:
        registry = self.client.url
        remedy = f"run `bastion login --registry {registry}`, then try again"
        try:
            upstream = await self.client.fetch(path, query)
        except RegistryError as exc:  # no answer
            # repr: the path comes from a local request (bastion.logs is server-side)
            log.warning("bridge: GET %r failed: %s", path, exc)
            return problem(502, str(exc), cors)
        except ClientError as exc:  # no token could be had
            log.warning("bridge: no token for %s: %s", registry, exc)
            return problem(
                502,
                f"the bridge could not sign in to the registry {registry}: {exc}; {remedy}",
                cors,
            )
        content_type = upstream.headers.get("content-type")
        if upstream.status_code == 401:
            return problem(
                502, f"the registry {registry} refused the bridge's access token; {remedy}", cors
            )
        if not is_json(content_type):
            return problem(
                502,
                f"the registry {registry} answered GET {path} with HTTP {upstream.status_code} "
                f"and {content_type or 'no content type'}, not JSON; check the registry URL",
                cors,
            )
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            headers={"Content-Type": content_type or "", "Cache-Control": "no-store", **cors},
        )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bind_loopback(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host`` (a loopback address) and ``port`` (0: any free port);
    anything else raises :class:`ClientError`."""
    if not is_loopback_host(host):
        raise ClientError(
            f"the registry bridge listens on loopback only; {host!r} is not a loopback address "
            "(use 127.0.0.1 or ::1)"
        )
    address = host.strip("[]")
    address = "127.0.0.1" if address.lower() == "localhost" else address
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ClientError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}; choose another port "
            "with --port"
        ) from None
    return sock


def _also_ipv6(port: int) -> list[socket.socket]:
    """[::1] on the same port, when it is free: the printed URL names ``localhost``, which
    many systems resolve to ::1 first (Windows then waits seconds before trying 127.0.0.1).
    Another program on [::1]:port could not pass as the bridge: it has no certificate from
    the user's CA."""
    try:
        return [bind_loopback("::1", port)]
    except ClientError as exc:
        log.info("bridge: not listening on [::1]:%d too: %s", port, exc)
        return []


def bridge_url(sock: socket.socket, *, https: bool = True) -> str:
    """The base URL of a bound bridge socket (what goes into chat.mcp.gallery.serviceUrl):
    ``https://localhost:PORT`` for https on 127.0.0.1, the name its certificate is for."""
    address, port = sock.getsockname()[:2]
    if https and address == "127.0.0.1":
        return f"https://localhost:{port}"
    scheme = "https" if https else "http"
    return f"{scheme}://[{address}]:{port}" if ":" in address else f"{scheme}://{address}:{port}"


async def _renew(ca: LocalCA, server: uvicorn.Server, every: float) -> None:
    """Make a new server certificate when the current one nears expiry and load it into the
    running server's TLS context: new connections get it, open ones keep theirs."""
    current = ca.cert_path.read_bytes()
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(ca.server_certificate)
        except ClientError as exc:
            log.warning("bridge: cannot renew the server certificate: %s", exc)
            continue
        fresh = ca.cert_path.read_bytes()
        context = server.config.ssl
        if fresh != current and context is not None:
            context.load_cert_chain(ca.cert_path, ca.key_path)
            current = fresh
            log.info("bridge: server certificate renewed")


async def run_bridge(
    client: RegistryClient,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    allowed_origins: Sequence[str] = DEFAULT_ORIGINS,
    ca_directory: Path | None = None,
    renew_every: float = RENEW_CHECK_SECONDS,
    ready: Callable[[str], object] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the bridge on ``host:port`` until interrupted (or ``stop`` is set); ``ready`` gets
    the bridge's URL once it listens. With ``ca_directory`` (the local CA's, see
    :func:`bastion.client.local_ca.default_directory`) it serves https with that CA's server
    certificate, checked for renewal every ``renew_every`` seconds; without, plain http."""
    ca = LocalCA(ca_directory) if ca_directory is not None else None
    if ca is not None:
        ca.server_certificate()  # made or renewed before the port is taken
    sock = bind_loopback(host, port)
    sockets = [sock]
    if ca is not None and sock.getsockname()[0] == "127.0.0.1":
        sockets += _also_ipv6(sock.getsockname()[1])
    app = RegistryBridge(
        client,
        port=sock.getsockname()[1],
        allowed_origins=allowed_origins,
        scheme="https" if ca is not None else "http",
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        proxy_headers=False,  # the address check must see the real peer
        server_header=False,
        ssl_certfile=ca.cert_path if ca is not None else None,
        ssl_keyfile=ca.key_path if ca is not None else None,
    )
    server = uvicorn.Server(config)

    async def started() -> None:
        for _ in range(1000):
            if server.started:
                if ready is not None:
                    ready(bridge_url(sock, https=ca is not None))
                return
            await asyncio.sleep(0.01)

    async def stopper() -> None:
        if stop is not None:
            await stop.wait()
            server.should_exit = True

    helpers = [asyncio.create_task(started()), asyncio.create_task(stopper())]
    if ca is not None:
        helpers.append(asyncio.create_task(_renew(ca, server, renew_every)))
    try:
        await server.serve(sockets=sockets)
    finally:
        for task in helpers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for each in sockets:
            each.close()


__all__ = [
    "ALLOW_HEADERS",
    "ALLOW_METHODS",
    "DEFAULT_ORIGINS",
    "DEFAULT_PORT",
    "FORWARDED_QUERY",
    "RENEW_CHECK_SECONDS",
    "RegistryBridge",
    "allowed_origin",
    "bind_loopback",
    "bridge_url",
    "is_loopback_address",
    "problem",
    "run_bridge",
    "upstream_path",
]
