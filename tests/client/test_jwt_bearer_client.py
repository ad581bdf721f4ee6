"""The client's JWT bearer grant (RFC 7523 §2.1) for workload identity (SEP-1933) and for
enterprise-managed authorization (ID-JAG: RFC 8693 exchange at the IdP, then jwt-bearer),
against real servers on 127.0.0.1. Refusals first: a refused assertion is reported with the
server's code and description and never retried nor replaced by another grant; an IdP refusal
stops before the MCP server's AS; a missing or expired token is not sent at all."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.client import Authorizer
from bastion.client.enterprise import ID_JAG, ID_TOKEN, TOKEN_EXCHANGE
from bastion.client.errors import AssertionUnavailable, TokenEndpointError
from bastion.client.flow import JWT_BEARER
from bastion.client.settings import ClientSettings, EnterpriseIdp, PreRegisteredClient
from bastion.client.storage import MemoryStorage
from bastion.client.workload import read_assertion
from tests.client.dpop_servers import DPoPResource, TokenServer
from tests.client.dpop_servers import EnterpriseIdp as IdpServer
from tests.support.live import serve


def unsigned_jwt(**claims: Any) -> str:
    """A JWT-shaped token (the test servers do not verify it; the client reads only exp)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2ln"


@asynccontextmanager
async def stack(
    server: TokenServer, idp: IdpServer | None = None, *, dpop: bool = False
) -> AsyncIterator[tuple[TokenServer, DPoPResource]]:
    rs = DPoPResource(server, dpop=dpop)
    async with AsyncExitStack() as running:
        server.base = await running.enter_async_context(serve(server.app()))
        rs.base = await running.enter_async_context(serve(rs.app()))
        if idp is not None:
            idp.base = await running.enter_async_context(serve(idp.app()))
        yield server, rs


def workload(server: TokenServer, **source: Any) -> ClientSettings:
    pre = PreRegisteredClient(
        issuer=server.issuer, client_id="ci-deployer", grant_type="jwt-bearer", **source
    )
    return ClientSettings(use_keyring=False, pre_registered=[pre])


# -- workload identity --------------------------------------------------------------------------


async def test_rfc7523_3_1_a_refused_assertion_is_surfaced_once_without_retry(
    tmp_path: Path,
) -> None:
    """invalid_grant with its description reaches the user; exactly one token request, and
    no other grant type is tried (SEP-1933: no retry, no fallback)."""
    token = tmp_path / "token"
    token.write_text("workload.jwt.value\n")
    refusal = {"error": "invalid_grant", "error_description": "audience is not this server"}
    async with (
        stack(TokenServer(refuse=refusal, refresh_tokens=False)) as (server, rs),
        Authorizer(workload(server, assertion_file=token), storage=MemoryStorage()) as auth,
    ):
        with pytest.raises(TokenEndpointError) as caught:
            await auth.login(rs.url)
    assert caught.value.error == "invalid_grant"
    assert "audience is not this server" in str(caught.value)
    assert [s.form["grant_type"] for s in server.seen] == [JWT_BEARER]


async def test_sep1933_a_missing_or_empty_workload_token_is_not_sent(tmp_path: Path) -> None:
    """No file, an empty file, an unset variable: a clear error naming the source; nothing
    reaches the authorization server."""
    async with stack(TokenServer()) as (server, rs):
        for source in (
            {"assertion_file": tmp_path / "absent"},
            {"assertion_env": "BASTION_TEST_NO_SUCH_VARIABLE"},
        ):
            async with Authorizer(workload(server, **source), storage=MemoryStorage()) as auth:
                with pytest.raises(AssertionUnavailable, match=r"absent|BASTION_TEST_NO_SUCH"):
                    await auth.login(rs.url)
    assert server.seen == []
    empty = tmp_path / "empty"
    empty.write_text("\n")
    pre = PreRegisteredClient(
        issuer="https://as.example", client_id="x", grant_type="jwt-bearer", assertion_file=empty
    )
    with pytest.raises(AssertionUnavailable, match="holds no workload token"):
        read_assertion(pre)


async def test_rfc7523_2_1_the_workload_token_file_is_read_at_each_token_request(
    tmp_path: Path,
) -> None:
    """Kubernetes rotates a projected token in place: each grant sends the file's current
    content. The form is grant_type, assertion, resource, client_id (no secret)."""
    token = tmp_path / "token"
    token.write_text("first-token\n")
    async with (
        stack(TokenServer(refresh_tokens=False)) as (server, rs),
        Authorizer(workload(server, assertion_file=token), storage=MemoryStorage()) as auth,
    ):
        await auth.login(rs.url)
        token.write_text("rotated-token")
        await auth.login(rs.url)
    forms = [s.form for s in server.seen]
    assert [f["assertion"] for f in forms] == ["first-token", "rotated-token"]
    assert forms[0] == {
        "grant_type": JWT_BEARER,
        "assertion": "first-token",
        "resource": rs.url,
        "client_id": "ci-deployer",
    }
    assert all(s.authorization is None for s in server.seen)


async def test_rfc7523_the_workload_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BASTION_TEST_WORKLOAD_TOKEN", "env-token")
    async with (
        stack(TokenServer()) as (server, rs),
        Authorizer(
            workload(server, assertion_env="BASTION_TEST_WORKLOAD_TOKEN"), storage=MemoryStorage()
        ) as auth,
    ):
        tokens = await auth.login(rs.url)
    assert server.seen[0].form["assertion"] == "env-token"
    assert tokens.grant_type == "jwt-bearer"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"assertion_env": "A", "assertion_file": "/t"},
        {"assertion_env": "NOT A NAME"},
    ],
)
def test_a_jwt_bearer_client_needs_exactly_one_assertion_source(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PreRegisteredClient(
            issuer="https://as.example", client_id="x", grant_type="jwt-bearer", **fields
        )


# -- enterprise-managed authorization (ID-JAG) ----------------------------------------------------


def enterprise(
    server: TokenServer, idp: IdpServer, id_token: Path, **idp_fields: Any
) -> ClientSettings:
    pre = PreRegisteredClient(
        issuer=server.issuer,
        client_id="chat-client",
        client_secret="chat-secret",  # type: ignore[arg-type]
        grant_type="jwt-bearer",
        enterprise=EnterpriseIdp(
            idp_issuer=idp.base,
            idp_client_id="idp-client",
            id_token_file=id_token,
            **idp_fields,
        ),
    )
    return ClientSettings(use_keyring=False, pre_registered=[pre])


async def test_id_jag_4_2_1_an_idp_refusal_is_surfaced_and_the_as_never_asked(
    tmp_path: Path,
) -> None:
    id_token = tmp_path / "id_token"
    id_token.write_text(unsigned_jwt(sub="alice", exp=int(time.time()) + 600))
    idp = IdpServer(
        refuse={"error": "invalid_grant", "error_description": "Audience validation failed"}
    )
    async with (
        stack(TokenServer(), idp) as (server, rs),
        Authorizer(enterprise(server, idp, id_token), storage=MemoryStorage()) as auth,
    ):
        with pytest.raises(TokenEndpointError) as caught:
            await auth.login(rs.url)
    assert caught.value.error == "invalid_grant"
    assert "Audience validation failed" in str(caught.value)
    assert len(idp.seen) == 1
    assert server.seen == []


async def test_id_jag_4_2_an_answer_that_is_not_an_id_jag_is_refused(tmp_path: Path) -> None:
    id_token = tmp_path / "id_token"
    id_token.write_text(unsigned_jwt(sub="alice"))
    idp = IdpServer(issued_token_type="urn:ietf:params:oauth:token-type:access_token")
    async with (
        stack(TokenServer(), idp) as (server, rs),
        Authorizer(enterprise(server, idp, id_token), storage=MemoryStorage()) as auth,
    ):
        with pytest.raises(TokenEndpointError, match="not an ID-JAG"):
            await auth.login(rs.url)
    assert server.seen == []


async def test_id_jag_an_expired_id_token_is_not_sent(tmp_path: Path) -> None:
    id_token = tmp_path / "id_token"
    id_token.write_text(unsigned_jwt(sub="alice", exp=int(time.time()) - 5))
    idp = IdpServer()
    async with (
        stack(TokenServer(), idp) as (server, rs),
        Authorizer(enterprise(server, idp, id_token), storage=MemoryStorage()) as auth,
    ):
        with pytest.raises(AssertionUnavailable, match="expired"):
            await auth.login(rs.url)
    assert idp.seen == [] and server.seen == []


async def test_id_jag_4_and_5_the_exchange_then_the_jwt_bearer_grant(tmp_path: Path) -> None:
    """§4: the token exchange at the IdP (found by discovery) with exactly these parameters and
    the client's IdP credentials (client_secret_post); §5: jwt-bearer at the MCP server's AS
    with the ID-JAG and the client's own credentials there (client_secret_basic)."""
    id_token = tmp_path / "id_token"
    subject = unsigned_jwt(sub="alice", exp=int(time.time()) + 600)
    id_token.write_text(subject)
    idp = IdpServer()
    async with stack(TokenServer(), idp) as (server, rs):
        settings = enterprise(server, idp, id_token, idp_client_secret="idp-secret")
        async with Authorizer(settings, storage=MemoryStorage()) as auth:
            tokens = await auth.login(rs.url)
    (exchange,) = idp.seen
    assert exchange.form == {
        "grant_type": TOKEN_EXCHANGE,
        "requested_token_type": ID_JAG,
        "audience": server.issuer,
        "resource": rs.url,
        "subject_token": subject,
        "subject_token_type": ID_TOKEN,
        "client_id": "idp-client",
        "client_secret": "idp-secret",
    }
    (grant,) = server.seen
    assert grant.form == {
        "grant_type": JWT_BEARER,
        "assertion": f"id-jag-for-{server.issuer}",
        "resource": rs.url,
    }
    basic = base64.b64encode(b"chat-client:chat-secret").decode()
    assert grant.authorization == f"Basic {basic}"
    assert tokens.grant_type == "jwt-bearer"


async def test_rfc9449_5_the_jwt_bearer_grant_carries_a_proof_where_dpop_applies(
    tmp_path: Path,
) -> None:
    """An ID-JAG grant at an AS and resource that both take DPoP: the jwt-bearer request has a
    proof (the IdP exchange has none: the ID-JAG is not an access token), the token is bound."""
    id_token = tmp_path / "id_token"
    id_token.write_text(unsigned_jwt(sub="alice"))
    idp = IdpServer()
    async with (
        stack(TokenServer(), idp, dpop=True) as (server, rs),
        Authorizer(enterprise(server, idp, id_token), storage=MemoryStorage()) as auth,
    ):
        tokens = await auth.login(rs.url)
    assert not idp.seen[0].proofs
    (grant,) = server.seen
    assert len(grant.proofs) == 1 and grant.claims["htu"] == server.token_endpoint
    assert tokens.token_type == "DPoP" and server.bound[tokens.access_token] == tokens.dpop_jkt
