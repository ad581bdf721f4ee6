"""Machine access is never self-service (issue: "who may get which token", attack 1).

A security review got a token for every server without any person signing in: anonymous Dynamic
Client Registration (RFC 7591) of a client_credentials client, or a Client ID Metadata Document
declaring private_key_jwt with its own key plus client_credentials. Each attack is sent here to
a real ``bastion serve`` process, on SQLite and PostgreSQL; then who *may* get machine tokens:
clients an operator made, for the resources and scopes the operator gave them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.authserver import admin
from bastion.authserver.admin import AdminError
from tests.access.live import REDIRECT_URI, Deployment, deployed
from tests.support.jwt import claims_of
from tests.support.live import serve

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SELF_REGISTERED = (
    "grant_types: client_credentials is not available to self-registered clients; machine "
    "clients are made by an operator (bastion clients add), or registered with an initial access "
    "token that allows them (bastion registration-tokens add)"
)


@pytest.fixture
def deployment(backend: dict[str, Any], tmp_path: Path) -> Iterator[Deployment]:
    with deployed(backend, tmp_path) as running:
        yield running


@pytest.fixture
async def http(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment.issuer, trust_env=False) as client:
        yield client


async def test_anonymous_registration_of_a_machine_client_is_refused_and_stores_nothing(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """The review's request, verbatim: refused with RFC 7591 §3.2.2 invalid_client_metadata
    naming the grant; no client row is left behind."""
    response = await http.post(
        "/register",
        json={
            "grant_types": ["client_credentials"],
            "response_types": [],
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_client_metadata",
        "error_description": SELF_REGISTERED,
    }
    assert await admin.list_clients(deployment.settings) == []


async def test_a_self_registered_client_is_refused_client_credentials_at_the_token_endpoint(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """A confidential client registered anonymously for people (authorization_code) asks for a
    token for itself: RFC 6749 §5.2 unauthorized_client. It cannot add the grant through
    RFC 7592 either."""
    registered = await http.post(
        "/register",
        json={
            "client_name": "Looks harmless",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_post",
            "application_type": "native",
        },
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    response = await http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": body["client_id"],
            "client_secret": body["client_secret"],
            "resource": deployment.resource("notes"),
            "scope": "mcp:tools notes:write",
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unauthorized_client"
    widened = await http.put(
        body["registration_client_uri"],
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
        json={
            "client_id": body["client_id"],
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "application_type": "native",
        },
    )
    assert widened.status_code == 400, widened.text
    assert widened.json()["error"] == "invalid_client_metadata"


async def test_a_metadata_document_with_its_own_key_cannot_use_client_credentials(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """A Client ID Metadata Document declaring private_key_jwt with its own key and
    client_credentials authenticates (the key is its own), and is still refused: a document
    anyone can publish never makes a machine client (unauthorized_client)."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"}, private=True)
    document: dict[str, Any] = {}

    async def metadata(_request: Any) -> JSONResponse:
        return JSONResponse(document)

    async with serve(Starlette(routes=[Route("/client.json", metadata)])) as base:
        client_id = f"{base}/client.json"
        document.update(
            client_id=client_id,
            client_name="Self-made robot",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "client_credentials"],
            response_types=["code"],
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [key.as_dict(private=False)]},
        )
        now = int(time.time())
        assertion = jwt.encode(
            {"alg": "ES256", "kid": "k1"},
            {
                "iss": client_id,
                "sub": client_id,
                "aud": deployment.issuer,
                "iat": now,
                "exp": now + 60,
                "jti": f"j-{now}",
            },
            key,
        )
        response = await http.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
                "resource": deployment.resource("notes"),
            },
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unauthorized_client"
    assert "registered itself" in response.json()["error_description"]


async def test_an_operator_machine_client_gets_only_the_resources_and_scopes_it_was_given(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """What a machine client may obtain comes from the operator's registration, never from its
    own metadata: the ledger with mcp:tools, not the notes server, not ledger:write."""
    made = await admin.add_client(
        deployment.settings,
        client_id="nightly",
        name="Nightly agent",
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        scope="mcp:tools",
        resources=["ledger"],
    )
    assert made.secret is not None
    auth = (made.client.client_id, made.secret)

    async def token(resource: str, scope: str | None = None) -> httpx.Response:
        data = {"grant_type": "client_credentials", "resource": resource}
        if scope:
            data["scope"] = scope
        return await http.post("/token", data=data, auth=auth)

    notes = await token(deployment.resource("notes"))
    assert notes.status_code == 400 and notes.json()["error"] == "invalid_target", notes.text
    write = await token(deployment.resource("ledger"), "ledger:write")
    assert write.status_code == 400 and write.json()["error"] == "invalid_scope", write.text
    ledger = await token(deployment.resource("ledger"))
    assert ledger.status_code == 200, ledger.text
    assert ledger.json()["scope"] == "mcp:tools"
    claims = claims_of(ledger.json()["access_token"])
    assert claims["sub"] == "nightly" and claims["aud"] == deployment.resource("ledger")
    assert claims["grant_id"] == made.client.grant_id


async def test_clients_add_refuses_an_unknown_scope_naming_the_known_ones(
    deployment: Deployment,
) -> None:
    with pytest.raises(AdminError, match=r"unknown scope ledger:delete for .*known scopes: "):
        await admin.add_client(
            deployment.settings,
            client_id=None,
            name="typo",
            redirect_uris=[],
            confidential=True,
            grant_types=["client_credentials"],
            scope="ledger:delete",
            resources=["ledger"],
        )
    assert await admin.list_clients(deployment.settings) == []


async def test_registration_with_an_operator_token_gets_the_tokens_rules_not_its_metadata(
    deployment: Deployment, http: httpx.AsyncClient
) -> None:
    """RFC 7591 §3 initial access token: one an operator made for machine clients lets a
    client register for client_credentials; it gets the token's resources and scopes, whatever
    its metadata asks for. The token allows one registration."""
    token = await admin.add_registration_token(
        deployment.settings, label="ci", machine=[("notes", ["mcp:tools"])], uses=1
    )
    metadata = {
        "grant_types": ["client_credentials"],
        "response_types": [],
        "scope": "mcp:tools notes:write",
        "client_name": "CI robot",
    }
    headers = {"Authorization": f"Bearer {token}"}
    registered = await http.post("/register", json=metadata, headers=headers)
    assert registered.status_code == 201, registered.text
    robot = (registered.json()["client_id"], registered.json()["client_secret"])
    again = await http.post("/register", json=metadata, headers=headers)
    assert again.status_code == 401 and again.json()["error"] == "invalid_token", again.text
    base = {"grant_type": "client_credentials"}
    notes = {**base, "resource": deployment.resource("notes")}
    granted = await http.post("/token", data=notes, auth=robot)
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "mcp:tools"
    write = await http.post("/token", data={**notes, "scope": "notes:write"}, auth=robot)
    assert write.status_code == 400 and write.json()["error"] == "invalid_scope"
    ledger = {**base, "resource": deployment.resource("ledger")}
    other = await http.post("/token", data=ledger, auth=robot)
    assert other.status_code == 400 and other.json()["error"] == "invalid_target"
