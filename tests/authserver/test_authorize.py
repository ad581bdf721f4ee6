"""The authorization endpoint (OAuth 2.1 §4.1.1, §4.1.2.1; RFC 6749 §4.1.2.1; RFC 9207;
RFC 8707; RFC 8252 §7.3).

Checklist A05 (``iss`` in every response), A07 (exact redirect-URI matching, no open redirect),
A08 (PKCE enforced, no CORS on the authorization endpoint). A bad client or redirect URI gets a
page, never a redirect; every other error goes back to the client with ``state`` and ``iss``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bastion.config import Settings
from bastion.oauth import pkce
from tests.authserver.browser_steps import authorization_params, query_of
from tests.support.flow import REDIRECT_URI, add_user, authorize, register

ISSUER = "http://localhost"


@pytest.fixture
async def client_id(app_client: httpx.AsyncClient) -> str:
    """A dynamically registered public client whose only redirect URI is REDIRECT_URI."""
    reg = await register(app_client)
    found: str = reg["client_id"]
    return found


async def get_authorize(client: httpx.AsyncClient, params: Any) -> httpx.Response:
    return await client.get("/authorize", params=params)


def assert_page(response: httpx.Response, status: int = 400) -> None:
    """An HTML error page: no redirect anywhere, no stack trace."""
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


def assert_redirect_error(
    response: httpx.Response, error: str, *, state: str | None = "xyz", uri: str = REDIRECT_URI
) -> dict[str, str]:
    """An error sent back to the verified redirect URI with ``state`` and ``iss``."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.split("?")[0] == uri
    params = query_of(location)
    assert params["error"] == error, params
    assert params["iss"] == ISSUER
    if state is None:
        assert "state" not in params
    else:
        assert params["state"] == state
    assert "code" not in params
    assert response.headers["cache-control"] == "no-store"
    return params


def assert_accepted(response: httpx.Response) -> None:
    """The request was valid: the browser continues at the interaction pages."""
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"{ISSUER}/interaction/")


def valid(client_id: str, **overrides: str | None) -> dict[str, str]:
    return authorization_params(client_id, pkce.new_verifier(), **overrides)


# PKCE (OAuth 2.1 §4.1.1, RFC 7636, RFC 9700 §2.1.1)


async def test_a08_missing_code_challenge_redirects_invalid_request_with_state_and_iss(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """OAuth 2.1 §4.1.1: code_challenge is required; RFC 6749 §4.1.2.1 error with state and
    RFC 9207 iss."""
    response = await get_authorize(app_client, valid(client_id, code_challenge=None))
    params = assert_redirect_error(response, "invalid_request")
    assert params == {
        "error": "invalid_request",
        "error_description": "code_challenge is required (PKCE with S256, OAuth 2.1 section 4.1.1)",
        "state": "xyz",
        "iss": ISSUER,
    }


async def test_a08_plain_code_challenge_method_is_refused(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """OAuth 2.1 §4.1.1 and MCP: S256 only; plain is a downgrade."""
    verifier = pkce.new_verifier()
    params = valid(client_id, code_challenge=verifier, code_challenge_method="plain")
    response = await get_authorize(app_client, params)
    body = assert_redirect_error(response, "invalid_request")
    assert body["error_description"] == (
        "code_challenge_method must be S256; got plain. The plain method is not supported"
    )


async def test_a08_missing_code_challenge_method_is_refused_not_defaulted_to_plain(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 7636 §4.3 would default to plain; OAuth 2.1 and MCP require S256, so a challenge
    without a method is refused."""
    response = await get_authorize(app_client, valid(client_id, code_challenge_method=None))
    body = assert_redirect_error(response, "invalid_request")
    assert "(missing)" in body["error_description"]


async def test_a08_malformed_s256_code_challenge_is_refused(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 7636 §4.2: an S256 challenge is 43 base64url characters."""
    response = await get_authorize(app_client, valid(client_id, code_challenge="short"))
    assert_redirect_error(response, "invalid_request")


# Client and redirect URI: a page, never a redirect (RFC 6749 §4.1.2.1, A07)


async def test_unknown_client_id_gets_an_error_page_and_no_redirect(
    app_client: httpx.AsyncClient,
) -> None:
    """RFC 6749 §4.1.2.1: with an invalid client_id the AS MUST NOT redirect."""
    response = await get_authorize(app_client, valid("no-such-client"))
    assert_page(response)
    assert "no-such-client" in response.text


async def test_missing_client_id_gets_an_error_page(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §4.1.2.1: no client, nowhere to redirect."""
    params = valid("x")
    del params["client_id"]
    response = await get_authorize(app_client, params)
    assert_page(response)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:53682/other",
        "https://attacker.example/callback",
        "http://127.0.0.1:53682/callback/",
        "http://[::1",
        "not a uri",
    ],
)
async def test_a07_unregistered_redirect_uri_gets_a_page_not_a_redirect(
    app_client: httpx.AsyncClient, client_id: str, redirect_uri: str
) -> None:
    """RFC 6749 §4.1.2.1, OAuth 2.1 §4.1.2.1: a redirect URI that does not match is never
    redirected to (no open redirect); the user sees a page."""
    response = await get_authorize(app_client, valid(client_id, redirect_uri=redirect_uri))
    assert_page(response)
    assert "Invalid redirect URI" in response.text


async def test_a07_missing_redirect_uri_with_several_registered_gets_a_page(
    app_client: httpx.AsyncClient,
) -> None:
    """OAuth 2.1 §4.1.1: redirect_uri is required when more than one is registered."""
    reg = await register(app_client, redirect_uris=[REDIRECT_URI, "http://127.0.0.1:53682/other"])
    response = await get_authorize(app_client, valid(reg["client_id"], redirect_uri=None))
    assert_page(response)


async def test_a07_missing_redirect_uri_with_one_registered_uses_it(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """OAuth 2.1 §4.1.1: redirect_uri is optional when only one is registered."""
    response = await get_authorize(app_client, valid(client_id, redirect_uri=None))
    assert_accepted(response)
    response = await get_authorize(
        app_client, valid(client_id, redirect_uri=None, response_type="token")
    )
    assert_redirect_error(response, "unsupported_response_type")


LOOPBACKS = [
    "http://127.0.0.1:53682/callback",
    "http://[::1]:53682/callback",
    "http://localhost:53682/callback",
]


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        (LOOPBACKS[0], "http://127.0.0.1:61000/callback"),
        (LOOPBACKS[0], "http://127.0.0.1/callback"),
        (LOOPBACKS[1], "http://[::1]:61000/callback"),
        (LOOPBACKS[2], "http://localhost:61000/callback"),
    ],
)
async def test_a07_loopback_redirect_uri_may_use_another_port(
    app_client: httpx.AsyncClient, registered: str, requested: str
) -> None:
    """RFC 8252 §7.3: for loopback redirect URIs the port is chosen at run time and must be
    allowed to vary."""
    reg = await register(app_client, redirect_uris=[registered])
    response = await get_authorize(app_client, valid(reg["client_id"], redirect_uri=requested))
    assert_accepted(response)


@pytest.mark.parametrize(
    "requested",
    [
        "http://127.0.0.1:61000/other",
        "http://127.0.0.1:61000/Callback",
        "http://127.0.0.2:53682/callback",
        "http://localhost:53682/callback",
        "http://[::1]:53682/callback",
        "https://127.0.0.1:53682/callback",
        "http://127.0.0.1:53682/callback?extra=1",
        "http://127.0.0.1:53682/callback#fragment",
        "http://user@127.0.0.1:53682/callback",
    ],
)
async def test_a07_loopback_redirect_uri_with_another_path_host_or_scheme_is_refused(
    app_client: httpx.AsyncClient, client_id: str, requested: str
) -> None:
    """RFC 8252 §7.3 relaxes only the port: scheme, host, path and query must match the
    registered http://127.0.0.1:53682/callback."""
    response = await get_authorize(app_client, valid(client_id, redirect_uri=requested))
    assert_page(response)


HTTPS_REDIRECT = "https://app.example.com/oauth/callback"


@pytest.mark.parametrize(
    "requested",
    [
        "https://app.example.com/oauth/callback/extra",
        "https://app.example.com/oauth/callbackx",
        "https://app.example.com/oauth/",
        "https://app.example.com/oauth/callback?next=https://attacker.example",
        "https://app.example.com/oauth/callback/",
        "https://app.example.com:8443/oauth/callback",
        "https://APP.example.com/oauth/callback",
        "http://app.example.com/oauth/callback",
        "https://app.example.com.attacker.example/oauth/callback",
    ],
)
async def test_a07_https_redirect_uri_must_match_exactly(
    app_client: httpx.AsyncClient, requested: str
) -> None:
    """OAuth 2.1 §4.1.1 / MCP security considerations: exact string matching for non-loopback
    redirect URIs, no prefix match and no extra query."""
    reg = await register(app_client, redirect_uris=[HTTPS_REDIRECT], application_type="web")
    exact = await get_authorize(app_client, valid(reg["client_id"], redirect_uri=HTTPS_REDIRECT))
    assert_accepted(exact)
    response = await get_authorize(app_client, valid(reg["client_id"], redirect_uri=requested))
    assert_page(response)


async def test_a07_registered_query_is_kept_and_error_parameters_are_appended(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 6749 §3.1.2: the registered query component is retained when parameters are added."""
    from tests.authserver.browser_steps import preregister

    with_query = "https://app.example.com/cb?tenant=blue"
    client_id, _ = await preregister(settings, redirect_uris=[with_query])
    response = await get_authorize(
        app_client, valid(client_id, redirect_uri=with_query, scope="nope:nope")
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith("https://app.example.com/cb?tenant=blue&")
    assert query_of(location)["error"] == "invalid_scope"


async def test_l3_a_self_registered_web_client_gets_no_error_redirect(
    app_client: httpx.AsyncClient,
) -> None:
    """L3, RFC 9700 §4.11.2: a client that registered https://evil.example/... itself cannot use
    this server as an open redirector: an error before any user interaction (here
    response_type=token) is shown on bastion's page, not sent to its address. Its loopback and
    private-use redirects stay on the user's device and are still redirected (A05 tests)."""
    evil = "https://evil.example/phish"
    reg = await register(app_client, redirect_uris=[evil], application_type="web")
    response = await get_authorize(
        app_client, valid(reg["client_id"], redirect_uri=evil, response_type="token")
    )
    assert_page(response)
    assert "evil.example" in response.text and "unsupported_response_type" in response.text


# Errors after the redirect URI is trusted: redirect with error, state, iss


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"scope": "mcp:tools admin:everything"}, "invalid_scope"),
        ({"scope": "offline_access"}, "invalid_scope"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"resource": "http://localhost:9001/mcp#frag"}, "invalid_target"),
        ({"resource": "urn:not-a-server"}, "invalid_target"),
        ({"resource": "http://[bad"}, "invalid_target"),
        ({"resource": "http://localhost:notaport/mcp"}, "invalid_target"),
        ({"resource": None}, "invalid_target"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:abc"}, "invalid_request"),
    ],
)
async def test_a05_authorization_errors_redirect_with_the_rfc_code_state_and_iss(
    app_client: httpx.AsyncClient, client_id: str, overrides: dict[str, str | None], error: str
) -> None:
    """RFC 6749 §4.1.2.1 error codes, RFC 8707 §2 invalid_target (unknown, malformed or missing
    resource with no default), RFC 9207 §2 iss in every error response."""
    response = await get_authorize(app_client, valid(client_id, **overrides))
    assert_redirect_error(response, error)


async def test_rfc8707_two_resources_are_refused_with_invalid_target(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 8707 §2: each token has one audience here, so two resource values are refused."""
    params = [*valid(client_id).items(), ("resource", "http://localhost:9001/other")]
    response = await get_authorize(app_client, params)
    body = assert_redirect_error(response, "invalid_target")
    assert body["error_description"] == (
        "send one resource per request; each token has a single audience"
    )


async def test_client_registered_for_a_scope_cannot_ask_for_another(
    app_client: httpx.AsyncClient,
) -> None:
    """RFC 7591 §2 scope: a client registered with a scope may only ask within it."""
    reg = await register(app_client, scope="mcp:tools")
    response = await get_authorize(app_client, valid(reg["client_id"], scope="mcp:prompts"))
    assert_redirect_error(response, "invalid_scope")


STEP_UP_RESOURCE = "http://localhost:9001/mcp"


async def test_self_registered_client_may_step_up_to_scopes_its_resource_lists(
    make_settings: Any,
) -> None:
    """MCP step-up authorization: a client that registered itself (DCR) with the scope of the
    first challenge may later ask for more scopes the resource lists, without registering again;
    the user's consent still decides. Scopes the resource does not list stay refused."""
    from bastion.config import ResourceSettings
    from tests.support.asgi import running

    settings = make_settings(
        resources=[ResourceSettings(uri=STEP_UP_RESOURCE, scopes=["mcp:tools", "notes:write"])]
    )
    async with running(settings) as client:
        reg = await register(client, scope="mcp:tools")
        wider = valid(reg["client_id"], scope="mcp:tools notes:write")
        assert_accepted(await get_authorize(client, wider))
        unlisted = valid(reg["client_id"], scope="mcp:tools mcp:prompts")
        assert_redirect_error(await get_authorize(client, unlisted), "invalid_scope")


async def test_preregistered_client_stays_within_its_registered_scope(make_settings: Any) -> None:
    """RFC 7591 §2 scope: an operator's registration is a limit, also for scopes the resource
    lists."""
    from bastion.config import ResourceSettings
    from tests.authserver.browser_steps import preregister
    from tests.support.asgi import running

    settings = make_settings(
        resources=[ResourceSettings(uri=STEP_UP_RESOURCE, scopes=["mcp:tools", "notes:write"])]
    )
    async with running(settings) as client:
        client_id, _ = await preregister(settings, scope="mcp:tools")
        wider = valid(client_id, scope="mcp:tools notes:write")
        assert_redirect_error(await get_authorize(client, wider), "invalid_scope")


async def test_a05_iss_and_state_are_in_the_successful_response(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 9207 §2 and RFC 6749 §4.1.2: code, state and iss, nothing else."""
    await add_user(settings)
    done = await authorize(app_client, client_id)
    assert set(done.params) == {"code", "state", "iss"}
    assert done.params["iss"] == ISSUER
    assert done.params["state"] == "xyz"
    assert done.location.split("?")[0] == REDIRECT_URI


STATE = "a b&c=d/e?f#g+h%20i\u00e9\u2603;,'\"<>"


async def test_state_is_echoed_exactly_including_characters_needing_encoding(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 6749 §4.1.2 and §4.1.2.1: state is returned exactly as received, on success and on
    error."""
    await add_user(settings)
    done = await authorize(app_client, client_id, state=STATE)
    assert done.params["state"] == STATE
    response = await get_authorize(app_client, valid(client_id, state=STATE, scope="bad:scope"))
    assert_redirect_error(response, "invalid_scope", state=STATE)


async def test_error_without_state_carries_no_state(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 6749 §4.1.2.1: state is REQUIRED in the error only if the request had one."""
    response = await get_authorize(app_client, valid(client_id, state=None, response_type="x"))
    assert_redirect_error(response, "unsupported_response_type", state=None)


@pytest.mark.parametrize(
    "query",
    [
        "client_id=%00",
        "client_id=" + "a" * 5000,
        "client_id=%ff%fe",
        "client_id=http%3A%2F%2F%5B%3A%3A1",
        "client_id=https%3A%2F%2F%5B%3A%3A1%2Fcimd",
        "%zz=%zz",
        "&&&=&=",
    ],
)
async def test_error_page_never_contains_a_stack_trace(
    app_client: httpx.AsyncClient, query: str
) -> None:
    """RFC 6749 §4.1.2.1 (page for a bad client) and house rule 3: never a traceback."""
    response = await app_client.get(f"/authorize?{query}")
    assert_page(response)


@pytest.mark.parametrize("name", ["state", "scope", "client_id", "redirect_uri"])
async def test_nul_character_in_a_parameter_gets_a_page(
    app_client: httpx.AsyncClient, client_id: str, name: str
) -> None:
    """RFC 6749 §3.1 / Appendix A: no parameter may contain NUL (PostgreSQL could not even store
    it); the request is malformed before the redirect URI is trusted, so the answer is a page."""
    params = valid(client_id)
    params[name] = params[name] + "\x00"
    response = await get_authorize(app_client, params)
    assert_page(response)
    assert "a parameter contains a NUL character" in response.text


@pytest.mark.parametrize("repeated", ["client_id", "redirect_uri", "state", "code_challenge"])
async def test_duplicate_parameters_are_refused(
    app_client: httpx.AsyncClient, client_id: str, repeated: str
) -> None:
    """RFC 6749 §3.1: request parameters MUST NOT be included more than once. Repeats are found
    before the redirect URI can be trusted, so the answer is a page."""
    params = list(valid(client_id).items())
    params.append((repeated, dict(params)[repeated]))
    response = await get_authorize(app_client, params)
    assert_page(response)
    assert f"parameter {repeated} is repeated" in response.text


async def test_post_authorize_with_a_form_works_like_get(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """OAuth 2.1 §4.1.1 (RFC 6749 §3.1): the authorization endpoint supports POST with form
    parameters, with the same outcome as GET."""
    accepted = await app_client.post("/authorize", data=valid(client_id))
    assert_accepted(accepted)
    refused = await app_client.post("/authorize", data=valid(client_id, code_challenge=None))
    assert_redirect_error(refused, "invalid_request")
    unknown = await app_client.post("/authorize", data=valid("no-such-client"))
    assert_page(unknown)
    as_json = await app_client.post("/authorize", json=valid(client_id))
    assert_page(as_json)


async def test_a08_authorization_pages_send_security_headers(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 6749 §10.13 (clickjacking) and §10.12: pages forbid framing and are not cached."""
    error = await get_authorize(app_client, valid("no-such-client"))
    accepted = await get_authorize(app_client, valid(client_id))
    login = await app_client.get(accepted.headers["location"])
    assert login.status_code == 200
    for page in (error, login):
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
    assert accepted.headers["cache-control"] == "no-store"


async def test_a08_no_cors_on_the_authorization_endpoint(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 9700 / MCP security best practices: the authorization endpoint is for browsers
    navigating, never for cross-origin scripts: no CORS header on any answer or preflight."""
    origin = {"Origin": "https://attacker.example"}
    answers = [
        await app_client.get("/authorize", params=valid(client_id), headers=origin),
        await app_client.get("/authorize", params=valid("nobody"), headers=origin),
        await app_client.get("/authorize", params=valid(client_id, scope="bad:x"), headers=origin),
        await app_client.post("/authorize", data=valid(client_id), headers=origin),
        await app_client.options(
            "/authorize",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        ),
    ]
    for response in answers:
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
