"""CORS as GitHub Copilot needs it (Access-Control-Allow-Headers: Authorization, Content-Type),
answered before the token check (browsers send preflights without credentials)."""

from __future__ import annotations

from tests.registry.harness import Registry, RegistryFactory

ORIGIN = "https://github.com"


async def test_a_preflight_is_answered_without_a_token_with_copilots_headers(
    reg: Registry,
) -> None:
    """OPTIONS with Origin and Access-Control-Request-Method: 204, exactly
    `Access-Control-Allow-Headers: Authorization, Content-Type` (what Copilot needs) and `DPoP`
    (RFC 9449 §7.1)."""
    response = await reg.client.options(
        f"{reg.base}/servers",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-headers"] == "Authorization, Content-Type, DPoP"
    assert response.headers["access-control-allow-methods"] == (
        "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    )
    assert response.headers["access-control-max-age"] == "600"


async def test_answers_carry_cors_headers_and_expose_the_challenge(reg: Registry) -> None:
    """A browser client may read the 401's WWW-Authenticate (Access-Control-Expose-Headers),
    and a 200's body."""
    response = await reg.client.get(f"{reg.base}/servers", headers={"Origin": ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-expose-headers"] == "WWW-Authenticate, DPoP-Nonce"
    token = await reg.token()
    response = await reg.client.get(
        f"{reg.base}/servers", headers={"Origin": ORIGIN, **reg.bearer(token)}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"


async def test_the_metadata_document_keeps_its_own_single_cors_header(reg: Registry) -> None:
    """The protected-resource metadata (readable from any origin) is not given a second
    Access-Control-Allow-Origin, which browsers would reject."""
    response = await reg.client.get(
        "/.well-known/oauth-protected-resource/registry", headers={"Origin": ORIGIN}
    )
    assert response.status_code == 200
    assert response.headers.get_list("access-control-allow-origin") == ["*"]


async def test_configured_origins_are_echoed_and_others_refused(
    start_registry: RegistryFactory,
) -> None:
    """registry.allowed_origins: a listed origin is echoed (Vary: Origin); another gets no CORS
    headers on preflight (403) and the token check's Origin refusal (403)."""
    async with start_registry(allowed_origins=["https://github.com"]) as reg:
        headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        response = await reg.client.options(f"{reg.base}/servers", headers=headers)
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["vary"] == "Origin"
        evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        response = await reg.client.options(f"{reg.base}/servers", headers=evil)
        assert response.status_code == 403
        assert "access-control-allow-origin" not in response.headers
        token = await reg.token()
        response = await reg.client.get(
            f"{reg.base}/servers",
            headers={"Origin": "https://evil.example", **reg.bearer(token)},
        )
        assert response.status_code == 403
        assert "access-control-allow-origin" not in response.headers
