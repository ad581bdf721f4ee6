"""Running the authorization server under uvicorn, in one process or several."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from bastion.config import Settings, export_config_file, settings_from_environment


def worker_app() -> Starlette:
    """Factory for worker processes (``--workers N``): settings come from the environment."""
    from bastion.authserver.app import create_app

    return create_app(settings_from_environment())


def run_server(settings: Settings, *, config_file: Path | None, workers: int = 1) -> None:
    """Serve until interrupted. Several workers share the database; nothing else is shared."""
    from bastion.authserver.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        server_header=False,
    )


__all__ = ["run_server", "worker_app"]
