"""Running the authorization server under uvicorn, in one process or several."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bastion.config import Settings, export_config_file, settings_from_environment
from bastion.logs import UVICORN_LOGGING, configure_logging
from bastion.private_files import warn_loose_modes


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For and X-Forwarded-Proto: believed only from
    ``trusted_proxies``, not at all when there are none (by default uvicorn believes any peer
    on 127.0.0.1, so anything that runs on the host could claim any address)."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


# Seconds a stopping server waits for requests in flight. Long polls of /revocations are held
# up to revocations.max_wait (25 s): they are cut after this, and the resource servers' feeds
# ask again (another process, behind a load balancer) half a second later.
SHUTDOWN_GRACE = 5


def uvicorn_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """What every bastion listener gives ``uvicorn.run``/``uvicorn.Config``: the
    :func:`proxy_options`, no Server header, bastion's log setup."""
    return {
        **proxy_options(trusted_proxies),
        "server_header": False,
        "log_config": copy.deepcopy(UVICORN_LOGGING),
        "timeout_graceful_shutdown": SHUTDOWN_GRACE,
    }


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

    configure_logging(log_level)
    warn_loose_modes(settings, config_file)
    if workers > 1:
        if config_file is not None:
            export_config_file(config_file)
        uvicorn.run(
            "bastion.serve:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=log_level,
            **uvicorn_options(settings.trusted_proxies),
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        **uvicorn_options(settings.trusted_proxies),
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


async def serve_together(listeners: list[Listener], *, trusted_proxies: Sequence[str]) -> None:
    """Serve several apps in one process until SIGINT/SIGTERM; if one stops, all stop.
    ``trusted_proxies`` as in :func:`uvicorn_options`."""
    servers = [
        _QuietServer(
            uvicorn.Config(
                item.app,
                host=item.host,
                port=item.port,
                log_level="info",
                **uvicorn_options(trusted_proxies),
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


__all__ = [
    "SHUTDOWN_GRACE",
    "Listener",
    "proxy_options",
    "run_server",
    "serve_together",
    "uvicorn_options",
    "worker_app",
]
