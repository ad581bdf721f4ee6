"""End to end over real HTTP: the authorization server and the registry in one uvicorn process;
two people of different groups sign in (authorization code + PKCE, resource = the registry URL),
publish, and list: each sees their group's entries and the shared one, nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from bastion.config import Settings
from bastion.oauth.www_authenticate import parse_challenges
from bastion.registry.access import ADMIN, READ, WRITE
from bastion.serve import create_combined_app, shares_issuer_origin
from tests.registry.harness import registry_settings, server_json
from tests.resource.conftest import get_token, service_client
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.jwt import claims_of
from tests.support.live import free_port, serve

SCOPE = f"{READ} {WRITE}"


async def sign_in(issuer: str, registry: str, client_id: str, username: str) -> str:
    """A person's access token for the registry, through the browser flow."""
    async with httpx.AsyncClient(base_url=issuer) as browser:
        authorized = await authorize(
            browser, client_id, username=username, resource=registry, scope=SCOPE
        )
        assert "code" in authorized.params, authorized.location
        response = await exchange(browser, client_id, authorized)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == SCOPE
    token: str = body["access_token"]
    return token


async def test_publish_then_two_users_of_different_groups_list_different_entries(
    make_settings: Callable[..., Settings],
) -> None:
    """G01-G04 end to end: discovery from the 401, tokens whose groups claim comes from the
    local users, publication in each team's namespace, and lists filtered by group."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    registry = f"{issuer}/registry"
    settings = make_settings(issuer=issuer, registry=registry_settings(approve_on_publish=True))
    assert shares_issuer_origin(settings)
    await add_user(settings, "alice", groups=["team-a"])
    await add_user(settings, "bob", groups=["team-b"])
    async with serve(create_combined_app(settings), port=port) as url:
        assert url == issuer
        async with httpx.AsyncClient(base_url=issuer) as http:
            # Discovery as a client does it: 401 -> resource_metadata -> authorization server.
            probe = await http.get("/registry/v0.1/servers", params={"limit": 1})
            assert probe.status_code == 401
            challenge, _dpop = parse_challenges(probe.headers["www-authenticate"])
            assert challenge.get("realm") == "mcp-registry"
            assert challenge.get("scope") == READ
            metadata = (await http.get(challenge.get("resource_metadata") or "")).json()
            assert metadata["resource"] == registry
            assert metadata["authorization_servers"] == [issuer]
            as_metadata = await http.get("/.well-known/oauth-authorization-server")
            assert as_metadata.json()["issuer"] == issuer
            client_id = (await register(http))["client_id"]

        alice = await sign_in(issuer, registry, client_id, "alice")
        bob = await sign_in(issuer, registry, client_id, "bob")
        assert claims_of(alice)["groups"] == ["team-a"]
        assert claims_of(bob)["groups"] == ["team-b"]
        assert claims_of(alice)["aud"] == registry

        async with httpx.AsyncClient(base_url=registry) as http:

            async def publish(token: str, document: dict[str, Any]) -> None:
                response = await http.post(
                    "/v0.1/publish", json=document, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200, response.text

            async def names(token: str) -> list[str]:
                response = await http.get(
                    "/v0.1/servers",
                    params={"limit": 50, "version": "latest"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 200, response.text
                return [s["server"]["name"] for s in response.json()["servers"]]

            await publish(alice, server_json("com.acme.team-a/alpha", groups=["team-a"]))
            await publish(bob, server_json("com.acme.team-b/beta", groups=["team-b"]))
            await publish(alice, server_json("com.acme.shared.x/common"))
            refused = await http.post(
                "/v0.1/publish",
                json=server_json("com.acme.team-b/intruder"),
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert refused.status_code == 403

            assert await names(alice) == ["com.acme.shared.x/common", "com.acme.team-a/alpha"]
            assert await names(bob) == ["com.acme.shared.x/common", "com.acme.team-b/beta"]
            hidden = await http.get(
                "/v0.1/servers/com.acme.team-a%2Falpha/versions/latest",
                headers={"Authorization": f"Bearer {bob}"},
            )
            assert hidden.status_code == 404


async def test_l7_m1_bodies_the_registry_cannot_read_are_refused_in_its_own_forms(
    make_settings: Callable[..., Settings],
) -> None:
    """Over real HTTP: JSON nested deeper than 64 levels is a 400 problem naming the body
    (PUT, PATCH), never a 500; a body not sent as JSON is 415 from the token check (M1); JSON
    bodies still publish and update."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(issuer=issuer, registry=registry_settings(admins=["client:robot"]))
    robot_scope = f"{READ} {WRITE} {ADMIN}"
    robot = await service_client(settings, "robot", scope=robot_scope)
    async with (
        serve(create_combined_app(settings), port=port),
        httpx.AsyncClient(base_url=issuer) as http,
    ):
        granted = await get_token(issuer, robot, resource=f"{issuer}/registry", scope=robot_scope)
        auth = {"Authorization": f"Bearer {granted['access_token']}"}
        document = server_json("com.robot/a")
        published = await http.post("/registry/v0.1/publish", json=document, headers=auth)
        assert published.status_code == 200, published.text
        version = "/registry/v0.1/servers/com.robot%2Fa/versions/1.0.0"
        for method, path in (("PUT", version), ("PATCH", f"{version}/status")):
            for depth in (20_000, 900):
                response = await http.request(
                    method,
                    path,
                    content=b"[" * depth + b"]" * depth,
                    headers={**auth, "Content-Type": "application/json"},
                )
                assert response.status_code == 400, (method, depth, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["errors"] == [
                    {"location": "body", "message": "JSON nested deeper than 64 levels"}
                ]
        typed = await http.put(
            version,
            content=json.dumps(document),
            headers={**auth, "Content-Type": "text/plain"},
        )
        assert typed.status_code == 415
        assert typed.json()["error"] == "invalid_request"
        updated = await http.put(version, json={**document, "description": "new"}, headers=auth)
        assert updated.status_code == 200, updated.text
