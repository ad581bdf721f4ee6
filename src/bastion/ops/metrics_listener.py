"""What the metrics listener answers: ``GET /metrics`` in Prometheus's text format, 404 for
anything else. :func:`metrics_app` is the ASGI app of a process that serves requests itself;
:func:`start_metrics_thread` serves the sum over worker processes (``bastion serve --workers
N``) from the process that started them, which runs no event loop of its own."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PATH = "/metrics"
_NOT_FOUND = "not found: the metrics are at GET /metrics\n"


def metrics_app(registry: CollectorRegistry = REGISTRY) -> Starlette:
    """The metrics listener's app: ``GET /metrics`` is ``registry`` (default: this process's
    metrics) in the text exposition format; any other path is 404."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(_NOT_FOUND, status_code=404)

    return Starlette(
        routes=[Route(PATH, metrics, methods=["GET"])], exception_handlers={404: not_found}
    )


def multiprocess_registry(directory: Path) -> CollectorRegistry:
    """A registry of the sum of the metrics worker processes write into ``directory``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


class _Quiet(WSGIRequestHandler):
    """No line per scrape on standard error."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(WSGIServer):
    address_family = socket.AF_INET


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


def _wsgi(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "GET":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [_NOT_FOUND.encode()]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest(registry)]

    return app


def start_metrics_thread(host: str, port: int, registry: CollectorRegistry) -> Callable[[], None]:
    """Serve :func:`metrics_app`'s answers for ``registry`` on ``host:port`` from a daemon
    thread; the function that stops it."""
    server_class = _Server6 if ":" in host else _Server
    server = make_server(host, port, _wsgi(registry), server_class, _Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


__all__ = ["PATH", "metrics_app", "multiprocess_registry", "start_metrics_thread"]
