"""A live authorization server and registry on loopback for the registry's client-side tests
(``RegistryClient``, the local bridge, the end-to-end test): alice (team-a) and bob (team-b)
sign in at a scripted browser on bastion's log-in and consent pages.

The fixtures are in ``tests/registry/client/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bastion.client import Authorizer, ClientSettings, FileStorage
from bastion.client.browser import OpenUrl
from bastion.config import Settings
from bastion.serve import create_combined_app
from tests.client.browser_user import BrowserUser
from tests.registry.harness import registry_settings, server_json
from tests.registry.test_end_to_end import sign_in
from tests.support.flow import add_user, register
from tests.support.live import free_port, serve

ALPHA = "com.acme.team-a/alpha"
BETA = "com.acme.team-b/beta"
COMMON = "com.acme.shared.x/common"
WEATHER = "com.acme.shared.x/weather-map"
ALICE_SEES = [COMMON, WEATHER, ALPHA]
BOB_SEES = [COMMON, WEATHER, BETA]


@dataclass
class LiveRegistry:
    """The AS and the registry in one uvicorn process; alice (team-a) and bob (team-b)."""

    issuer: str
    url: str
    settings: Settings
    tmp: Path
    browsers: dict[str, BrowserUser] = field(default_factory=dict)

    def client_settings(self, store: str, **overrides: Any) -> ClientSettings:
        values: dict[str, Any] = {
            "use_keyring": False,
            "storage_path": self.tmp / store / "tokens.json",
            "callback_timeout": 10,
        }
        values.update(overrides)
        return ClientSettings(**values)

    def authorizer(
        self,
        username: str,
        *,
        store: str | None = None,
        open_url: OpenUrl | None = None,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> Authorizer:
        """An Authorizer with the token file ``store`` (default: the user's name); the user
        signs in at a scripted browser, :attr:`browsers` ``[store]``."""
        key = store or username
        settings = self.client_settings(key, **overrides)
        browser = self.browsers.setdefault(key, BrowserUser(self.issuer, username=username))
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        return Authorizer(
            settings,
            storage=FileStorage(settings.storage_path),
            open_url=open_url or browser,
            **extra,
        )

    def opened(self, store: str) -> list[str]:
        """The authorization URLs the browser of ``store`` was sent to."""
        browser = self.browsers.get(store)
        return browser.opened if browser is not None else []

    async def publish(self, username: str, *documents: dict[str, Any]) -> None:
        """Publish as ``username`` (read and write scopes, through the browser flow)."""
        async with httpx.AsyncClient(base_url=self.issuer) as http:
            client_id = (await register(http))["client_id"]
        token = await sign_in(self.issuer, self.url, client_id, username)
        async with httpx.AsyncClient(base_url=self.url) as http:
            for document in documents:
                response = await http.post(
                    "/v0.1/publish", json=document, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200, response.text

    async def aclose(self) -> None:
        for browser in self.browsers.values():
            await browser.aclose()


@asynccontextmanager
async def live_registry(
    make_settings: Callable[..., Settings], tmp: Path, **overrides: Any
) -> AsyncIterator[LiveRegistry]:
    """Start the AS and the registry (entries approved on publish) on a loopback port."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {"approve_on_publish": True, **overrides}
    settings = make_settings(issuer=issuer, registry=registry_settings(**values))
    await add_user(settings, "alice", groups=["team-a"])
    await add_user(settings, "bob", groups=["team-b"])
    async with serve(create_combined_app(settings), port=port):
        live = LiveRegistry(issuer, f"{issuer}/registry", settings, tmp)
        try:
            yield live
        finally:
            await live.aclose()


async def seed(live: LiveRegistry) -> None:
    """alpha (team-a, two versions), beta (team-b), and two entries everyone sees."""
    await live.publish(
        "alice",
        server_json(ALPHA, "1.0.0", groups=["team-a"], description="Weather forecasts of team A"),
        server_json(ALPHA, "1.1.0", groups=["team-a"], description="Weather forecasts of team A"),
        server_json(COMMON),
        server_json(WEATHER, description="Weather maps for everyone"),
    )
    await live.publish("bob", server_json(BETA, "2.0.0", groups=["team-b"]))


def names(entries: list[Any]) -> list[str]:
    return [e.name for e in entries]


async def names_through(
    http: httpx.AsyncClient, path: str = "/v0.1/servers", **params: str
) -> list[str]:
    """The names of every entry of a list over HTTP without a token (a bridge), following
    nextCursor as VS Code does."""
    found: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await http.get(path, params=query)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert "authorization" not in response.request.headers
        body = response.json()
        found += [s["server"]["name"] for s in body["servers"]]
        cursor = body["metadata"].get("nextCursor")
        if not cursor:
            return found
    raise AssertionError("more than 20 pages")


__all__ = [
    "ALICE_SEES",
    "ALPHA",
    "BETA",
    "BOB_SEES",
    "COMMON",
    "WEATHER",
    "LiveRegistry",
    "live_registry",
    "names",
    "names_through",
    "seed",
]
