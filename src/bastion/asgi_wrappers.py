"""ASGI wrappers any bastion app may put around itself: a last-resort 500 and a router that sees
only lifespan events. The authorization server, the registry and the composition root
(:mod:`bastion.serve`) share them, so they live below all three."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CatchAll:
    """Last-resort handler: an unexpected error becomes the 500 of ``respond()`` (each app
    answers in its own error format) without a stack trace in the response; the trace goes to
    ``log`` for the operator. Once the response has started, the error is raised again."""

    def __init__(
        self, app: ASGIApp, *, respond: Callable[[], Response], log: logging.Logger
    ) -> None:
        self.app = app
        self.respond = respond
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            self.log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = self.respond()
            await response(scope, receive, send)


class Terminal:
    """Hand every HTTP and WebSocket request to ``handler``; the app it wraps (Starlette's
    router) sees only lifespan events. Routing is by plain string comparison, so any path, even
    one with a newline that no route pattern matches, reaches a handler that answers it."""

    def __init__(self, app: ASGIApp, *, handler: ASGIApp) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            await self.handler(scope, receive, send)
        else:
            await self.app(scope, receive, send)


__all__ = ["CatchAll", "Terminal"]
