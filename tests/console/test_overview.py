"""``/admin``, the overview, over real HTTP on both databases: refused to a person who is not an
administrator; then its counts, the refusals of the last day with links to the trail, and each
warning: open registration, an old signing key, a single administrator, and upstreams that do
not answer (named within the checks' timeout, never with an error's text)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bastion.authserver.app import create_app
from bastion.config import GatewaySettings, IdentityProviderSettings, Settings, UpstreamSettings
from bastion.console import reachability
from bastion.identity.local import LocalUsers
from tests.console.conftest import Clock, Console, csrf_of
from tests.support.flow import add_user, register
from tests.support.live import free_port, serve


def _counts(page: str) -> dict[str, int]:
    return {
        label: int(value)
        for value, label in re.findall(r"<li><strong>(\d+)</strong>([^<]+)</li>", page)
    }


def _warnings(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<li class="warning"><strong>([^<]+)', page)]


async def test_a_person_who_is_not_an_administrator_sees_no_count_or_warning(
    console: Console,
) -> None:
    bob = await console.signed_in("bob")
    answer = await bob.get("/admin")
    assert answer.status_code == 403
    assert _counts(answer.text) == {} and "Anyone can register" not in answer.text


async def test_the_overview_counts_clients_people_administrators_grants_and_keys(
    console: Console,
) -> None:
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        await register(http)
        await register(http)
    db = console.database()
    try:
        await LocalUsers(db).set_disabled("bob", True)
    finally:
        await db.dispose()
    alice = await console.signed_in("alice")
    page = await alice.get("/admin")
    assert page.status_code == 200
    assert _counts(page.text) == {
        "Clients": 2,
        "Self-registered clients": 2,
        "People": 3,
        "Administrators": 2,  # alice, and carol through console.admin_groups
        "Disabled people": 1,
        "Live grants": 0,
        "Signing keys": 1,
    }


async def test_the_overview_lists_the_refusals_of_the_last_day_with_links_to_the_trail(
    console: Console,
) -> None:
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        form = await http.get("/signin")
        refused = await http.post(
            "/signin",
            data={"csrf": csrf_of(form.text), "username": "bob", "password": "wrong", "next": ""},
        )
        assert refused.status_code >= 400
    alice = await console.signed_in("alice")
    page = await alice.get("/admin")
    failures = page.text.split('id="failures"')[1]
    assert "sign_in_failed" in failures and "wrong_password" in failures
    link = re.search(r'href="(/admin/audit\?[^"]+)"', failures)
    assert link and html.unescape(link.group(1)) == (
        "/admin/audit?type=sign_in_failed&since=24h&user=bob"
    )
    trail = await alice.get(html.unescape(link.group(1)))
    assert trail.status_code == 200 and "wrong_password" in trail.text


async def test_open_registration_is_a_warning(console: Console) -> None:
    alice = await console.signed_in("alice")
    warnings = _warnings((await alice.get("/admin")).text)
    assert warnings == ["Anyone can register a client"]


async def test_a_signing_key_older_than_ninety_days_is_a_warning(console: Console) -> None:
    console.clock.offset = 91 * 86400
    alice = await console.signed_in("alice")
    page = (await alice.get("/admin")).text
    assert "The signing key is 91 days old" in _warnings(page)
    assert "bastion keys rotate" in page


@pytest.fixture
async def lonely(make_settings: Callable[..., Settings]) -> AsyncIterator[Console]:
    """A server with one administrator, registration behind a token, and upstreams: the
    gateway's notes (closed port) and ledger (this server, which answers), an identity
    provider (closed port)."""
    port, closed = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings: Settings = make_settings(
        issuer=issuer,
        registration={"initial_access_token": "a-token-only-known-applications-have"},
        gateway=GatewaySettings(
            upstreams=[
                UpstreamSettings(
                    name="notes", path="/mcp/notes", url=f"http://127.0.0.1:{closed}/mcp"
                ),
                UpstreamSettings(name="ledger", path="/mcp/ledger", url=f"{issuer}/mcp"),
            ]
        ),
        upstreams=[
            IdentityProviderSettings(
                name="corp",
                kind="oidc",
                client_id="bastion",
                client_secret="a-secret-that-must-never-show",
                issuer=f"http://127.0.0.1:{closed}/realms/corp",
                allow_private_addresses=True,
            )
        ],
    )
    await add_user(settings, "alice", name="Alice Admin", is_admin=True)
    clock = Clock()
    async with serve(create_app(settings, clock=clock), port=port):
        running = Console(issuer, settings, clock)
        try:
            yield running
        finally:
            for http in running.clients:
                await http.aclose()


async def test_a_single_administrator_and_unreachable_upstreams_are_warnings(
    lonely: Console,
) -> None:
    alice = await lonely.signed_in("alice")
    started = time.monotonic()
    page = await alice.get("/admin")
    assert time.monotonic() - started < reachability.TIMEOUT + 1
    assert page.status_code == 200
    assert _warnings(page.text) == [
        "You are the only administrator",
        "The gateway upstream notes does not answer",
        "The identity provider corp does not answer",
    ]
    assert "the connection failed" in page.text
    assert "realms" not in page.text and "/mcp" not in page.text  # the host only, no path
    assert "a-secret-that-must-never-show" not in page.text
    assert "Anyone can register" not in page.text


async def test_the_upstream_checks_never_hold_the_page_longer_than_their_timeout() -> None:
    """A server that accepts the connection and never answers: no answer within the timeout,
    and the result is kept for the next page."""
    import asyncio

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes the connection
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = reachability.Target("gateway upstream", "slow", f"http://u:p@127.0.0.1:{port}/x")
    async with server:
        started = time.monotonic()
        [reach] = await reachability.check([target], within=0.5)
        assert time.monotonic() - started < 1.0
        assert not reach.reachable and reach.reason == "no answer within 0.5 s"
        assert target.host == f"127.0.0.1:{port}"  # no credentials
        started = time.monotonic()
        [again] = await reachability.check([target], within=0.5)
        assert time.monotonic() - started < 0.1 and again == reach
