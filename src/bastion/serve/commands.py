"""The commands that serve, each settings → listeners → run: ``bastion serve``, ``bastion
gateway``, ``bastion registry serve`` and ``bastion quickstart``. Logging is set up here, once
per command (:func:`_start`), and nowhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import uvicorn

from bastion.config import Settings, export_config_file
from bastion.logs import configure_logging
from bastion.private_files import warn_loose_modes
from bastion.serve.apps import quickstart_listeners, registry_listeners, server_app
from bastion.serve.listeners import Listener, bind_listener
from bastion.serve.running import serve_one, serve_together, uvicorn_options


def _start(settings: Settings, config_file: Path | None, log_level: str) -> None:
    """What every command that serves does first: bastion's one logging set-up, then a warning
    about private files other users can read (``config_file`` among them)."""
    configure_logging(log_level)
    warn_loose_modes(settings, config_file)


def run_server(
    settings: Settings, *, config_file: Path | None, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve :func:`~bastion.serve.apps.server_app` (the authorization server, and the registry
    on the issuer's origin) until interrupted. Several workers share the database; nothing else
    is shared. ``log_level`` (debug, info, warning, error) applies to bastion's and uvicorn's
    loggers; below info, uvicorn writes no access log."""
    _start(settings, config_file, log_level)
    if workers > 1:
        # uvicorn binds in this process before it starts the workers: check first.
        bind_listener("the authorization server", settings.host, settings.port).close()
        if config_file is not None:
            export_config_file(config_file)
        uvicorn.run(
            "bastion.serve.apps:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=log_level,
            **uvicorn_options(settings.trusted_proxies),
        )
        return
    serve_one(
        "the authorization server",
        settings.host,
        settings.port,
        lambda: server_app(settings),
        log_level=log_level,
        **uvicorn_options(settings.trusted_proxies),
    )


def run_gateway(
    settings: Settings, *, log_level: str = "info", config_file: Path | None = None
) -> None:
    """Serve the gateway with uvicorn on ``gateway.host``:``gateway.port`` until interrupted
    (``log_level`` as for :func:`run_server`; audit records log at info); warn first about
    private files other users can read (``config_file`` among them)."""
    from bastion.gateway.app import create_gateway_app

    _start(settings, config_file, log_level)
    serve_one(
        "the gateway",
        settings.gateway.host,
        settings.gateway.port,
        lambda: create_gateway_app(settings),
        log_level=log_level,
        **uvicorn_options(settings.trusted_proxies),
    )


def _run_together(
    settings: Settings, config_file: Path | None, listeners: Callable[[], list[Listener]]
) -> None:
    """:func:`_start` at info, then serve the apps of ``listeners()`` in this process."""
    _start(settings, config_file, "info")
    asyncio.run(serve_together(listeners(), trusted_proxies=settings.trusted_proxies))


def run_registry(
    settings: Settings, *, with_auth_server: bool = False, config_file: Path | None = None
) -> None:
    """Serve :func:`registry_listeners` until interrupted; warn first about private files
    other users can read (``config_file`` among them)."""
    _run_together(
        settings,
        config_file,
        lambda: registry_listeners(settings, with_auth_server=with_auth_server),
    )


def run_quickstart(settings: Settings, *, config_file: Path) -> None:
    """Serve :func:`quickstart_listeners` until interrupted; warn first about private files
    other users can read (``config_file`` among them)."""
    _run_together(settings, config_file, lambda: quickstart_listeners(settings))


__all__ = ["run_gateway", "run_quickstart", "run_registry", "run_server"]
