"""A private registry end to end (issue 5, "Done when"): publish, then list as two people of
different groups who see different entries, then the same through one local bridge per person
(``bastion proxy registry``, https with the local CA), each bridge with a token store of its
own, and no token from the caller, as VS Code and the Copilot CLI send none.

bastion's AS and the registry run under uvicorn on loopback (SQLite and PostgreSQL); alice
(team-a) and bob (team-b) sign in at a scripted browser on bastion's log-in and consent pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx

from bastion.client import RegistryClient
from bastion.client.registry_bridge import run_bridge
from bastion.config import Settings
from tests.registry.live_registry import (
    ALICE_SEES,
    ALPHA,
    BETA,
    BOB_SEES,
    LiveRegistry,
    live_registry,
    names_through,
    seed,
)

OWN = {"alice": ALPHA, "bob": BETA}
OTHERS = {"alice": BETA, "bob": ALPHA}
SEES = {"alice": ALICE_SEES, "bob": BOB_SEES}


def encoded(name: str) -> str:
    return name.replace("/", "%2F")


async def through_bridge(http: httpx.AsyncClient) -> list[str]:
    """The calls VS Code makes: the probe, then pages of latest versions (nextCursor)."""
    probe = await http.get("/v0.1/servers", params={"limit": 1})
    assert probe.status_code == 200, probe.text
    return await names_through(http, limit="2", version="latest")


async def start_bridges(
    live: LiveRegistry, stack: contextlib.AsyncExitStack, stop: asyncio.Event
) -> dict[str, str]:
    """One bridge per person, each with its own (empty) token store; their URLs."""
    urls: dict[str, str] = {}
    for user in ("alice", "bob"):
        auth = await stack.enter_async_context(live.authorizer(user, store=f"{user}-bridge"))
        registry = await stack.enter_async_context(RegistryClient(live.url, auth))
        task = asyncio.create_task(
            run_bridge(
                registry,
                port=0,
                ca_directory=live.tmp / "local-ca",
                ready=lambda url, u=user: urls.update({u: url}),
                stop=stop,
            )
        )
        stack.push_async_callback(asyncio.wait_for, task, 10)
    stack.callback(stop.set)  # runs first: the bridges stop, then their tasks are awaited
    for _ in range(500):
        if len(urls) == 2:
            return urls
        await asyncio.sleep(0.01)
    raise AssertionError(f"the bridges did not start: {urls}")


async def test_g01_g04_c12_c13_publish_list_by_group_then_the_same_through_local_bridges(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with live_registry(make_settings, tmp_path) as live:
        await seed(live)

        # Listed through bastion's client: each person signs in once and sees their group's.
        for user in ("alice", "bob"):
            async with live.authorizer(user) as auth, RegistryClient(live.url, auth) as registry:
                assert [e.name async for e in registry.iter_servers()] == SEES[user]
                assert (await registry.get(OWN[user])).name == OWN[user]
            assert len(live.opened(user)) == 1

        # Through the bridges, with no token from the caller.
        stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            urls = await start_bridges(live, stack, stop)
            assert urls["alice"] != urls["bob"]
            trusted = ssl.create_default_context(cafile=str(live.tmp / "local-ca" / "ca.pem"))
            for user in ("alice", "bob"):
                assert urls[user].startswith("https://localhost:")
                async with httpx.AsyncClient(base_url=urls[user], verify=trusted) as http:
                    assert await through_bridge(http) == SEES[user]
                    base = f"/v0.1/servers/{encoded(OWN[user])}/versions"
                    latest = await http.get(f"{base}/latest")
                    assert latest.status_code == 200, latest.text
                    assert latest.json()["server"]["name"] == OWN[user]
                    hidden = await http.get(
                        f"/v0.1/servers/{encoded(OTHERS[user])}/versions/latest"
                    )
                    assert hidden.status_code == 404
                # The bridge's own store was empty: one browser sign-in, then the stored token.
                assert len(live.opened(f"{user}-bridge")) == 1
