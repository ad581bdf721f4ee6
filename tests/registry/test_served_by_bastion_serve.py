"""What ``bastion serve`` serves (``bastion.serve.server_app``, also in each ``--workers``
process): the authorization server, and the registry when it is enabled and its URL is on the
issuer's origin; a registry on an origin of its own is left to ``bastion registry serve``."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bastion.config import Settings
from bastion.serve import server_app

LISTING = "/registry/v0.1/servers"


async def _get(settings: Settings, path: str) -> httpx.Response:
    app = server_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as http,
    ):
        return await http.get(path)


@pytest.mark.parametrize(
    ("registry", "listing"),
    [
        ({"enabled": False}, LISTING),
        ({"enabled": True, "public_url": "http://127.0.0.1:8002"}, "/v0.1/servers"),
    ],
    ids=["registry off", "registry on its own origin"],
)
async def test_without_a_registry_on_the_issuers_origin_only_the_authorization_server_answers(
    make_settings: Callable[..., Settings], registry: dict[str, object], listing: str
) -> None:
    """The registry's listing (where it would be, were it served here) is unknown to the
    authorization server: 404."""
    response = await _get(make_settings(registry=registry), listing)
    assert response.status_code == 404


async def test_the_registry_on_the_issuers_origin_is_served_with_the_authorization_server(
    make_settings: Callable[..., Settings],
) -> None:
    """Enabled, at the default <issuer>/registry: its listing asks for a token with the
    registry's own challenge, and the authorization server still answers beside it."""
    settings = make_settings(registry={"enabled": True})
    listing = await _get(settings, LISTING)
    metadata = await _get(settings, "/.well-known/oauth-authorization-server")
    assert listing.status_code == 401
    assert "resource_metadata=" in listing.headers["www-authenticate"]
    assert metadata.status_code == 200
