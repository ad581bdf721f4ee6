"""DPoP at the registry (RFC 9449 §7, §9, §11.1; checklist X03-X05), on SQLite and PostgreSQL:
tokens of the AS bound with ``cnf.jkt`` (§6.1), proofs made with joserfc, the ``jti`` of
accepted proofs kept in the registry's database."""

from __future__ import annotations

import httpx

from bastion.oauth.www_authenticate import parse_challenges
from tests.registry.harness import PRM_URL, REGISTRY, Registry, RegistryFactory, server_json
from tests.support.dpop import make_proof, new_key, thumbprint

SERVERS = f"{REGISTRY}/v0.1/servers"


def dpop_challenge(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 401, response.text
    [challenge] = parse_challenges(response.headers["www-authenticate"])
    assert challenge.scheme == "dpop"
    return challenge.params


async def listing(reg: Registry, token: str, proof: str) -> httpx.Response:
    return await reg.client.get(SERVERS, headers={"Authorization": f"DPoP {token}", "DPoP": proof})


# -- who must not get in ----------------------------------------------------------------------


async def test_rfc9449_7_2_a_bound_token_sent_as_bearer_is_refused(reg: Registry) -> None:
    token = await reg.token(cnf={"jkt": thumbprint(new_key())})
    response = await reg.client.get(SERVERS, headers=reg.bearer(token))
    params = dpop_challenge(response)
    assert params["error"] == "invalid_token"
    assert params["realm"] == "mcp-registry"
    assert params["resource_metadata"] == PRM_URL


async def test_rfc9449_11_1_a_replayed_proof_is_refused(reg: Registry) -> None:
    key = new_key()
    token = await reg.token(cnf={"jkt": thumbprint(key)})
    proof = make_proof(key, "GET", SERVERS, token=token)
    assert (await listing(reg, token, proof)).status_code == 200
    assert dpop_challenge(await listing(reg, token, proof))["error"] == "invalid_dpop_proof"


async def test_x05_require_dpop_and_nonces_at_the_registry(
    start_registry: RegistryFactory,
) -> None:
    """registry.require_dpop: Bearer refused, the DPoP challenge alone, the metadata says so;
    [registry.dpop] nonce: 401 use_dpop_nonce with DPoP-Nonce, then admitted with it (§9)."""
    async with start_registry(require_dpop=True, dpop={"nonce": True}) as reg:
        bearer = await reg.client.get(SERVERS, headers=reg.bearer(await reg.token()))
        assert "error" not in dpop_challenge(bearer)
        metadata = (await reg.client.get(PRM_URL)).json()
        key = new_key()
        token = await reg.token(cnf={"jkt": thumbprint(key)})
        first = await listing(reg, token, make_proof(key, "GET", SERVERS, token=token))
        assert dpop_challenge(first)["error"] == "use_dpop_nonce"
        nonce = first.headers["dpop-nonce"]
        second = await listing(
            reg, token, make_proof(key, "GET", SERVERS, token=token, nonce=nonce)
        )
    assert second.status_code == 200, second.text
    assert metadata["dpop_bound_access_tokens_required"] is True


async def test_x05_a_publish_without_the_write_scope_is_challenged_in_dpop(reg: Registry) -> None:
    """The registry's own 403 insufficient_scope (a publish with a read token) is in the scheme
    the token came with (RFC 9449 §7.1)."""
    key = new_key()
    token = await reg.token(cnf={"jkt": thumbprint(key)})
    url = f"{REGISTRY}/v0.1/publish"
    response = await reg.client.post(
        url,
        json=server_json("com.acme.team-a/dpop"),
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": make_proof(key, "POST", url, token=token),
        },
    )
    assert response.status_code == 403, response.text
    [challenge] = parse_challenges(response.headers["www-authenticate"])
    assert challenge.scheme == "dpop"
    assert challenge.get("error") == "insufficient_scope"
    assert challenge.get("algs") == "ES256 EdDSA RS256 PS256"


# -- who may ----------------------------------------------------------------------------------


async def test_x03_a_bound_token_with_its_proof_lists_the_registry(reg: Registry) -> None:
    key = new_key()
    token = await reg.token(cnf={"jkt": thumbprint(key)})
    response = await listing(reg, token, make_proof(key, "GET", SERVERS, token=token))
    assert response.status_code == 200, response.text
    assert "servers" in response.json()
