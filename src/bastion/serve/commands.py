"""The commands that serve, each settings → listeners → run: ``bastion serve``, ``bastion
gateway``, ``bastion registry serve`` and ``bastion quickstart``. Logging is set up here, once
per command (:func:`_start`) or worker process (:func:`worker_app`), and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bastion.config import (
    Settings,
    export_config_file,
    export_metrics_directory,
    settings_from_environment,
)
from bastion.config.loading import export_log_settings
from bastion.config.logs import LogLevel
from bastion.logs import configure_logging
from bastion.ops.json_logs import JsonFormatter
from bastion.ops.metrics_listener import metrics_app, multiprocess_registry, start_metrics_thread
from bastion.ops.request_id import ACCESS_LOGGER
from bastion.ops.user_ids import UserIdFilter, UserIdPolicy
from bastion.private_files import warn_loose_modes
from bastion.serve import apps
from bastion.serve.apps import quickstart_listeners, registry_listeners, server_app
from bastion.serve.listeners import Listener, bind_listener
from bastion.serve.running import run_together, serve_one, serve_together, uvicorn_options
from bastion.tokens.cipher import load_or_create_secret

METRICS_LISTENER = "the metrics listener"


def user_id_policy(settings: Settings) -> UserIdPolicy:
    """How log records name people, as ``logging.user_ids`` says; digests are keyed with
    ``logging.hash_key``, else with the authorization server's secret key
    (:func:`bastion.authserver.app.secret_for`, not imported into the gateway)."""
    config = settings.logging
    secret = None
    if config.user_ids == "hash":
        if config.hash_key is not None:
            secret = config.hash_key.get_secret_value()
        elif settings.secret_key is not None:
            secret = settings.secret_key.get_secret_value()
        else:
            secret = load_or_create_secret(settings.data_dir / "secret.key")
    return UserIdPolicy(config.user_ids, secret)


def _configure_logging(settings: Settings) -> None:
    """bastion's one logging set-up, as ``settings.logging`` says: format, level, how user ids
    appear (:func:`user_id_policy`), and whether the access log is written."""
    config = settings.logging
    policy = user_id_policy(settings)
    formatter = JsonFormatter() if config.format == "json" else None
    configure_logging(config.level, formatter=formatter, filters=[UserIdFilter(policy)])
    if not config.access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)


def _start(settings: Settings, config_file: Path | None, log_level: LogLevel | None) -> None:
    """What every command that serves does first: bastion's one logging set-up (``log_level``,
    when given, instead of ``logging.level``), then a warning about private files other users
    can read (``config_file`` among them)."""
    if log_level is not None:
        settings.logging.level = log_level
    _configure_logging(settings)
    warn_loose_modes(settings, config_file)


def worker_app() -> Starlette:
    """Factory for worker processes (``--workers N``): logging set up as in the parent (which
    handed its settings down, :func:`export_log_settings`), then :func:`apps.worker_app`."""
    _configure_logging(settings_from_environment())
    return apps.worker_app()


def _with_metrics(settings: Settings, listeners: list[Listener]) -> list[Listener]:
    """``listeners`` and, when ``[metrics] listen`` is set, the metrics listener."""
    address = settings.metrics.address
    if address is None:
        return listeners
    return [*listeners, Listener(METRICS_LISTENER, metrics_app(), *address)]


def _serve(
    settings: Settings,
    name: str,
    address: tuple[str, int],
    make_app: Callable[[], ASGIApp],
) -> None:
    """Serve ``make_app()`` on ``address`` (:func:`serve_one`) at ``logging.level``, with the
    metrics listener beside it in the same process when ``[metrics] listen`` is set."""
    level = settings.logging.level
    if settings.metrics.address is None:
        options = uvicorn_options(settings.trusted_proxies)
        serve_one(name, *address, make_app, log_level=level, **options)
        return
    listeners = _with_metrics(settings, [Listener(name, make_app(), *address)])
    run_together(listeners, trusted_proxies=settings.trusted_proxies, log_level=level)


@contextlib.contextmanager
def _workers_metrics(settings: Settings) -> Iterator[None]:
    """For ``--workers N`` with metrics on: a private directory the workers write their
    metrics into (prometheus_client's multiprocess mode), served summed from this process;
    removed afterwards."""
    address = settings.metrics.address
    if address is None:
        yield
        return
    bind_listener(METRICS_LISTENER, *address).close()
    directory = Path(tempfile.mkdtemp(prefix="bastion-metrics-"))
    try:
        export_metrics_directory(directory)
        stop = start_metrics_thread(*address, multiprocess_registry(directory))
        try:
            yield
        finally:
            stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_server(
    settings: Settings,
    *,
    config_file: Path | None,
    workers: int = 1,
    log_level: LogLevel | None = None,
) -> None:
    """Serve :func:`~bastion.serve.apps.server_app` (the authorization server, and the registry
    on the issuer's origin) until interrupted. Several workers share the database; nothing else
    is shared. ``log_level`` (debug, info, warning, error; default ``logging.level``) applies to
    bastion's and uvicorn's loggers; above info there is no access log."""
    _start(settings, config_file, log_level)
    level = settings.logging.level
    if workers > 1:
        # uvicorn binds in this process before it starts the workers: check first.
        bind_listener("the authorization server", settings.host, settings.port).close()
        if config_file is not None:
            export_config_file(config_file)
        export_log_settings(settings)
        with _workers_metrics(settings):
            uvicorn.run(
                "bastion.serve.commands:worker_app",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=workers,
                log_level=level,
                **uvicorn_options(settings.trusted_proxies),
            )
        return
    address = (settings.host, settings.port)
    _serve(settings, "the authorization server", address, lambda: server_app(settings))


def run_gateway(
    settings: Settings, *, log_level: LogLevel | None = None, config_file: Path | None = None
) -> None:
    """Serve the gateway with uvicorn on ``gateway.host``:``gateway.port`` until interrupted
    (``log_level`` as for :func:`run_server`; audit records log at info); warn first about
    private files other users can read (``config_file`` among them)."""
    from bastion.gateway.app import create_gateway_app

    _start(settings, config_file, log_level)
    address = (settings.gateway.host, settings.gateway.port)
    _serve(settings, "the gateway", address, lambda: create_gateway_app(settings))


def _run_together(
    settings: Settings, config_file: Path | None, listeners: Callable[[], list[Listener]]
) -> None:
    """:func:`_start` at ``logging.level``, then serve the apps of ``listeners()`` here."""
    _start(settings, config_file, None)
    asyncio.run(
        serve_together(
            _with_metrics(settings, listeners()),
            trusted_proxies=settings.trusted_proxies,
            log_level=settings.logging.level,
        )
    )


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


__all__ = [
    "METRICS_LISTENER",
    "run_gateway",
    "run_quickstart",
    "run_registry",
    "run_server",
    "user_id_policy",
    "worker_app",
]
