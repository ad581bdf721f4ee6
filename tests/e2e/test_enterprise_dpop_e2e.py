"""Enterprise-managed authorization with DPoP, end to end (issue 19; X06, X03, X05, X02).

Real pieces on loopback, on SQLite and PostgreSQL:

- a stand-in enterprise identity provider (:mod:`tests.support.enterprise_idp`): it signed
  alice and bob in to the client ``ide`` (their ID tokens) and, by RFC 8693 token exchange,
  issues ID-JAGs under its own policy, which admits alice at the ``notes`` server only;
- bastion's authorization server, trusting that IdP for ID-JAGs (``accept_id_jag``) with the
  pre-registered confidential client ``ide-at-bastion``;
- bastion's gateway, whose upstream ``notes`` (an ``mcp`` SDK server) requires DPoP;
- bastion's client, configured for enterprise-managed authorization only, under the official
  ``mcp`` SDK client.

alice's call: the client exchanges her ID token at the IdP for an ID-JAG, redeems it at bastion
with a DPoP proof (jwt-bearer, RFC 7523), and calls the tool through the gateway with
``Authorization: DPoP`` and a fresh proof. Who must not get in, first: bob (the IdP's policy
refuses him, so bastion is never asked), alice's token sent as Bearer, with another key's proof,
or with a proof already used; none of them reaches the upstream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.authserver.app import create_app
from bastion.client.auth import BastionAuth
from bastion.client.authorizer import Authorizer
from bastion.client.errors import TokenEndpointError
from bastion.client.mcp_sdk import connect
from bastion.client.settings import ClientSettings, EnterpriseIdp, PreRegisteredClient
from bastion.client.storage import MemoryStorage
from bastion.config import AllowRulesSettings, IdentityProviderSettings, ResourceSettings, Settings
from bastion.gateway import create_gateway_app
from bastion.oauth.token_request import JWT_BEARER
from bastion.store.database import Database
from bastion.store.schema import auth_audit
from tests.authserver._tokens import confidential_client
from tests.support.dpop import make_proof, new_key
from tests.support.enterprise_idp import EnterpriseIdP, IdpClient, enterprise_idp
from tests.support.jwt import claims_of
from tests.support.live import free_port, serve

SCOPE = "mcp:tools"
ACCEPT = "application/json, text/event-stream"
CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}


@dataclass
class Seen:
    """What crossed the gateway and what reached the upstream."""

    at_gateway: list[dict[str, str]] = field(default_factory=list)
    at_upstream: list[dict[str, str]] = field(default_factory=list)


def recording(app: ASGIApp, into: list[dict[str, str]]) -> ASGIApp:
    """``app``, recording the Authorization and DPoP headers of every POST."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            into.append({k: headers[k] for k in ("authorization", "dpop") if k in headers})
        await app(scope, receive, send)

    return wrapped


def notes_upstream() -> ASGIApp:
    """The MCP server behind the gateway: it trusts the gateway and has one tool."""
    server = MCPServer("notes")

    @server.tool()
    async def latest_note() -> str:
        """The newest note."""
        return "ship it"

    return server.streamable_http_app()


@dataclass
class Stack:
    settings: Settings
    issuer: str
    resource: str
    idp: EnterpriseIdP
    seen: Seen
    client_secret: str
    tmp: Path

    def client(self, person: str) -> ClientSettings:
        """bastion's client for ``person``: enterprise-managed authorization only (no browser,
        no dynamic registration), DPoP left to "auto"."""
        id_token = self.tmp / f"{person}.id_token"
        id_token.write_text(self.idp.id_token(person, "ide", email=f"{person}@example.com"))
        return ClientSettings(
            use_keyring=False,
            allow_insecure_http=True,
            ssrf_guard=False,
            pre_registered=[
                PreRegisteredClient(
                    issuer=self.issuer,
                    client_id="ide-at-bastion",
                    client_secret=self.client_secret,  # type: ignore[arg-type]
                    grant_type="jwt-bearer",
                    enterprise=EnterpriseIdp(
                        idp_issuer=self.idp.issuer,
                        idp_client_id="ide",
                        idp_client_secret="ide-secret",  # type: ignore[arg-type]
                        id_token_file=id_token,
                    ),
                )
            ],
        )

    async def audit(self, event: str) -> list[dict[str, Any]]:
        db = Database(self.settings.effective_database_url, schema=self.settings.database_schema)
        try:
            async with db.connect() as conn:
                rows = await conn.execute(sa.select(auth_audit).where(auth_audit.c.type == event))
                return [dict(row._mapping) for row in rows]
        finally:
            await db.dispose()


@asynccontextmanager
async def running(make_settings: Callable[..., Settings], tmp: Path) -> AsyncIterator[Stack]:
    as_port, gateway_port, upstream_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    resource = f"{gateway}/mcp/notes"
    idp = EnterpriseIdP(clients={"ide": IdpClient("ide-secret", "ide-at-bastion")})
    async with enterprise_idp(idp):
        idp.allowed.add(("alice", issuer, resource))
        settings = make_settings(
            issuer=issuer,
            resources=[ResourceSettings(uri=resource, name="notes", scopes=[SCOPE])],
            upstreams=[
                IdentityProviderSettings(
                    name="acme",
                    kind="oidc",
                    issuer=idp.issuer,
                    client_id="bastion-at-acme",
                    client_secret="bastion-secret-at-acme",  # type: ignore[arg-type]
                    allow_private_addresses=True,
                    accept_id_jag=True,
                    allow=AllowRulesSettings(email_domains=["example.com"]),
                )
            ],
            gateway={
                "enabled": True,
                "public_url": gateway,
                "upstreams": [
                    {
                        "name": "notes",
                        "path": "/mcp/notes",
                        "url": f"http://127.0.0.1:{upstream_port}/mcp",
                        "scopes": [SCOPE],
                        "require_dpop": True,
                    }
                ],
            },
        )
        made = await confidential_client(
            settings, client_id="ide-at-bastion", grant_types=[JWT_BEARER]
        )
        seen = Seen()
        async with (
            serve(create_app(settings), port=as_port),
            serve(recording(notes_upstream(), seen.at_upstream), port=upstream_port),
            serve(recording(create_gateway_app(settings), seen.at_gateway), port=gateway_port),
        ):
            yield Stack(settings, issuer, resource, idp, seen, made.secret, tmp)


@pytest.fixture
async def stack(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Stack]:
    async with running(make_settings, tmp_path) as running_stack:
        yield running_stack


async def call_tool(stack: Stack, person: str, storage: MemoryStorage) -> str:
    """``person`` calls ``latest_note`` through the gateway with bastion's client."""
    async with (
        Authorizer(stack.client(person), storage=storage) as authorizer,
        connect(stack.resource, auth=BastionAuth(authorizer=authorizer), mode="legacy") as client,
    ):
        result = await client.call_tool("latest_note", {})
    [content] = result.content
    return str(getattr(content, "text", content))


async def post(stack: Stack, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            stack.resource,
            content=json.dumps(CALL),
            headers={"Accept": ACCEPT, "Content-Type": "application/json", **headers},
        )


def challenge(response: httpx.Response) -> str:
    return ", ".join(response.headers.get_list("www-authenticate"))


# -- who must not get in -------------------------------------------------------------------------


async def test_x06_bob_whom_the_idp_refuses_gets_no_token_and_bastion_is_never_asked(
    stack: Stack,
) -> None:
    # The SDK's task group hands on what the auth flow raised inside an exception group.
    with pytest.raises(ExceptionGroup) as caught:
        await call_tool(stack, "bob", MemoryStorage())
    [refusal] = caught.value.exceptions
    assert isinstance(refusal, TokenEndpointError), repr(caught.value)
    assert refusal.error == "invalid_grant"
    assert "policy" in str(refusal)
    assert stack.idp.exchanges == []
    assert await stack.audit("grant_created") == []
    assert stack.seen.at_upstream == []


async def test_x03_x05_alice_s_bound_token_is_refused_as_bearer_with_another_key_or_a_used_proof(
    stack: Stack,
) -> None:
    """RFC 9449 §7.2 (a bound token as Bearer), §7.1 (the proof's key is the token's), §11.1
    (a proof is used once, here replayed byte for byte by someone who captured the request)."""
    assert await call_tool(stack, "alice", MemoryStorage()) == "ship it"
    reached = len(stack.seen.at_upstream)
    captured = stack.seen.at_gateway[-1]
    scheme, token = captured["authorization"].split(" ", 1)
    assert scheme == "DPoP" and "dpop" in captured

    # The upstream requires DPoP: the Bearer scheme is not one it takes at all (§7.2), so the
    # answer is the challenge of the one scheme it does take.
    as_bearer = await post(stack, {"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    assert challenge(as_bearer).startswith("DPoP ") and "Bearer" not in challenge(as_bearer)

    thief = new_key()
    foreign = make_proof(thief, "POST", stack.resource, token=token)
    with_other_key = await post(stack, {"Authorization": f"DPoP {token}", "DPoP": foreign})
    assert with_other_key.status_code == 401
    assert 'error="invalid_token"' in challenge(with_other_key)

    replayed = await post(
        stack, {"Authorization": captured["authorization"], "DPoP": captured["dpop"]}
    )
    assert replayed.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenge(replayed)

    without_proof = await post(stack, {"Authorization": f"DPoP {token}"})
    assert without_proof.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenge(without_proof)
    assert len(stack.seen.at_upstream) == reached


# -- who may -------------------------------------------------------------------------------------


async def test_x06_x02_alice_calls_the_tool_with_an_id_jag_and_a_dpop_bound_token(
    stack: Stack,
) -> None:
    storage = MemoryStorage()
    assert await call_tool(stack, "alice", storage) == "ship it"

    # The IdP was asked for an ID-JAG for bastion's issuer and the gateway's resource (§4).
    [exchange] = stack.idp.exchanges
    assert exchange["person"] == "alice"
    assert exchange["audience"] == stack.issuer
    assert exchange["resource"] == stack.resource

    # bastion issued alice a token bound to the client's key (RFC 9449 §6.1) for that resource.
    tokens = await storage.get_tokens(stack.resource, stack.issuer)
    assert tokens is not None and tokens.token_type == "DPoP"
    claims = claims_of(tokens.access_token)
    assert claims["aud"] == stack.resource
    assert claims["client_id"] == "ide-at-bastion"
    assert claims["scope"] == SCOPE
    [created] = await stack.audit("grant_created")
    assert created["subject"] == claims["sub"]
    assert created["method"] == "id_jag"
    detail = created["detail"] if isinstance(created["detail"], dict) else {}
    assert detail.get("dpop_jkt") == claims["cnf"]["jkt"]

    # Every request to the gateway carried the DPoP scheme and a proof of its own; nothing of
    # either went upstream (the gateway's own connection carries no caller credentials).
    sent = [h for h in stack.seen.at_gateway if "authorization" in h]
    assert sent and all(h["authorization"].startswith("DPoP ") and "dpop" in h for h in sent)
    assert len({h["dpop"] for h in sent}) == len(sent)
    assert all("dpop" not in h and "authorization" not in h for h in stack.seen.at_upstream)
