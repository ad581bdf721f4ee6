"""Every route of the console, for the authorization server to serve under its issuer path."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from bastion.console import (
    access_pages,
    account,
    audit_pages,
    clients,
    grants,
    groups,
    keys,
    overview,
    people,
    registry_pages,
    signin,
)


def routes() -> list[BaseRoute]:
    """The console's routes: its sign-in, ``/admin`` pages and ``/account``."""
    return [
        Route("/signin", signin.show, methods=["GET"]),
        Route("/signin", signin.submit, methods=["POST"]),
        Route("/signin/upstream/{name}", signin.upstream, methods=["POST"]),
        *overview.ROUTES,
        *clients.ROUTES,
        *people.ROUTES,
        *groups.ROUTES,
        *access_pages.ROUTES,
        *grants.ROUTES,
        *keys.ROUTES,
        *registry_pages.ROUTES,
        *audit_pages.ROUTES,
        *account.ROUTES,
    ]


__all__ = ["routes"]
