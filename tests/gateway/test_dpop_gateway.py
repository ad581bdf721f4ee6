"""DPoP at the gateway (RFC 9449 §7, §9, §11.1; checklist X03-X05): bastion's AS and the gateway
under uvicorn (SQLite and PostgreSQL), the recording upstream behind it. Tokens are signed with
the AS's key and bound with ``cnf.jkt`` (§6.1) as the AS binds them; proofs come from joserfc.

Upstreams: ``notes`` takes Bearer and DPoP tokens; ``strict`` has ``require_dpop`` and
``dpop_nonce``. The gateway follows revocations in the database, so it keeps the ``jti`` of
proofs there (shared by every gateway process: see tests/scaleout/test_dpop_replay_across_
gateways.py for two processes).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from bastion.gateway import create_gateway_app
from bastion.oauth.www_authenticate import parse_challenges
from bastion.store.database import Database
from bastion.store.schema import used_assertions
from bastion.tokens import access_token
from bastion.tokens.keys import SigningKey
from tests.gateway.upstream import RecordingUpstream
from tests.resource.conftest import signing_key_of
from tests.support.dpop import make_proof, new_key, thumbprint
from tests.support.live import free_port, serve

ACCEPT = "application/json, text/event-stream"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
}


@dataclass
class Gateway:
    issuer: str
    base: str
    settings: Settings
    key: SigningKey
    recorder: RecordingUpstream
    http: httpx.AsyncClient

    def url(self, name: str) -> str:
        return f"{self.base}/mcp/{name}"

    def token(self, name: str, dpop_key: ec.EllipticCurvePrivateKey | None = None) -> str:
        extra = {"cnf": {"jkt": thumbprint(dpop_key)}} if dpop_key is not None else {}
        return access_token.issue(
            self.key,
            issuer=self.issuer,
            subject="svc",
            audience=self.url(name),
            client_id="svc",
            scope="mcp:tools",
            now=int(time.time()),
            ttl=300,
            extra=extra,
        ).token

    async def post(self, name: str, token: str, proof: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"DPoP {token}", "Accept": ACCEPT}
        if proof is not None:
            headers["DPoP"] = proof
        return await self.http.post(self.url(name), json=INIT, headers=headers)


@pytest.fixture
async def gateway(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Gateway]:
    recorder = RecordingUpstream()
    as_port, gateway_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    base = f"http://127.0.0.1:{gateway_port}"
    async with serve(recorder.app) as upstream:
        upstream_settings: dict[str, Any] = {
            "url": f"{upstream}/mcp",
            "scopes": ["mcp:tools"],
            "policy": {"default": ["mcp:tools"]},
        }
        settings = make_settings(
            issuer=issuer,
            resources=[ResourceSettings(uri=f"{issuer}/elsewhere", name="other")],
            gateway={
                "enabled": True,
                "public_url": base,
                "upstreams": [
                    {"name": "notes", "path": "/mcp/notes", **upstream_settings},
                    {
                        "name": "strict",
                        "path": "/mcp/strict",
                        "require_dpop": True,
                        "dpop_nonce": True,
                        **upstream_settings,
                    },
                ],
            },
        )
        async with (
            serve(create_app(settings), port=as_port),
            serve(create_gateway_app(settings), port=gateway_port),
            httpx.AsyncClient(timeout=10, trust_env=False) as http,
        ):
            key = await signing_key_of(settings)
            try:
                yield Gateway(issuer, base, settings, key, recorder, http)
            finally:
                recorder.release()


def dpop_error(response: httpx.Response) -> str | None:
    assert response.status_code == 401, response.text
    [challenge] = parse_challenges(response.headers["www-authenticate"])
    assert challenge.scheme == "dpop"
    return challenge.get("error")


# -- who must not get in ----------------------------------------------------------------------


async def test_rfc9449_7_2_a_bound_token_sent_as_bearer_never_reaches_the_upstream(
    gateway: Gateway,
) -> None:
    token = gateway.token("notes", new_key())
    response = await gateway.http.post(
        gateway.url("notes"), json=INIT, headers={"Authorization": f"Bearer {token}"}
    )
    assert dpop_error(response) == "invalid_token"
    assert gateway.recorder.requests == []


async def test_rfc9449_11_1_a_proof_is_accepted_once_by_the_gateway(gateway: Gateway) -> None:
    key = new_key()
    token = gateway.token("notes", key)
    proof = make_proof(key, "POST", gateway.url("notes"), token=token)
    first = await gateway.post("notes", token, proof)
    assert first.status_code == 200, first.text
    again = await gateway.post("notes", token, proof)
    assert dpop_error(again) == "invalid_dpop_proof"
    assert len(gateway.recorder.requests) == 1
    # Kept in the database the gateway follows revocations in (shared by its replicas).
    db = Database(gateway.settings.effective_database_url, schema=gateway.settings.database_schema)
    try:
        async with db.connect() as conn:
            rows = await conn.execute(sa.select(sa.func.count()).select_from(used_assertions))
            assert rows.scalar_one() == 1
    finally:
        await db.dispose()


async def test_rfc9449_4_3_a_proof_for_another_upstream_is_refused(gateway: Gateway) -> None:
    """htu names the upstream's public URL: a proof made for one upstream's path is refused at
    another's."""
    key = new_key()
    token = gateway.token("notes", key)
    proof = make_proof(key, "POST", gateway.url("strict"), token=token)
    assert dpop_error(await gateway.post("notes", token, proof)) == "invalid_dpop_proof"
    assert gateway.recorder.requests == []


async def test_x05_require_dpop_refuses_bearer_and_demands_the_gateways_nonce(
    gateway: Gateway,
) -> None:
    """``require_dpop``: an unbound Bearer token is refused with the DPoP challenge alone;
    ``dpop_nonce``: a proof without the gateway's nonce is 401 use_dpop_nonce with DPoP-Nonce
    (RFC 9449 §9); the retry with it reaches the upstream. The metadata says both."""
    bearer = await gateway.http.post(
        gateway.url("strict"),
        json=INIT,
        headers={"Authorization": f"Bearer {gateway.token('strict')}"},
    )
    assert dpop_error(bearer) is None
    key = new_key()
    token = gateway.token("strict", key)
    response = await gateway.post(
        "strict", token, make_proof(key, "POST", gateway.url("strict"), token=token)
    )
    assert dpop_error(response) == "use_dpop_nonce"
    assert gateway.recorder.requests == []
    nonce = response.headers["dpop-nonce"]
    proof = make_proof(key, "POST", gateway.url("strict"), token=token, nonce=nonce)
    admitted = await gateway.post("strict", token, proof)
    assert admitted.status_code == 200, admitted.text
    assert admitted.headers["dpop-nonce"]
    prm = await gateway.http.get(f"{gateway.base}/.well-known/oauth-protected-resource/mcp/strict")
    assert prm.json()["dpop_bound_access_tokens_required"] is True


# -- who may ----------------------------------------------------------------------------------


async def test_x03_a_bound_token_with_its_proof_reaches_the_upstream_without_token_or_proof(
    gateway: Gateway,
) -> None:
    """RFC 9449 §7.1 at the gateway; MCP R05: neither the token nor the proof goes upstream."""
    key = new_key()
    token = gateway.token("notes", key)
    proof = make_proof(key, "POST", gateway.url("notes"), token=token)
    response = await gateway.post("notes", token, proof)
    assert response.status_code == 200, response.text
    sent = gateway.recorder.requests[-1]["headers"]
    assert "dpop" not in {name.lower() for name, _ in sent}
    assert "authorization" not in {name.lower() for name, _ in sent}
    assert token not in json.dumps(sent) and proof not in json.dumps(sent)


def test_x05_an_algorithm_bastion_cannot_verify_is_a_configuration_error() -> None:
    """[gateway.dpop] algorithms: only JWS algorithms bastion verifies (never none or HS256)."""
    with pytest.raises(ValidationError) as caught:
        Settings(issuer="https://auth.example.com", gateway={"dpop": {"algorithms": ["HS256"]}})
    assert "HS256 cannot sign DPoP proofs" in str(caught.value)
