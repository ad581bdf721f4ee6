"""The OpenID Connect callback against a provider bastion does not control the code of: its
checks, and what happens when one fails (issue 6, "Done when" 3).

The provider is tests/federation/oidc_standin.py, told to misbehave in one way per test. Every
failure must end on a page that names the provider and says what went wrong, with the right
status, and must leave nothing behind: no user, no linked account, no session, no pending
upstream sign-in. OpenID Connect Core 1.0 §3.1.3.7 (ID Token validation), RFC 6749 §4.1.2.1
(error responses), RFC 9207 (``iss``), RFC 6749 §10.12 (CSRF via ``state``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.config import Settings
from bastion.store.database import Database
from bastion.store.schema import authorization_requests, federation_states, linked_accounts, users
from tests.federation.oidc_standin import StandIn, standin
from tests.federation.support import (
    Bastion,
    begin,
    click_provider,
    consent_and_redeem,
    follow_to_callback,
    new_issuer,
    nothing_created,
    page_text,
    rows,
    running_bastion,
    sign_in_upstream,
)
from tests.support.jwt import claims_of

NAME = "corp"
LABEL = "Corp SSO"


def upstream(provider: StandIn, **overrides: Any) -> dict[str, Any]:
    return {
        "name": NAME,
        "kind": "oidc",
        "display_name": LABEL,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "allow_private_addresses": True,
        **overrides,
    }


@asynccontextmanager
async def federated(
    make_settings: Callable[..., Settings], fault: str | None = None, **overrides: Any
) -> AsyncIterator[tuple[Bastion, StandIn]]:
    port, issuer = new_issuer()
    async with (
        standin(redirect_uri=f"{issuer}/login/{NAME}/callback", fault=fault) as op,
        running_bastion(make_settings, port, [upstream(op, **overrides)]) as bastion,
    ):
        yield bastion, op


async def test_r09_federated_user_consents_per_client_and_tokens_carry_mapped_claims_only(
    make_settings: Callable[..., Settings],
) -> None:
    """OpenID Connect Core §3.1 (code flow, PKCE, nonce) then RFC 9068 §2.2.3.1: the user is
    created on first sign-in, linked by issuer and subject; bastion, a proxy with one static
    client id at the provider, still shows its own consent page to each MCP client (R09); its
    access token carries the mapped e-mail, name and groups, also after a refresh; nothing of
    the upstream's tokens reaches the client."""
    async with federated(make_settings, store_refresh_token=True) as (bastion, op):
        async with httpx.AsyncClient() as http:
            pending, callback = await sign_in_upstream(http, bastion, NAME)
            tokens = await consent_and_redeem(http, bastion, pending, callback)
            refreshed = (
                await http.post(
                    f"{bastion.issuer}/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": tokens["refresh_token"],
                        "client_id": pending.client_id,
                    },
                )
            ).json()
        sent = op.authorization_requests[-1]
        assert sent["code_challenge_method"] == "S256"
        assert set(sent["scope"].split()) == {"openid", "email", "profile", "offline_access"}
        assert sent["nonce"] and sent["state"] and sent["state"] != pending.state
        assert sent["redirect_uri"] == bastion.callback(NAME)
        assert op.token_requests[-1]["code_verifier"]
        [link] = await rows(bastion.settings, linked_accounts)
        [user] = await rows(bastion.settings, users)
    assert (link.issuer, link.subject, link.provider, link.user_id) == (
        op.issuer,
        "user-1",
        NAME,
        user.id,
    )
    assert link.refresh_token_encrypted.startswith("v1.")  # kept, encrypted
    assert "upstream-refresh" not in link.refresh_token_encrypted
    assert user.username == "corp:alice" and user.password_hash is None
    assert (user.email, user.name, user.groups) == (
        "alice@example.com",
        "Alice Example",
        ["engineering", "mcp-users"],
    )
    claims = claims_of(tokens["access_token"])
    assert claims["sub"] == user.id
    assert claims["email"] == "alice@example.com"
    assert claims["name"] == "Alice Example"
    assert claims["groups"] == ["engineering", "mcp-users"]
    assert set(tokens) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert not tokens["refresh_token"].startswith("upstream-refresh")
    assert claims_of(refreshed["access_token"])["groups"] == ["engineering", "mcp-users"]


async def test_second_sign_in_reuses_the_link_and_refreshes_the_groups(
    make_settings: Callable[..., Settings],
) -> None:
    """Accounts are linked by issuer and subject: a second sign-in finds the same user and
    takes e-mail, name and groups afresh from the provider."""
    async with federated(make_settings) as (bastion, op):
        async with httpx.AsyncClient() as http:
            await sign_in_upstream(http, bastion, NAME)
        op.claims["groups"] = ["engineering"]
        op.claims["name"] = "Alice Renamed"
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 303
        [user] = await rows(bastion.settings, users)
        assert len(await rows(bastion.settings, linked_accounts)) == 1
    assert (user.name, user.groups) == ("Alice Renamed", ["engineering"])


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("wrong_key", "invalid signature"),
        ("hs256", "unexpected signature algorithm"),
        ("wrong_nonce", "nonce mismatch"),
        ("wrong_audience", "issued to another application"),
        ("wrong_issuer", "wrong issuer"),
        ("expired", "expired"),
        ("no_id_token", "sent no ID token"),
        ("userinfo_other_sub", "user-info is about someone else"),
    ],
)
async def test_invalid_id_token_or_userinfo_is_refused_and_nothing_is_created(
    make_settings: Callable[..., Settings], fault: str, says: str
) -> None:
    """OpenID Connect Core 1.0 §3.1.3.7 (signature, alg, nonce, aud, iss, exp), §3.1.3.3 (an
    id_token is required) and §5.3.4 (user-info ``sub`` must match): 502, a page naming the
    provider, nothing created."""
    async with federated(make_settings, fault=fault) as (bastion, _):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 502, callback.text
        assert callback.headers["cache-control"] == "no-store"
        text = page_text(callback)
        assert LABEL in text
        assert says in text
        await nothing_created(bastion.settings)


async def test_upstream_access_denied_shows_a_page_and_the_request_can_be_retried(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6749 §4.1.2.1: the provider's error=access_denied ends on a 403 page naming the
    provider and its description, with a way back to the log-in page; the MCP client's pending
    request is still there; nothing is created."""
    async with federated(make_settings, fault="deny") as (bastion, _):
        async with httpx.AsyncClient() as http:
            pending, callback = await sign_in_upstream(http, bastion, NAME)
            assert callback.status_code == 403
            text = page_text(callback)
            assert f"{LABEL} did not let you sign in (access was denied)" in text
            assert "End-User aborted interaction" in text
            assert f'href="{pending.interaction}"' in callback.text
            again = await http.get(pending.interaction)
            assert again.status_code == 200 and "Continue with Corp SSO" in again.text
        await nothing_created(bastion.settings)


async def test_state_that_bastion_never_issued_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6749 §10.12: a callback whose state is unknown is refused (400) before anything is
    sent to the provider; so is one without state."""
    async with federated(make_settings) as (bastion, op):
        async with httpx.AsyncClient() as http:
            await begin(http, bastion)
            forged = await http.get(bastion.callback(NAME), params={"code": "x", "state": "forged"})
            missing = await http.get(bastion.callback(NAME), params={"code": "x"})
        for response in (forged, missing):
            assert response.status_code == 400
            assert "Sign-in could not be verified" in page_text(response)
        assert op.token_requests == []
        await nothing_created(bastion.settings)


async def test_state_from_another_browser_is_refused_and_spent(
    make_settings: Callable[..., Settings],
) -> None:
    """The state is bound to the browser that started the sign-in (a cookie): the provider's
    answer replayed in another browser is refused, the code is never redeemed, and the state is
    spent (the rightful browser cannot use it afterwards either)."""
    async with federated(make_settings) as (bastion, op):
        async with httpx.AsyncClient() as victim, httpx.AsyncClient() as attacker:
            pending = await begin(victim, bastion)
            redirect = await click_provider(victim, pending, NAME)
            upstream = await victim.get(redirect.headers["location"])
            answer = upstream.headers["location"]
            stolen = await attacker.get(answer)
            assert stolen.status_code == 400
            assert "started in another browser" in page_text(stolen)
            replay = await victim.get(answer)
            assert replay.status_code == 400
        assert op.token_requests == []
        await nothing_created(bastion.settings)


async def test_state_of_one_provider_is_refused_at_another_providers_callback(
    make_settings: Callable[..., Settings],
) -> None:
    """A state is valid only at the callback of the provider it was sent to."""
    port, issuer = new_issuer()
    async with (
        standin(redirect_uri=f"{issuer}/login/{NAME}/callback") as op,
        standin(redirect_uri=f"{issuer}/login/other/callback") as other,
        running_bastion(
            make_settings,
            port,
            [upstream(op), upstream(other, name="other", display_name="Other")],
        ) as bastion,
        httpx.AsyncClient() as http,
    ):
        pending = await begin(http, bastion)
        redirect = await click_provider(http, pending, NAME)
        answered = await http.get(redirect.headers["location"])
        moved = answered.headers["location"].replace(f"/login/{NAME}/", "/login/other/")
        response = await http.get(moved)
        assert response.status_code == 400
        assert op.token_requests == [] and other.token_requests == []


async def test_rfc9207_iss_of_another_issuer_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 9207 §2.4: the provider advertises the iss parameter; an answer naming another
    issuer may come from a mix-up: refused, the code is not redeemed."""
    async with federated(make_settings, fault="wrong_iss_param") as (bastion, op):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 400
        assert "did not come from Corp SSO" in page_text(callback)
        assert op.token_requests == []
        await nothing_created(bastion.settings)


async def test_disallowed_email_domain_is_refused_and_nothing_is_created(
    make_settings: Callable[..., Settings],
) -> None:
    """Allow rules by verified e-mail domain: another domain gets a 403 page saying so."""
    async with federated(make_settings, allow={"email_domains": ["corp.example"]}) as (bastion, _):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 403
        assert "e-mail addresses at example.com may not sign in here" in page_text(callback)
        await nothing_created(bastion.settings)


async def test_unverified_email_never_satisfies_a_domain_rule(
    make_settings: Callable[..., Settings],
) -> None:
    """An e-mail the provider does not say is verified is ignored: a domain rule refuses."""
    async with federated(make_settings, allow={"email_domains": ["example.com"]}) as (bastion, op):
        op.claims["email_verified"] = False
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 403
        assert "did not confirm a verified e-mail address" in page_text(callback)
        await nothing_created(bastion.settings)


async def test_group_rule_admits_members_only(make_settings: Callable[..., Settings]) -> None:
    """Allow rules by group: a member of one listed group may sign in, others may not."""
    async with federated(make_settings, allow={"groups": ["mcp-users", "admins"]}) as (bastion, op):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 303
        op.claims["sub"], op.claims["groups"] = "user-2", ["sales"]
        async with httpx.AsyncClient() as http:
            _, refused = await sign_in_upstream(http, bastion, NAME)
        assert refused.status_code == 403
        assert "not in a group allowed" in page_text(refused)
        assert len(await rows(bastion.settings, users)) == 1


async def test_unreachable_provider_shows_a_page_naming_it_and_what_to_check(
    make_settings: Callable[..., Settings],
) -> None:
    """The provider's discovery document cannot be fetched: 502, a page naming the provider and
    the setting to check; no pending sign-in is stored."""
    port, _ = new_issuer()
    closed, _ = new_issuer()  # a port nothing listens on
    config = {
        "name": NAME,
        "kind": "oidc",
        "display_name": LABEL,
        "issuer": f"http://127.0.0.1:{closed}",
        "client_id": "bastion",
        "client_secret": "secret",
        "allow_private_addresses": True,
    }
    async with running_bastion(make_settings, port, [config]) as bastion:
        async with httpx.AsyncClient() as http:
            pending = await begin(http, bastion)
            response = await click_provider(http, pending, NAME)
        assert response.status_code == 502
        text = page_text(response)
        assert "Identity provider unreachable" in text
        assert f"bastion could not reach {LABEL}" in text
        assert f"127.0.0.1:{closed}" in text and "upstreams[corp]" in text
        await nothing_created(bastion.settings)


async def test_provider_on_loopback_is_refused_without_allow_private_addresses(
    make_settings: Callable[..., Settings],
) -> None:
    """The SSRF guard (bastion.net.ssrf) covers provider URLs too: a loopback provider is
    refused unless the operator allows it for that provider, and the page says how."""
    async with federated(make_settings, allow_private_addresses=False) as (bastion, op):
        async with httpx.AsyncClient() as http:
            pending = await begin(http, bastion)
            response = await click_provider(http, pending, NAME)
        assert response.status_code == 502
        assert "allow_private_addresses" in page_text(response)
        assert op.authorization_requests == []


async def test_provider_failing_at_the_token_endpoint_shows_a_page(
    make_settings: Callable[..., Settings],
) -> None:
    """The provider answers the code exchange with 500: 502 page, nothing created."""
    async with federated(make_settings, fault="server_error") as (bastion, _):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 502
        assert f"{LABEL} refused to complete the sign-in (server_error)" in page_text(callback)
        await nothing_created(bastion.settings)


async def test_wrong_client_secret_page_tells_the_operator_what_to_check(
    make_settings: Callable[..., Settings],
) -> None:
    """invalid_client at the token endpoint (RFC 6749 §5.2): the page names the settings."""
    async with federated(make_settings, client_secret="not-the-secret") as (bastion, _):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 502
        text = page_text(callback)
        assert "(invalid_client)" in text
        assert "upstreams[corp].client_id, client_secret and token_endpoint_auth_method" in text
        await nothing_created(bastion.settings)


async def test_start_needs_the_csrf_token_and_a_live_request(
    make_settings: Callable[..., Settings],
) -> None:
    """The provider button is a CSRF-protected form: without the token 403; for an unknown
    request the page says it expired; an unknown provider is 404."""
    async with federated(make_settings) as (bastion, op):
        async with httpx.AsyncClient() as http:
            pending = await begin(http, bastion)
            await http.get(pending.interaction)  # sets the CSRF cookie
            no_csrf = await http.post(
                f"{pending.interaction}/upstream/{NAME}", data={"csrf": "wrong"}
            )
            assert no_csrf.status_code == 403
            csrf = http.cookies["bastion-csrf"]
            gone = await http.post(
                f"{bastion.issuer}/interaction/nope/upstream/{NAME}", data={"csrf": csrf}
            )
            assert gone.status_code == 400 and "Sign-in expired" in page_text(gone)
            unknown = await http.post(f"{pending.interaction}/upstream/nope", data={"csrf": csrf})
            assert unknown.status_code == 404
        assert op.authorization_requests == []
        assert await rows(bastion.settings, federation_states) == []


async def test_start_with_a_non_ascii_csrf_token_is_403_not_a_server_error(
    make_settings: Callable[..., Settings],
) -> None:
    """Found by the fuzzer (tests/fuzz) on the log-in form; the provider button had the same
    comparison: a CSRF token with characters beyond ASCII is a mismatch, not a 500."""
    async with federated(make_settings) as (bastion, op):
        async with httpx.AsyncClient() as http:
            pending = await begin(http, bastion)
            await http.get(pending.interaction)  # sets the CSRF cookie
            response = await http.post(
                f"{pending.interaction}/upstream/{NAME}", data={"csrf": "\u00e9t\u00e9"}
            )
        assert response.status_code == 403
        assert op.authorization_requests == []


async def test_callback_after_the_request_expired_creates_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    """The pending authorization request was finished meanwhile (e.g. denied in another tab):
    the callback shows the expired page and does not redeem the code."""
    async with federated(make_settings) as (bastion, op):
        async with httpx.AsyncClient() as http:
            pending = await begin(http, bastion)
            redirect = await click_provider(http, pending, NAME)
            assert len(await rows(bastion.settings, federation_states)) == 1
            db = Database(
                bastion.settings.effective_database_url, schema=bastion.settings.database_schema
            )
            async with db.transaction() as conn:
                await conn.execute(sa.delete(authorization_requests))
            await db.dispose()
            callback = await follow_to_callback(http, redirect)
        assert callback.status_code == 400
        assert "Sign-in expired" in page_text(callback)
        assert op.token_requests == []
        await nothing_created(bastion.settings)


async def test_login_page_offers_only_providers_when_local_users_are_off(
    make_settings: Callable[..., Settings],
) -> None:
    """login.local_users = false: the page shows the provider buttons and no password form,
    and the password endpoint refuses."""
    port, issuer = new_issuer()
    async with (
        standin(redirect_uri=f"{issuer}/login/{NAME}/callback") as op,
        running_bastion(
            make_settings, port, [upstream(op)], login={"local_users": False}
        ) as bastion,
        httpx.AsyncClient() as http,
    ):
        pending = await begin(http, bastion)
        page = await http.get(pending.interaction)
        assert page.status_code == 200
        assert "Continue with Corp SSO" in page.text
        assert 'name="password"' not in page.text
        password = await http.post(
            f"{pending.interaction}/login",
            data={"csrf": http.cookies["bastion-csrf"], "username": "a", "password": "b"},
        )
        assert password.status_code == 401
