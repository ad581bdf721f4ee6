"""The refusals of the code and refresh grants' PostgreSQL path, against a real ``bastion
serve`` process on 127.0.0.1 (its own interpreter, pool and event loop, nothing shared with
the test but the database).

On PostgreSQL a redemption or a rotation is one read of the grant, then one autocommit
statement that writes everything only if the code or token was still unspent. Each refusal
is pinned as a client sees it (status, exact RFC 6749 §5.2 body, no-store headers), and the
grant tables are counted before and after: a refusal writes no family, refresh token or
access token row. The clients are made by an operator (not self-registered, whose first use
goes through a transaction), so every request here takes that path.

OAuth 2.1 §4.1.3 and §4.3.1, RFC 6749 §4.1.2 and §6, RFC 7636 §4.6, RFC 8707 §2.2,
RFC 9700 §4.2.4 and §4.14.2.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.authserver import admin
from bastion.store.database import Database
from bastion.store.schema import authorization_codes, refresh_tokens, token_families
from bastion.tokens import secrets as opaque
from tests.access.live import REDIRECT_URI, Deployment, SignIn, deployed, sign_in
from tests.authserver._tokens import confidential_client, introspect, row_counts
from tests.authserver.test_token_endpoint_live import refusal
from tests.support.flow import add_user

OTHER_REDIRECT = "http://127.0.0.1:53682/other"
RACERS = 12
TIMEOUT = 30.0
SPENT_CODE = "the authorization code was already used; tokens issued with it have been revoked"
REUSED = (
    "the refresh token was already used; every token of this grant has been revoked. "
    "Authorize again"
)
REVOKED = "the refresh token has been revoked"


@pytest.fixture
def deployment(backend: dict[str, Any], tmp_path: Path, pg: Database) -> Iterator[Deployment]:
    """``bastion serve`` in its own process; no reuse window, so any reuse is reuse."""
    with deployed(backend, tmp_path, tokens={"refresh_reuse_window": 0}) as running:
        yield running


@pytest.fixture
async def http(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    await add_user(deployment.settings, "alice")
    async with httpx.AsyncClient(
        base_url=deployment.issuer,
        trust_env=False,
        timeout=TIMEOUT,
        limits=httpx.Limits(max_connections=RACERS * 2, max_keepalive_connections=RACERS * 2),
    ) as client:
        yield client


async def public_client(deployment: Deployment, *redirect_uris: str) -> str:
    """A public client made by an operator, for codes and refresh tokens."""
    made = await admin.add_client(
        deployment.settings,
        client_id=None,
        name="Operator-made public client",
        redirect_uris=list(redirect_uris or [REDIRECT_URI]),
        confidential=False,
        grant_types=["authorization_code", "refresh_token"],
        scope=None,
    )
    return made.client.client_id


async def signed_in(
    http: httpx.AsyncClient, deployment: Deployment, client_id: str, scope: str = "mcp:tools"
) -> SignIn:
    done = await sign_in(
        http, client_id, deployment.resource("notes"), username="alice", scope=scope
    )
    assert done.page is None and "code" in done.params, done
    return done


def redemption(client_id: str, done: SignIn, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": done.params["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": done.verifier,
        "client_id": client_id,
        **extra,
    }


async def token(http: httpx.AsyncClient, form: dict[str, str]) -> httpx.Response:
    return await http.post("/token", data=form)


async def refreshed(
    http: httpx.AsyncClient, client_id: str, refresh_token: str, **extra: str
) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return await token(http, {**form, **extra})


async def redeemed(
    http: httpx.AsyncClient, deployment: Deployment, client_id: str, scope: str = "mcp:tools"
) -> dict[str, Any]:
    done = await signed_in(http, deployment, client_id, scope)
    response = await token(http, redemption(client_id, done))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def racing(deployment: Deployment, form: dict[str, str]) -> list[httpx.Response]:
    """RACERS identical token requests in flight together, each over a connection of its own
    (opened beforehand, so that the requests themselves overlap)."""
    clients = [
        httpx.AsyncClient(base_url=deployment.issuer, trust_env=False, timeout=TIMEOUT)
        for _ in range(RACERS)
    ]
    try:
        for client in clients:
            assert (await client.get("/.well-known/oauth-authorization-server")).status_code == 200
        sent = asyncio.gather(*(token(client, form) for client in clients))
        return list(await asyncio.wait_for(sent, TIMEOUT))
    finally:
        for client in clients:
            await client.aclose()


async def family_of_code(db: Database, code: str) -> tuple[str, int | None]:
    """The family id a code names and when it was consumed."""
    query = sa.select(authorization_codes.c.family_id, authorization_codes.c.consumed_at).where(
        authorization_codes.c.code_hash == opaque.digest(code)
    )
    async with db.connect() as conn:
        family_id, consumed_at = (await conn.execute(query)).one()
    return str(family_id), consumed_at


async def family_of_refresh(db: Database, refresh_token: str) -> str:
    query = sa.select(refresh_tokens.c.family_id).where(
        refresh_tokens.c.token_hash == opaque.digest(refresh_token)
    )
    async with db.connect() as conn:
        return str((await conn.execute(query)).scalar_one())


async def family_state(db: Database, family_id: str) -> tuple[int | None, int]:
    """When the family was revoked (None: live) and how many refresh tokens it holds."""
    revoked = sa.select(token_families.c.revoked_at).where(token_families.c.id == family_id)
    tokens = sa.select(sa.func.count()).where(refresh_tokens.c.family_id == family_id)
    async with db.connect() as conn:
        revoked_at = (await conn.execute(revoked)).scalar_one()
        count = int((await conn.execute(tokens)).scalar_one())
    return revoked_at, count


async def families_of_code(db: Database, code: str) -> int:
    family_id, _ = await family_of_code(db, code)
    query = sa.select(sa.func.count()).where(token_families.c.id == family_id)
    async with db.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


# The code grant: who must not get tokens.


async def test_a08_a_spent_code_is_refused_and_revokes_every_token_it_gave(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """RFC 6749 §4.1.2, OAuth 2.1 §4.1.3, RFC 9700 §4.2.4: the second redemption of a code is
    invalid_grant, and the family the first one created is revoked: its refresh token is
    refused and its access token is inactive. The replay writes no token row."""
    client_id = await public_client(deployment)
    resource_server = await confidential_client(deployment.settings, introspects=["*"])
    done = await signed_in(http, deployment, client_id)
    first = await token(http, redemption(client_id, done))
    assert first.status_code == 200, first.text
    tokens = first.json()
    before = await row_counts(deployment.settings)

    again = await token(http, redemption(client_id, done))
    refusal(again, 400, "invalid_grant", SPENT_CODE)

    assert await row_counts(deployment.settings) == before
    family_id, _ = await family_of_code(pg, done.params["code"])
    revoked_at, count = await family_state(pg, family_id)
    assert revoked_at is not None and count == 1
    refused = await refreshed(http, client_id, tokens["refresh_token"])
    refusal(refused, 400, "invalid_grant", REVOKED)
    assert await introspect(http, resource_server, tokens["access_token"]) == {"active": False}
    assert await row_counts(deployment.settings) == before


async def test_an_expired_code_is_invalid_grant_and_stores_nothing(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """RFC 6749 §4.1.2 and §5.2: a code past its lifetime is invalid_grant. Its row is made to
    have expired (the server's clock is its own; code_ttl is at least 10 s); the refusal
    neither spends it nor stores a family."""
    client_id = await public_client(deployment)
    done = await signed_in(http, deployment, client_id)
    async with pg.statements() as conn:
        await conn.execute(
            sa.update(authorization_codes)
            .where(authorization_codes.c.code_hash == opaque.digest(done.params["code"]))
            .values(expires_at=int(time.time()) - 1)
        )
    before = await row_counts(deployment.settings)

    response = await token(http, redemption(client_id, done))
    refusal(response, 400, "invalid_grant", "the authorization code has expired")

    assert await row_counts(deployment.settings) == before
    _, consumed_at = await family_of_code(pg, done.params["code"])
    assert consumed_at is None
    assert await families_of_code(pg, done.params["code"]) == 0


async def test_a_code_presented_by_another_client_is_invalid_grant_and_issues_nothing(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """OAuth 2.1 §4.1.3: the code must have been issued to the client redeeming it. The thief
    gets invalid_grant, no family is stored, and the code is spent: the rightful client's
    later attempt is a replay (nothing was issued, so nothing is left to revoke)."""
    client_id = await public_client(deployment)
    thief = await public_client(deployment)
    done = await signed_in(http, deployment, client_id)
    before = await row_counts(deployment.settings)

    stolen = await token(http, redemption(thief, done))
    refusal(stolen, 400, "invalid_grant", "the authorization code was issued to another client")

    assert await row_counts(deployment.settings) == before
    assert await families_of_code(pg, done.params["code"]) == 0
    late = await token(http, redemption(client_id, done))
    refusal(late, 400, "invalid_grant", SPENT_CODE)
    assert await row_counts(deployment.settings) == before


@pytest.mark.parametrize(
    ("change", "description"),
    [
        pytest.param(
            {"code_verifier": "A" * 43},
            "code_verifier does not match the code_challenge",
            id="pkce-verifier",
        ),
        pytest.param(
            {"redirect_uri": OTHER_REDIRECT},
            "redirect_uri does not match the one used in the authorization request",
            id="redirect-uri",
        ),
    ],
)
async def test_a08_a07_a_code_redeemed_with_other_proof_is_invalid_grant_and_issues_nothing(
    deployment: Deployment,
    http: httpx.AsyncClient,
    pg: Database,
    change: dict[str, str],
    description: str,
) -> None:
    """RFC 7636 §4.6 (the verifier's S256 hash must be the challenge) and OAuth 2.1 §4.1.3
    (redirect_uri must be the one authorized, here another registered one): invalid_grant;
    no family is stored and the code cannot be tried again."""
    client_id = await public_client(deployment, REDIRECT_URI, OTHER_REDIRECT)
    done = await signed_in(http, deployment, client_id)
    before = await row_counts(deployment.settings)

    response = await token(http, redemption(client_id, done, **change))
    refusal(response, 400, "invalid_grant", description)

    assert await row_counts(deployment.settings) == before
    assert await families_of_code(pg, done.params["code"]) == 0
    retry = await token(http, redemption(client_id, done))
    refusal(retry, 400, "invalid_grant", SPENT_CODE)
    assert await row_counts(deployment.settings) == before


async def test_a_code_redeemed_for_another_resource_is_invalid_target_and_issues_nothing(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """RFC 8707 §2.2: the token request's resource must be the one the grant covers; another
    resource of the same server is invalid_target, and nothing is issued."""
    client_id = await public_client(deployment)
    done = await signed_in(http, deployment, client_id)
    before = await row_counts(deployment.settings)

    ledger = deployment.resource("ledger")
    response = await token(http, redemption(client_id, done, resource=ledger))
    refusal(response, 400, "invalid_target", "resource differs from the one that was authorized")

    assert await row_counts(deployment.settings) == before
    assert await families_of_code(pg, done.params["code"]) == 0


async def test_a08_racing_redemptions_of_one_code_over_separate_connections_give_one_token(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """OAuth 2.1 §4.1.3: RACERS redemptions of one code, each on a connection of its own, in
    flight together: exactly one 200; every other answer is the replay refusal; one family
    with one refresh token exists, revoked by the replays (RFC 9700 §4.2.4)."""
    client_id = await public_client(deployment)
    done = await signed_in(http, deployment, client_id)
    before = await row_counts(deployment.settings)
    answers = await racing(deployment, redemption(client_id, done))

    assert Counter(a.status_code for a in answers) == {200: 1, 400: RACERS - 1}
    for answer in answers:
        if answer.status_code == 400:
            refusal(answer, 400, "invalid_grant", SPENT_CODE)
    after = await row_counts(deployment.settings)
    grew = {name: after[name] - before[name] for name in after}
    assert grew == {
        "authorization_codes": 0,
        "token_families": 1,
        "refresh_tokens": 1,
        "family_access_tokens": 1,
    }
    family_id, consumed_at = await family_of_code(pg, done.params["code"])
    revoked_at, count = await family_state(pg, family_id)
    assert consumed_at is not None and revoked_at is not None and count == 1


# The refresh grant: who must not get tokens.


async def test_a06_a_reused_refresh_token_is_refused_and_revokes_the_family(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """OAuth 2.1 §4.3.1, RFC 9700 §4.14.2: a rotated refresh token presented again (no reuse
    window here) is invalid_grant and the family is revoked: its newest refresh token is
    refused too. The reuse and what follows write no refresh or access token row."""
    client_id = await public_client(deployment)
    tokens = await redeemed(http, deployment, client_id)
    rotated = await refreshed(http, client_id, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newest = rotated.json()["refresh_token"]
    before = await row_counts(deployment.settings)

    reused = await refreshed(http, client_id, tokens["refresh_token"])
    refusal(reused, 400, "invalid_grant", REUSED)
    following = await refreshed(http, client_id, newest)
    refusal(following, 400, "invalid_grant", REVOKED)

    assert await row_counts(deployment.settings) == before
    revoked_at, count = await family_state(pg, await family_of_refresh(pg, newest))
    assert revoked_at is not None and count == 2


async def test_an_unknown_refresh_token_is_invalid_grant_and_writes_nothing(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """RFC 6749 §5.2: a refresh token the server never issued is invalid_grant."""
    client_id = await public_client(deployment)
    await redeemed(http, deployment, client_id)
    before = await row_counts(deployment.settings)

    response = await refreshed(http, client_id, opaque.new_token())
    refusal(response, 400, "invalid_grant", "the refresh token is not valid")

    assert await row_counts(deployment.settings) == before


async def test_a_refresh_token_of_a_revoked_family_is_invalid_grant_and_rotates_nothing(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """RFC 7009 §2.1: revoking a refresh token ends its grant; the unspent token is then
    invalid_grant, and no successor is stored."""
    client_id = await public_client(deployment)
    tokens = await redeemed(http, deployment, client_id)
    revoked = await http.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200, revoked.text
    before = await row_counts(deployment.settings)

    response = await refreshed(http, client_id, tokens["refresh_token"])
    refusal(response, 400, "invalid_grant", REVOKED)

    assert await row_counts(deployment.settings) == before
    revoked_at, count = await family_state(pg, await family_of_refresh(pg, tokens["refresh_token"]))
    assert revoked_at is not None and count == 1


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        pytest.param(
            {"scope": "mcp:tools notes:write"},
            "invalid_scope",
            "scope notes:write was not granted; authorize again to get it",
            id="wider-scope",
        ),
        pytest.param(
            {"resource": "ledger"},
            "invalid_target",
            "resource differs from the one that was authorized",
            id="other-resource",
        ),
    ],
)
async def test_a06_a_refresh_beyond_the_grant_is_refused_and_does_not_spend_the_token(
    deployment: Deployment,
    http: httpx.AsyncClient,
    pg: Database,
    change: dict[str, str],
    error: str,
    description: str,
) -> None:
    """RFC 6749 §6 (no scope beyond the one granted: invalid_scope) and RFC 8707 §2.2 (the
    grant's resource only: invalid_target). The refusal stores no successor and leaves the
    token unspent: the corrected retry rotates it (RFC 9700 §4.14.2 fires on real reuse
    only)."""
    client_id = await public_client(deployment)
    tokens = await redeemed(http, deployment, client_id)
    if "resource" in change:  # a resource of the server, by name
        change = {"resource": deployment.resource(change["resource"])}
    before = await row_counts(deployment.settings)

    response = await refreshed(http, client_id, tokens["refresh_token"], **change)
    refusal(response, 400, error, description)

    assert await row_counts(deployment.settings) == before
    family_id = await family_of_refresh(pg, tokens["refresh_token"])
    assert await family_state(pg, family_id) == (None, 1)
    retry = await refreshed(http, client_id, tokens["refresh_token"])
    assert retry.status_code == 200, retry.text
    assert retry.json()["scope"] == "mcp:tools"
    assert await family_state(pg, family_id) == (None, 2)


async def test_a06_racing_rotations_of_one_refresh_token_give_one_successor(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """OAuth 2.1 §4.3.1: RACERS rotations of one refresh token over separate connections, no
    reuse window: exactly one 200 and one successor row; the others are reuse, which revokes
    the family."""
    client_id = await public_client(deployment)
    tokens = await redeemed(http, deployment, client_id)
    family_id = await family_of_refresh(pg, tokens["refresh_token"])
    form = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": client_id,
    }
    answers = await racing(deployment, form)

    assert Counter(a.status_code for a in answers) == {200: 1, 400: RACERS - 1}
    for answer in answers:
        if answer.status_code == 400:
            # Reuse found the token spent, or (later) its family revoked by another reuse.
            described = answer.json().get("error_description")
            refusal(answer, 400, "invalid_grant", REVOKED if described == REVOKED else REUSED)
    revoked_at, count = await family_state(pg, family_id)
    assert revoked_at is not None and count == 2


async def test_a06_a_refresh_after_access_was_closed_to_a_group_is_refused_among_machine_rules(
    deployment: Deployment, http: httpx.AsyncClient, pg: Database
) -> None:
    """The grant's read brings only the rules that decide for people (machine clients' rules
    are left out of it): a rule closing the resource to a group alice is not in, written
    straight into the database (as another process or SQL by hand would) among many machine
    clients' rules, ends her grant at the next refresh, with the exact refusal, nothing
    rotated."""
    from bastion.access.rules import AccessRule
    from bastion.store import access

    client_id = await public_client(deployment)
    tokens = await redeemed(http, deployment, client_id)
    resource = deployment.resource("notes")
    now = int(time.time())
    async with pg.transaction() as conn:
        await access.put_rule(conn, AccessRule(resource, "group:staff", ("mcp:tools",)), now)
        for n in range(200):
            await access.put_rule(conn, AccessRule("*", f"client:robot-{n}"), now)
            await access.put_rule(conn, AccessRule(resource, f"client:arm-{n}"), now)
    before = await row_counts(deployment.settings)

    response = await refreshed(http, client_id, tokens["refresh_token"])
    refusal(
        response,
        400,
        "invalid_grant",
        f"alice may no longer use {resource}; the grant has been revoked",
    )
    assert (await row_counts(deployment.settings))["refresh_tokens"] == before["refresh_tokens"]
