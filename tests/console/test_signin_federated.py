"""Signing in to the console through an identity provider, over real HTTP, with the real
node-oidc-provider as the provider, on both databases.

The refusals first: a form without its token starts nothing; an answer delivered to another
browser than the one that started the sign-in is refused; a page to come back to that is not a
console page (in the form, or tampered with in the database) is never followed; a replayed
answer fails; a sign-in again whose ID token says the person was not authenticated anew is
refused. Then: a person lands on their account, an administrator through the provider's groups
(``console.admin_groups``) on /admin, and a sign-in again asks the provider for a new
authentication and comes back with the notice.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from bastion.authserver.app import create_app
from bastion.config import ConsoleSettings, Settings
from bastion.store.database import Database
from bastion.store.schema import auth_audit, federation_states, sessions
from tests.console.conftest import ADMIN_GROUP, Clock, csrf_of
from tests.federation.test_browser_enterprise_idp import bastion_client
from tests.support.live import free_port, serve
from tests.support.oidc_provider import OidcProvider, _interact, oidc_provider

NAME = "corp"
LABEL = "Corp SSO"
ACCOUNTS = {
    "dana": {"email": "dana@corp.example", "name": "Dana Ops", "groups": [ADMIN_GROUP]},
    "erin": {"email": "erin@corp.example", "name": "Erin Eng", "groups": ["eng"]},
}


@dataclass
class Federated:
    """A live bastion whose console signs in through node-oidc-provider (provider "corp")."""

    issuer: str
    settings: Settings
    clock: Clock
    op: OidcProvider

    @property
    def callback(self) -> str:
        return f"{self.issuer}/login/{NAME}/callback"

    async def rows(self, table: sa.Table) -> list[sa.Row]:  # type: ignore[type-arg]
        db = Database(self.settings.effective_database_url, schema=self.settings.database_schema)
        try:
            async with db.connect() as conn:
                return list(await conn.execute(sa.select(table)))
        finally:
            await db.dispose()

    async def execute(self, statement: sa.Executable) -> None:
        db = Database(self.settings.effective_database_url, schema=self.settings.database_schema)
        try:
            async with db.transaction() as conn:
                await conn.execute(statement)
        finally:
            await db.dispose()


@pytest.fixture
async def federated(make_settings: Callable[..., Settings]) -> AsyncIterator[Federated]:
    """bastion with one OpenID provider and ``console.admin_groups`` = [platform-admins]."""
    secret = secrets.token_urlsafe(24)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    async with oidc_provider(
        clients=[bastion_client(f"{issuer}/login/{NAME}/callback", secret)],
        default_resource=None,
        accounts=ACCOUNTS,
    ) as op:
        settings = make_settings(
            issuer=issuer,
            console=ConsoleSettings(admin_groups=[ADMIN_GROUP]),
            upstreams=[
                {
                    "name": NAME,
                    "kind": "oidc",
                    "display_name": LABEL,
                    "issuer": op.issuer,
                    "client_id": "bastion",
                    "client_secret": secret,
                    "scopes": ["openid", "email", "profile", "groups"],
                    "allow": {"email_domains": ["corp.example"]},
                    "allow_private_addresses": True,
                }
            ],
        )
        clock = Clock()
        async with serve(create_app(settings, clock=clock), port=port):
            yield Federated(issuer, settings, clock, op)


async def start(
    http: httpx.AsyncClient, bastion: Federated, next_path: str = "/account", *, fresh: bool = False
) -> httpx.Response:
    """Press "Continue with Corp SSO" on the console's sign-in page: the redirect to the
    provider."""
    query = {"next": next_path, **({"fresh": "1"} if fresh else {})}
    form = await http.get(f"{bastion.issuer}/signin", params=query)
    assert form.status_code == 200, form.text
    answer = await http.post(
        f"{bastion.issuer}/signin/upstream/{NAME}", data={"csrf": csrf_of(form.text), **query}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(bastion.op.authorization_endpoint)
    return answer


async def at_provider(
    http: httpx.AsyncClient, bastion: Federated, started: httpx.Response, login: str
) -> str:
    """Sign in as ``login`` on the provider's pages; the answer's URL (bastion's callback)."""
    return await _interact(http, started, bastion.callback, login)


async def sign_in(
    http: httpx.AsyncClient, bastion: Federated, login: str, next_path: str = "/account"
) -> httpx.Response:
    """The whole console sign-in through the provider: the callback's answer."""
    started = await start(http, bastion, next_path)
    return await http.get(await at_provider(http, bastion, started, login))


def browser() -> httpx.AsyncClient:
    """An HTTP "browser": one cookie jar for bastion and the provider (both on 127.0.0.1)."""
    return httpx.AsyncClient(timeout=10, follow_redirects=False)


async def test_a_provider_button_without_the_forms_token_starts_nothing(
    federated: Federated,
) -> None:
    async with browser() as http:
        await http.get(f"{federated.issuer}/signin")
        for data in ({"next": "/account"}, {"csrf": "forged", "next": "/account"}):
            answer = await http.post(f"{federated.issuer}/signin/upstream/{NAME}", data=data)
            assert answer.status_code == 403 and "Sign-in refused" in answer.text
        unknown = await http.post(f"{federated.issuer}/signin/upstream/nope", data={})
        assert unknown.status_code == 404
    assert await federated.rows(federation_states) == []


async def test_an_answer_delivered_to_another_browser_is_refused(federated: Federated) -> None:
    async with browser() as victim, browser() as attacker:
        started = await start(attacker, federated)
        answer_url = await at_provider(attacker, federated, started, "erin")
        answer = await victim.get(answer_url)
        assert answer.status_code == 400
        assert "started in another browser" in answer.text
        assert "bastion-session" not in answer.cookies
    assert await federated.rows(sessions) == []


async def test_a_page_to_come_back_to_off_site_is_never_followed(federated: Federated) -> None:
    for wanted in ("https://evil.example/account", "//evil.example/account", "/token"):
        async with browser() as http:
            answer = await sign_in(http, federated, "erin", wanted)
            assert answer.status_code == 303
            assert answer.headers["location"] == "/account", wanted
    # A page to come back to tampered with in the database is checked again at the callback.
    async with browser() as http:
        started = await start(http, federated, "/admin")
        await federated.execute(
            sa.update(federation_states).values(return_to="https://evil.example/admin")
        )
        answer = await http.get(await at_provider(http, federated, started, "erin"))
        assert answer.status_code == 303
        assert answer.headers["location"] == "/account"


async def test_a_replayed_answer_fails(federated: Federated) -> None:
    async with browser() as http:
        started = await start(http, federated)
        answer_url = await at_provider(http, federated, started, "erin")
        first = await http.get(answer_url)
        assert first.status_code == 303
        again = await http.get(answer_url)
        assert again.status_code == 400 and "already used" in again.text
    signed_in = [r for r in await federated.rows(auth_audit) if r.type == "sign_in"]
    assert len(signed_in) == 1


async def test_a_sign_in_again_that_the_provider_did_not_renew_is_refused(
    federated: Federated,
) -> None:
    async with browser() as http:
        assert (await sign_in(http, federated, "dana", "/admin")).status_code == 303
        # The provider authenticated dana before this sign-in again was asked for, as if it
        # had ignored prompt=login and max_age=0 (bastion's clock is two minutes ahead).
        federated.clock.offset = 120
        started = await start(http, federated, "/admin", fresh=True)
        answer = await http.get(await at_provider(http, federated, started, "dana"))
        assert answer.status_code == 502, answer.text
        assert "did not ask you to sign in again" in answer.text
        assert "/signin?next=%2Fadmin" in answer.text  # the way back
    failed = [r for r in await federated.rows(auth_audit) if r.type == "sign_in_failed"]
    assert [(r.method, r.provider, r.outcome) for r in failed] == [
        ("federated", NAME, "invalid_id_token")
    ]
    assert len(await federated.rows(sessions)) == 1  # the first sign-in's only


async def test_a_person_signs_in_to_their_account_through_the_provider(
    federated: Federated,
) -> None:
    async with browser() as http:
        answer = await sign_in(http, federated, "erin", "/admin")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/admin"
        refused = await http.get(f"{federated.issuer}/admin")
        assert refused.status_code == 403  # erin is not in platform-admins
        page = await http.get(f"{federated.issuer}/account")
        assert page.status_code == 200
        assert "Erin Eng" in page.text and f"Through <strong>{LABEL}</strong>" in page.text
        assert "and password" not in page.text  # no password of this server
    [record] = [r for r in await federated.rows(auth_audit) if r.type == "sign_in"]
    assert (record.method, record.provider, record.client_id) == ("federated", NAME, None)


async def test_an_administrator_by_the_providers_groups_reaches_admin_and_signs_in_again(
    federated: Federated,
) -> None:
    async with browser() as http:
        answer = await sign_in(http, federated, "dana", "/admin")
        assert answer.headers["location"] == "/admin"
        assert (await http.get(f"{federated.issuer}/admin")).status_code == 200
        started = await start(http, federated, "/admin", fresh=True)
        sent = parse_qs(urlsplit(started.headers["location"]).query)
        assert sent["prompt"] == ["login"] and sent["max_age"] == ["0"]
        # The provider asks dana to log in again although its session lives.
        login = await http.get(started.headers["location"])
        page = await http.get(urljoin(str(login.url), login.headers["location"]))
        assert 'name="login"' in page.text
        answer = await http.get(await at_provider(http, federated, started, "dana"))
        assert answer.status_code == 303
        assert answer.headers["location"] == "/admin?notice=signed_in_again"
    records = [r for r in await federated.rows(auth_audit) if r.type == "sign_in"]
    assert len(records) == 2
