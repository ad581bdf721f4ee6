"""Requests by route, method, status and latency: :class:`HttpMetrics`, a plain ASGI middleware
each app puts around its routes when metrics are on (:func:`http_metrics`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client.metrics import Counter, Histogram
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.ops.metrics import HTTP_DURATION, HTTP_REQUESTS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

RouteOf = Callable[[Scope], str | None]


def starlette_route(scope: Scope) -> str | None:
    """The path template of the Starlette route that took the request (``/token``,
    ``/interaction/{request_id}``, a mount's path), None when none did."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else None


class HttpMetrics:
    """Count each HTTP request and time it to the end of its answer, labelled with the app's
    name, the route (``route_of(scope)`` once the app has answered, :data:`UNMATCHED` when it
    names none), the method (``other`` beyond the usual seven) and the status.

    Label values are bounded: routes are templates, never raw paths. The labelled children are
    kept once made, so a request costs two dictionary lookups and no label resolution."""

    def __init__(self, app: ASGIApp, *, name: str, route_of: RouteOf = starlette_route) -> None:
        self.app = app
        self.name = name
        self.route_of = route_of
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self.observe(scope, status, time.perf_counter() - started)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one answered request of ``scope`` that took ``seconds`` (for apps that answer
        some requests without passing them through this middleware)."""
        count, duration = self._child(scope, status)
        count.inc()
        duration.observe(seconds)

    def _child(self, scope: Scope, status: int) -> tuple[Counter, Histogram]:
        route = self.route_of(scope) or UNMATCHED
        method: str = scope["method"]
        if method not in METHODS:
            method = "other"
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = (
                HTTP_REQUESTS.labels(self.name, route, method, str(status)),
                HTTP_DURATION.labels(self.name, route, method),
            )
            self._children[key] = found
        return found


def http_metrics(
    name: str, *, enabled: bool, route_of: RouteOf = starlette_route
) -> list[Middleware]:
    """The app's :class:`HttpMetrics` middleware named ``name``, labelling routes with
    ``route_of``, when ``enabled`` (a metrics listener is configured); none otherwise."""
    return [Middleware(HttpMetrics, name=name, route_of=route_of)] if enabled else []


__all__ = ["METHODS", "UNMATCHED", "HttpMetrics", "RouteOf", "http_metrics", "starlette_route"]
