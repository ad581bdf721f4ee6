"""How uvicorn runs bastion's listeners: the options every listener gets (forwarded headers
believed only from trusted proxies, no Server header, bastion's log format and not uvicorn's
access log, a grace period on stop), one app on one listener, or several apps in one process."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from bastion.logs import UVICORN_LOGGING
from bastion.serve.listeners import Listener, bind_listener, bind_listeners
from bastion.serve.one_write import OneWriteProtocol


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
    :func:`proxy_options`, one write per answer (:mod:`bastion.serve.one_write`), no Server
    header, bastion's log setup. uvicorn's access log is off:
    bastion's (:mod:`bastion.ops.request_id`) replaces it, with the request id and the route
    instead of the path with its query string, which can hold authorization codes and state."""
    return {
        **proxy_options(trusted_proxies),
        "http": OneWriteProtocol,
        "server_header": False,
        "log_config": copy.deepcopy(UVICORN_LOGGING),
        "access_log": False,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE,
    }


def serve_one(
    name: str, host: str, port: int, make_app: Callable[[], ASGIApp], **options: Any
) -> None:
    """Bind ``host:port`` (:class:`PortUnavailable` before the app is even made, so nothing
    else is logged first), then serve ``make_app()`` until interrupted; ``options`` go to
    ``uvicorn.Config``."""
    sock = bind_listener(name, host, port)
    try:
        config = uvicorn.Config(make_app(), host=host, port=port, **options)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the SIGINT it handled, once it has stopped (as uvicorn.run)
    finally:
        sock.close()


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_together`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_together(
    listeners: list[Listener], *, trusted_proxies: Sequence[str], log_level: str = "info"
) -> None:
    """Serve several apps in one process until SIGINT/SIGTERM; if one stops, all stop.
    ``trusted_proxies`` as in :func:`uvicorn_options`; ``log_level`` for uvicorn's loggers."""
    servers = [
        _QuietServer(
            uvicorn.Config(
                item.app,
                host=item.host,
                port=item.port,
                log_level=log_level,
                **uvicorn_options(trusted_proxies),
            )
        )
        for item in listeners
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    sockets = bind_listeners([(item.name, item.host, item.port) for item in listeners])
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        for sock in sockets:
            sock.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_together(
    listeners: list[Listener], *, trusted_proxies: Sequence[str], log_level: str = "info"
) -> None:
    """:func:`serve_together` on the event loop uvicorn chooses (uvloop when installed), as
    :func:`serve_one` runs: ``asyncio.run`` would take asyncio's own, slower loop."""
    factory = uvicorn.Config(listeners[0].app).get_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_together(listeners, trusted_proxies=trusted_proxies, log_level=log_level))


__all__ = [
    "SHUTDOWN_GRACE",
    "proxy_options",
    "run_together",
    "serve_one",
    "serve_together",
    "uvicorn_options",
]
