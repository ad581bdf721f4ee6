"""Workload identity federation: a workload's platform token as a jwt-bearer grant and as its
client authentication, with no secret (RFC 7523 §2.1, §3, §3.1; SEP-1933; checklist X07), on
SQLite and PostgreSQL.

The replay test at the end runs two ``bastion serve`` processes on one PostgreSQL schema.

Two stand-in platforms serve discovery and keys on 127.0.0.1 and sign with real P-256 keys: a
Kubernetes-like cluster (service-account subjects, only what verifying tokens needs in its
discovery document; tokens reused until they near expiry, so its rule has
``single_use = false``) and a GitHub-Actions-like issuer (``repo:…`` subjects, a
``repository_owner`` claim, a configured ``jwks_uri``, single use). Refusals first.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.authserver import admin
from bastion.config import ResourceSettings, Settings, WorkloadIdentityRule
from bastion.oauth.token_request import JWT_BEARER
from bastion.store.database import Database
from bastion.store.schema import auth_audit, clients
from tests.authserver._issuers import Issuer, jti, new_key, served, unsigned
from tests.authserver._tokens import Confidential, FakeClock, assert_error, confidential_client
from tests.conftest import ISSUER, POSTGRES_URL
from tests.scaleout.processes import free_ports, require_postgres, serving
from tests.support.asgi import running
from tests.support.jwt import claims_of

DEMO = "http://localhost:9001/mcp"
FILES = "http://localhost:9002/files"
RESOURCES = [
    ResourceSettings(uri=DEMO, name="demo", scopes=["mcp:tools", "mcp:prompts"]),
    ResourceSettings(uri=FILES, name="files", scopes=["files:read"]),
]


def rules(k8s: Issuer, gh: Issuer) -> list[WorkloadIdentityRule]:
    return [
        WorkloadIdentityRule(
            name="ci-cluster",
            issuer=k8s.url,
            subject="system:serviceaccount:ci:*",
            client="ci-deployer",
            single_use=False,
            allow_private_addresses=True,
        ),
        WorkloadIdentityRule(
            name="release",
            issuer=gh.url,
            jwks_uri=f"{gh.url}/jwks",
            audience="https://bastion.example.com/github",
            subject="repo:acme/app:ref:refs/heads/main",
            claims={"repository_owner": "acme"},
            client="gh-release",
            scopes=["mcp:tools"],
            allow_private_addresses=True,
        ),
        WorkloadIdentityRule(
            name="keyed",
            issuer=gh.url,
            jwks_uri=f"{gh.url}/jwks",
            audience="https://bastion.example.com/github",
            subject="repo:acme/tools:*",
            client="keyed-bot",
            allow_private_addresses=True,
        ),
    ]


@dataclass
class World:
    settings: Settings
    http: httpx.AsyncClient
    clock: FakeClock
    k8s: Issuer
    gh: Issuer
    keyed: Confidential

    def k8s_token(self, **claims: Any) -> str:
        """A projected service-account token of ci/deployer, for bastion's issuer."""
        values = {
            "iss": self.k8s.url,
            "sub": "system:serviceaccount:ci:deployer",
            "aud": [ISSUER],
            "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "deployer"}},
            "jti": jti(),
            **self.k8s.times(3600, now=self.clock.now),
            **claims,
        }
        return self.k8s.sign({k: v for k, v in values.items() if v is not None})

    def gh_token(self, typ: str | None = "JWT", **claims: Any) -> str:
        """A GitHub Actions OIDC token of acme/app's main branch."""
        values = {
            "iss": self.gh.url,
            "sub": "repo:acme/app:ref:refs/heads/main",
            "aud": "https://bastion.example.com/github",
            "repository": "acme/app",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "jti": jti(),
            **self.gh.times(300, now=self.clock.now),
            **claims,
        }
        return self.gh.sign({k: v for k, v in values.items() if v is not None}, typ=typ)

    async def token(
        self, assertion: str, headers: dict[str, str] | None = None, **extra: str
    ) -> httpx.Response:
        data = {"grant_type": JWT_BEARER, "assertion": assertion, "resource": DEMO, **extra}
        data = {k: v for k, v in data.items() if v != ""}
        return await self.http.post("/token", data=data, headers=headers or {})


async def machine(settings: Settings, client_id: str, grant_types: list[str]) -> None:
    """A pre-registered machine client without a secret, allowed at demo."""
    await admin.add_client(
        settings,
        client_id=client_id,
        name=client_id,
        redirect_uris=[],
        confidential=False,
        grant_types=grant_types,
        scope=None,
        resources=["demo"],
    )


@pytest.fixture
async def world(make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    async with (
        served(Issuer(oidc_sign_in=False)) as k8s,
        served(Issuer()) as gh,
    ):
        settings = make_settings(resources=RESOURCES, workload_identities=rules(k8s, gh))
        await machine(settings, "ci-deployer", [JWT_BEARER])
        await machine(settings, "gh-release", [JWT_BEARER])
        keyed = await confidential_client(
            settings, client_id="keyed-bot", grant_types=[JWT_BEARER, "client_credentials"]
        )
        clock = FakeClock()
        async with running(settings, clock=clock) as http:
            yield World(settings, http, clock, k8s, gh, keyed)


async def audit_rows(settings: Settings, kind: str) -> list[Any]:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            query = sa.select(auth_audit).where(auth_audit.c.type == kind)
            return list((await conn.execute(query)).all())
    finally:
        await db.dispose()


# -- who must not get a token ------------------------------------------------------------------


async def test_x07_without_rules_the_grant_is_unsupported(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6749 §5.2: nothing configured, no jwt-bearer grant, and none in the metadata."""
    async with running(make_settings(resources=RESOURCES)) as http:
        response = await http.post("/token", data={"grant_type": JWT_BEARER, "assertion": "a"})
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert_error(response, 400, "unsupported_grant_type")
    assert JWT_BEARER not in metadata["grant_types_supported"]


async def test_x07_token_of_an_unknown_issuer_without_credentials_is_invalid_client(
    world: World,
) -> None:
    """OAuth 2.1 §3.2.1: no client credentials and a token of no configured workload issuer:
    no client is identified -> 401 invalid_client."""
    async with served(Issuer()) as stranger:
        token = stranger.sign(claims_of(world.gh_token()) | {"iss": stranger.url})
        assert_error(await world.token(token), 401, "invalid_client")
    assert_error(await world.token("not-a-jwt"), 401, "invalid_client")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "repo:acme/app:ref:refs/heads/feature"},
        {"repository_owner": "evil-acme"},
        {"repository_owner": None},
        {"sub": "repo:acme/app:pull_request"},
    ],
)
async def test_x07_token_matching_no_rule_is_invalid_client(
    world: World, claims: dict[str, Any]
) -> None:
    """A verified token whose subject or claims no rule matches authenticates no client."""
    response = await world.token(world.gh_token(**claims))
    body = assert_error(response, 401, "invalid_client")
    assert "workload_identities" in body["error_description"]


async def test_x07_subject_pattern_does_not_cross_namespaces(world: World) -> None:
    """``system:serviceaccount:ci:*`` is the ci namespace only."""
    token = world.k8s_token(sub="system:serviceaccount:prod:deployer")
    assert_error(await world.token(token), 401, "invalid_client")


async def test_x07_client_id_sent_must_be_the_rules_client(world: World) -> None:
    """A client_id sent with the token must be the client its rule names."""
    response = await world.token(world.gh_token(), client_id="ci-deployer")
    assert_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "make",
    [
        "unsigned",
        "forged",
        "expired",
        "no_exp",
        "wrong_audience",
        "bastion_issuer_audience",
        "too_long",
        "access_token_typ",
    ],
)
async def test_rfc7523_3_1_bad_token_of_a_configured_issuer_is_invalid_grant(
    world: World, make: str
) -> None:
    """RFC 7523 §3 items 3, 4, 9 and §3.1: invalid_grant for a token of a configured issuer
    that is not valid: unsigned, signed by another key, expired or without exp, for another
    audience (the GitHub rule wants its own, not bastion's issuer), living longer than the
    rule allows, or of another explicit type (RFC 8725 §3.11)."""
    now = world.clock.now
    tokens = {
        "unsigned": lambda: unsigned(claims_of(world.gh_token())),
        "forged": lambda: world.gh.sign(claims_of(world.gh_token()), key=new_key("key-1")),
        "expired": lambda: world.gh_token(exp=now - 120),
        "no_exp": lambda: world.gh_token(exp=None),
        "wrong_audience": lambda: world.gh_token(aud="https://elsewhere.example.com"),
        "bastion_issuer_audience": lambda: world.gh_token(aud=ISSUER),
        "too_long": lambda: world.k8s_token(exp=now + 2 * 86400),
        "access_token_typ": lambda: world.gh_token(typ="at+jwt"),
    }
    assert_error(await world.token(tokens[make]()), 400, "invalid_grant")


async def test_x07_discovery_naming_another_issuer_is_invalid_grant(
    world: World, make_settings: Callable[..., Settings]
) -> None:
    """OpenID Connect Discovery 1.0 §4.3: the keys of an issuer whose discovery document names
    another issuer are not used; the token is refused (invalid_grant) and nothing issued."""
    async with served(Issuer(oidc_sign_in=False, discovery_issuer="https://evil.example")) as bad:
        rule = WorkloadIdentityRule(
            name="liar",
            issuer=bad.url,
            subject="system:serviceaccount:ci:*",
            client="ci-deployer",
            allow_private_addresses=True,
        )
        settings = make_settings(resources=RESOURCES, workload_identities=[rule])
        token = bad.sign(claims_of(world.k8s_token()) | {"iss": bad.url})
        async with running(settings, clock=world.clock) as http:
            response = await http.post(
                "/token", data={"grant_type": JWT_BEARER, "assertion": token, "resource": DEMO}
            )
    body = assert_error(response, 400, "invalid_grant")
    assert "another issuer" in body["error_description"]
    assert bad.jwks_requests == 0


async def test_x07_id_jag_typ_is_not_a_workload_token(world: World) -> None:
    """A token typed as an ID-JAG is never a workload's: it needs an authenticated client."""
    token = world.gh_token(typ="oauth-id-jag+jwt")
    assert_error(await world.token(token), 401, "invalid_client")


async def test_rfc7523_3_replay_of_a_single_use_token_is_invalid_grant(world: World) -> None:
    """RFC 7523 §3 item 7: a single-use rule refuses the same jti twice, and the same token
    twice when it has no jti (the token itself is the key)."""
    token = world.gh_token()
    assert (await world.token(token)).status_code == 200
    body = assert_error(await world.token(token), 400, "invalid_grant")
    assert "already used" in body["error_description"]
    without_jti = world.gh_token(jti=None)
    assert (await world.token(without_jti)).status_code == 200
    assert_error(await world.token(without_jti), 400, "invalid_grant")


async def test_x07_scope_beyond_the_rule_is_invalid_scope(world: World) -> None:
    """The rule allows mcp:tools only."""
    response = await world.token(world.gh_token(), scope="mcp:prompts")
    assert_error(response, 400, "invalid_scope")


async def test_x07_a_refused_request_does_not_spend_the_token(world: World) -> None:
    """A single-use token is spent only by a token issued: a request refused for its scope
    may be sent again, corrected, with the same token."""
    token = world.gh_token()
    assert_error(await world.token(token, scope="mcp:prompts"), 400, "invalid_scope")
    assert (await world.token(token, scope="mcp:tools")).status_code == 200


async def test_x07_resource_without_an_access_rule_is_invalid_target(world: World) -> None:
    """RFC 8707 §2: the client's access rules give it demo only."""
    response = await world.token(world.k8s_token(), resource=FILES)
    assert_error(response, 400, "invalid_target")


async def test_x07_secretless_request_for_a_client_without_the_grant_is_unauthorized_client(
    world: World, make_settings: Callable[..., Settings]
) -> None:
    """RFC 6749 §5.2: the rule's client is not registered for jwt-bearer."""
    settings = make_settings(
        resources=RESOURCES, workload_identities=rules(world.k8s, world.gh)[:1]
    )
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.delete(clients).where(clients.c.client_id == "ci-deployer"))
    finally:
        await db.dispose()
    await confidential_client(settings, client_id="ci-deployer")  # client_credentials only
    async with running(settings, clock=world.clock) as http:
        response = await http.post(
            "/token",
            data={"grant_type": JWT_BEARER, "assertion": world.k8s_token(), "resource": DEMO},
        )
    assert_error(response, 400, "unauthorized_client")


async def test_x07_authenticated_client_with_another_clients_token_is_unauthorized_client(
    world: World,
) -> None:
    """A confidential client that authenticates must present a token of its own rule."""
    response = await world.token(world.gh_token(), headers=world.keyed.authorization)
    assert_error(response, 400, "unauthorized_client")
    assert await audit_rows(world.settings, "workload_token_issued") == []


# -- who may ---------------------------------------------------------------------------------


async def test_x07_kubernetes_token_without_any_secret_gets_the_clients_token(
    world: World,
) -> None:
    """SEP-1933: no client authentication at all; the rule names the client. The token is the
    client's (subject, grant_id), as for client_credentials, and it is audited. The issuer's
    keys come from its discovery document. A reused token is accepted (single_use = false)."""
    token = world.k8s_token()
    for _ in range(2):
        response = await world.token(token)
        assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["aud"]) == ("ci-deployer",) * 2 + (DEMO,)
    assert claims["scope"] == "mcp:prompts mcp:tools"
    [first, _] = await audit_rows(world.settings, "workload_token_issued")
    assert first.client_id == "ci-deployer" and first.grant_id == claims["grant_id"]
    assert first.detail["workload"] == "system:serviceaccount:ci:deployer"
    assert first.detail["rule"] == "ci-cluster"


async def test_x07_github_token_with_client_id_gets_the_rules_scope(world: World) -> None:
    """A client_id may be sent (no secret); the scope is what the rule allows."""
    response = await world.token(world.gh_token(), client_id="gh-release")
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert (claims["sub"], claims["scope"]) == ("gh-release", "mcp:tools")


async def test_x07_confidential_client_may_authenticate_and_present_its_workload_token(
    world: World,
) -> None:
    """A client with credentials may use them too; the token must then match its rule."""
    token = world.gh_token(sub="repo:acme/tools:ref:refs/heads/main")
    response = await world.token(token, headers=world.keyed.authorization)
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["sub"] == "keyed-bot"


async def test_x07_metadata_lists_jwt_bearer(world: World) -> None:
    """RFC 8414 §2: grant_types_supported names the grant once a workload rule exists."""
    metadata = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    assert JWT_BEARER in metadata["grant_types_supported"]


@pytest.mark.postgres
async def test_rfc7523_3_replay_is_refused_by_another_bastion_process(tmp_path: Path) -> None:
    """RFC 7523 §3 item 7 across processes: two ``bastion serve`` on one PostgreSQL schema (as
    behind a load balancer); a single-use workload token redeemed at A is refused at B."""
    require_postgres(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    port_a, port_b = free_ports(2)
    try:
        async with served(Issuer(oidc_sign_in=False)) as k8s:
            environment: dict[str, Any] = {
                "issuer": f"http://127.0.0.1:{port_a}",
                "data_dir": str(tmp_path / "data"),
                "database_url": POSTGRES_URL,
                "database_schema": schema,
                "secret_key": "jwt-bearer-test-secret-key-0123456789abcdef",
                "resources": [{"uri": DEMO, "name": "demo", "scopes": ["mcp:tools"]}],
                "workload_identities": [
                    {
                        "name": "ci-cluster",
                        "issuer": k8s.url,
                        "subject": "system:serviceaccount:ci:*",
                        "client": "ci-deployer",
                        "allow_private_addresses": True,
                    }
                ],
            }
            await machine(Settings(**environment), "ci-deployer", [JWT_BEARER])
            now = FakeClock().now
            token = k8s.sign(
                {
                    "iss": k8s.url,
                    "sub": "system:serviceaccount:ci:deployer",
                    "aud": environment["issuer"],
                    "jti": jti(),
                    **k8s.times(600, now=now),
                }
            )
            form = {"grant_type": JWT_BEARER, "assertion": token, "resource": DEMO}
            with serving(environment, [port_a, port_b]) as (a, b):
                async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
                    first = await http.post(f"{a.url}/token", data=form)
                    again = await http.post(f"{b.url}/token", data=form)
        assert first.status_code == 200, first.text
        body = assert_error(again, 400, "invalid_grant")
        assert "already used" in body["error_description"]
    finally:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
