"""The composition root: settings → listeners → uvicorn, for every command that serves.

Which apps run on which listener is decided here and nowhere else: the authorization server
(``bastion serve``, in one process or several, with the registry when it is on the
issuer's origin), the gateway (``bastion gateway``), the registry
(``bastion registry serve``: on the issuer's listener, combined with the authorization server,
when its URL is on the issuer's origin) and all of them with the demo server (``bastion
quickstart``). The packages build ASGI apps only; logging is set up here, once per command.

- :mod:`~bastion.serve.listeners`: where each app listens, bound before anything starts;
- :mod:`~bastion.serve.running`: uvicorn's options, one app or several in one process;
- :mod:`~bastion.serve.apps`: which apps each command serves, the combined app;
- :mod:`~bastion.serve.commands`: the commands, with the one logging set-up.
"""

from __future__ import annotations

from bastion.serve.apps import (
    create_combined_app,
    quickstart_listeners,
    registry_listeners,
    server_app,
    shares_issuer_origin,
    worker_app,
)
from bastion.serve.commands import (
    METRICS_LISTENER,
    run_gateway,
    run_quickstart,
    run_registry,
    run_server,
)
from bastion.serve.listeners import Listener, PortUnavailable, bind_listener, bind_listeners
from bastion.serve.running import (
    SHUTDOWN_GRACE,
    proxy_options,
    run_together,
    serve_one,
    serve_together,
    uvicorn_options,
)

__all__ = [
    "METRICS_LISTENER",
    "SHUTDOWN_GRACE",
    "Listener",
    "PortUnavailable",
    "bind_listener",
    "bind_listeners",
    "create_combined_app",
    "proxy_options",
    "quickstart_listeners",
    "registry_listeners",
    "run_gateway",
    "run_quickstart",
    "run_registry",
    "run_server",
    "run_together",
    "serve_one",
    "serve_together",
    "server_app",
    "shares_issuer_origin",
    "uvicorn_options",
    "worker_app",
]
