"""Running the authorization server under uvicorn, in one process or several."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bastion.config import Settings, export_config_file, settings_from_environment

# Seconds a stopping server waits for requests in flight. Long polls of /revocations are held
# up to revocations.max_wait (25 s): they are cut after this, and the resource servers' feeds
# ask again (another process, behind a load balancer) half a second later.
SHUTDOWN_GRACE = 5


def worker_app() -> Starlette:
    """Factory for worker processes (``--workers N``): settings come from the environment."""
    from bastion.authserver.app import create_app

    return create_app(settings_from_environment())


def run_server(
    settings: Settings, *, config_file: Path | None, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until interrupted. Several workers share the database; nothing else is shared.
    ``log_level`` (debug, info, warning, error) applies to bastion's and uvicorn's loggers;
    below info, uvicorn writes no access log."""
    from bastion.authserver.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if workers > 1:
        if config_file is not None:
            export_config_file(config_file)
        uvicorn.run(
            "bastion.serve:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            proxy_headers=True,
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            log_level=log_level,
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        log_level=log_level,
    )


@dataclass(frozen=True)
class Listener:
    """One app of a stack and where it listens."""

    name: str
    app: ASGIApp
    host: str
    port: int


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_together`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_together(listeners: list[Listener]) -> None:
    """Serve several apps in one process until SIGINT/SIGTERM; if one stops, all stop."""
    servers = [
        _QuietServer(
            uvicorn.Config(
                item.app,
                host=item.host,
                port=item.port,
                proxy_headers=True,
                server_header=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE,
                log_level="info",
            )
        )
        for item in listeners
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = ["SHUTDOWN_GRACE", "Listener", "run_server", "serve_together", "worker_app"]
