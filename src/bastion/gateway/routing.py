"""The gateway's ASGI app: each request goes to the stack of the upstream whose path it is under,
in one plain ASGI call (no Starlette router, error or exception middleware in between: the
gateway serves no endpoint functions, only ASGI apps, and every request pays for each layer).

Requests are matched as Starlette's router matched the routes the gateway used to declare, in
this order for each upstream in turn: its path, anything below it (``<path>/…``), its
metadata URL; the first that matches takes the request; nothing else is 404. ``scope["route"]``
is that route (a Starlette :class:`~starlette.routing.Route`, never called), so that metrics and
the access log name the same templates (``/mcp/notes/{below:path}``, ``/{anything:path}``).
``/healthz`` and ``/readyz`` are answered first (:class:`~bastion.ops.health.Probes`), without
a route. WebSocket handshakes are closed (code 1000), as Starlette's router closed them.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from starlette.datastructures import State
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.edge import jsonrpc
from bastion.edge.asgi import send_json

CATCH_ALL = "/{anything:path}"


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """404 for every path no upstream serves, any method."""
    await send_json(send, 404, jsonrpc.error(jsonrpc.INVALID_REQUEST, "no MCP server at this path"))


class _Entry:
    __slots__ = ("app", "below", "path", "route")

    def __init__(self, path: str, app: ASGIApp, *, below: bool) -> None:
        self.path = path + "/" if below else path
        self.below = below
        self.app = app
        self.route = Route(path + "/{below:path}" if below else path, app)


class Routes:
    """Requests to their upstream's stack (see the module docstring)."""

    def __init__(self, probes: Callable[[ASGIApp], ASGIApp]) -> None:
        self._entries: list[_Entry] = []
        self._probes = probes(not_found)
        self._probe_paths: frozenset[str] = frozenset(getattr(self._probes, "paths", ()))
        self._catch_all = Route(CATCH_ALL, not_found)

    def add(self, path: str, app: ASGIApp, *, metadata_path: str) -> None:
        """Serve ``app`` at ``path``, below it and at ``metadata_path``."""
        self._entries += [
            _Entry(path, app, below=False),
            _Entry(path, app, below=True),
            _Entry(metadata_path, app, below=False),
        ]

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Returns the chosen app's coroutine: one frame less per request.
        if scope["type"] != "http":
            return _close(scope, receive, send)
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
            path = path[len(root) :]
        if path in self._probe_paths:
            return self._probes(scope, receive, send)
        for entry in self._entries:
            if path.startswith(entry.path) if entry.below else path == entry.path:
                scope["route"] = entry.route
                return entry.app(scope, receive, send)
        scope["route"] = self._catch_all
        return not_found(scope, receive, send)


async def _close(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})


Lifespan = Callable[[object], AbstractAsyncContextManager[None]]


class GatewayApp:
    """The app ``bastion gateway`` serves: ``app`` (the routes in their middleware), run inside
    ``lifespan`` (the ASGI lifespan protocol, as Starlette runs it); ``state`` and
    ``router.lifespan_context`` as a Starlette app's (apps served together, and tests, enter
    lifespans that way)."""

    def __init__(self, app: ASGIApp, *, lifespan: Lifespan) -> None:
        self.app = app
        self.lifespan_context = lifespan
        self.state = State()

    @property
    def router(self) -> GatewayApp:
        """This app: its ``lifespan_context`` is where a Starlette app's router has it."""
        return self

    def __repr__(self) -> str:
        return "GatewayApp()"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A coroutine function: servers tell ASGI 3 apps by that (uvicorn's "auto" interface).
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        started = False
        await receive()
        try:
            async with self.lifespan_context(self):
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()
        except BaseException:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})


__all__ = ["CATCH_ALL", "GatewayApp", "Routes", "not_found"]
