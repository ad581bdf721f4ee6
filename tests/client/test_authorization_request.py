"""The authorization request and the validation of its response, as pure functions: scope
selection (C14-C16), PKCE and ``resource`` (C10, C12), ``state`` (C17) and RFC 9207 ``iss``
(C11)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from bastion.client.errors import (
    AuthorizationDenied,
    InvalidCallback,
    IssuerResponseMismatch,
    PkceNotSupported,
    StateMismatch,
)
from bastion.client.flow import AuthorizationRequest, build_authorization_request, validate_callback
from bastion.client.models import AuthorizationServerMetadata
from bastion.client.scope_selection import (
    initial_scopes,
    scope_parameter,
    step_up_scopes,
    with_offline_access,
)
from bastion.oauth import pkce

ISSUER = "https://as.example.com"


def test_c14_scope_priority_challenge_then_prm_then_none() -> None:
    """MCP "Scope Selection Strategy": the challenge's scope (authoritative, even when it is
    not among ``scopes_supported``), else all of ``scopes_supported``, else no parameter."""
    assert initial_scopes(["files:read"], ["mcp:profile"]) == ("files:read",)
    assert initial_scopes(None, ["a", "b", "c"]) == ("a", "b", "c")
    assert initial_scopes(None, None) == ()
    assert scope_parameter(()) is None


def test_c15_step_up_is_the_union_of_previous_and_challenged_scopes() -> None:
    """MCP "Step-Up Authorization Flow": previously requested scopes are kept."""
    assert step_up_scopes(["mcp:basic"], ["mcp:write"]) == ("mcp:basic", "mcp:write")
    assert step_up_scopes(["a", "b"], ["b"]) == ("a", "b")


def test_c16_offline_access_only_when_listed_and_with_other_scopes() -> None:
    """MCP "Refresh Tokens": MAY add offline_access when the AS lists it; never alone (that
    would replace the default scopes); not when the client does not want refresh tokens."""
    listed = ["mcp:basic", "offline_access"]
    assert with_offline_access(["mcp:basic"], listed) == ("mcp:basic", "offline_access")
    assert with_offline_access(["mcp:basic"], ["mcp:basic"]) == ("mcp:basic",)
    assert with_offline_access(["mcp:basic"], None) == ("mcp:basic",)
    assert with_offline_access([], listed) == ()
    assert with_offline_access(["mcp:basic"], listed, wanted=False) == ("mcp:basic",)


def metadata(**fields: Any) -> AuthorizationServerMetadata:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "token_endpoint": f"{ISSUER}/token",
        "authorization_endpoint": f"{ISSUER}/authorize?tenant=x",
        "registration_endpoint": None,
        "scopes_supported": None,
        "code_challenge_methods_supported": ("S256",),
        "token_endpoint_auth_methods_supported": None,
        "grant_types_supported": None,
        "iss_parameter_supported": True,
        "client_id_metadata_document_supported": False,
        "url": f"{ISSUER}/.well-known/oauth-authorization-server",
        "raw": {},
    }
    values.update(fields)
    return AuthorizationServerMetadata(**values)


def request(**fields: Any) -> AuthorizationRequest:
    return build_authorization_request(
        metadata(**fields),
        client_id="client-1",
        redirect_uri="http://127.0.0.1:5555/callback",
        resource="https://mcp.example.com/mcp",
        scopes=("mcp:basic",),
    )


def test_c10_c12_the_request_carries_pkce_s256_state_and_resource() -> None:
    """OAuth 2.1 §4.1.1 with PKCE S256 (RFC 7636 §4.3), RFC 8707 ``resource``, a 256-bit
    ``state``; the endpoint's own query parameters are kept."""
    made = request()
    params = {k: v[0] for k, v in parse_qs(urlsplit(made.url).query).items()}
    assert params["code_challenge"] == pkce.s256(made.verifier)
    assert params["code_challenge_method"] == "S256"
    assert params["resource"] == "https://mcp.example.com/mcp"
    assert params["scope"] == "mcp:basic"
    assert params["state"] == made.state
    assert len(made.state) >= 43
    assert params["tenant"] == "x"
    assert params["response_type"] == "code"
    assert made.expected_issuer == ISSUER
    assert made.verifier not in repr(made)


def test_c14_no_scopes_means_no_scope_parameter() -> None:
    made = build_authorization_request(
        metadata(),
        client_id="c",
        redirect_uri="http://127.0.0.1:1/callback",
        resource="https://r",
    )
    assert "scope" not in parse_qs(urlsplit(made.url).query)


@pytest.mark.parametrize("methods", [None, ("plain",)])
def test_c10_no_s256_no_request(methods: tuple[str, ...] | None) -> None:
    """The request is never built for a server that does not advertise S256."""
    with pytest.raises(PkceNotSupported):
        request(code_challenge_methods_supported=methods)


def callback(made: AuthorizationRequest, **params: str | list[str]) -> str:
    values: dict[str, Any] = {"code": "c0de", "state": made.state, "iss": ISSUER}
    values.update(params)
    return urlencode({k: v for k, v in values.items() if v is not None}, doseq=True)


def test_c11_c17_a_correct_response_yields_the_code() -> None:
    made = request()
    assert validate_callback(callback(made), made) == "c0de"


@pytest.mark.parametrize("state", [None, "other", ""])
def test_c17_a_missing_or_different_state_is_refused(state: str | None) -> None:
    made = request()
    with pytest.raises(StateMismatch):
        validate_callback(callback(made, state=state) if state is not None else "code=x", made)


@pytest.mark.parametrize(
    "iss",
    [
        f"{ISSUER}/",
        "HTTPS://as.example.com",
        "https://AS.EXAMPLE.COM",
        "https://as.example.com:443",
        "https://as%2Eexample.com",
        "https://evil.example.com",
        "",
    ],
)
def test_c11_iss_is_compared_without_any_normalisation(iss: str) -> None:
    """RFC 9207 §2.4 with MCP's rule: no case folding, default-port elision, trailing-slash or
    percent-encoding normalisation; advertised or not, a present iss must be identical."""
    for advertised in (True, False):
        made = request(iss_parameter_supported=advertised)
        with pytest.raises(IssuerResponseMismatch):
            validate_callback(callback(made, iss=iss), made)


def test_c11_absent_iss_is_refused_only_when_advertised() -> None:
    """The table of MCP "Authorization Response Validation": absent + advertised -> reject;
    absent + not advertised -> proceed."""
    advertised = request(iss_parameter_supported=True)
    with pytest.raises(IssuerResponseMismatch):
        validate_callback(f"code=x&state={advertised.state}", advertised)
    quiet = request(iss_parameter_supported=False)
    assert validate_callback(f"code=x&state={quiet.state}", quiet) == "x"


def test_c11_error_fields_count_only_after_iss_matches() -> None:
    """An error response is reported (RFC 6749 §4.1.2.1) only when its iss is right; with a wrong
    iss the error fields are neither shown nor acted on."""
    made = request()
    with pytest.raises(AuthorizationDenied) as caught:
        validate_callback(
            callback(made, code=None, error="access_denied", error_description="no"), made
        )
    assert caught.value.error == "access_denied"
    with pytest.raises(IssuerResponseMismatch) as mismatch:
        validate_callback(
            callback(made, code=None, error="access_denied", iss="https://evil"), made
        )
    assert "access_denied" not in str(mismatch.value)


@pytest.mark.parametrize("name", ["code", "state", "iss"])
def test_repeated_parameters_are_refused(name: str) -> None:
    """RFC 6749 §3.1: parameters must not be included more than once."""
    made = request()
    value = {"code": "c0de", "state": made.state, "iss": ISSUER}[name]
    with pytest.raises((InvalidCallback, StateMismatch)):
        validate_callback(callback(made, **{name: [value, value]}), made)


def test_a_response_without_a_code_is_refused() -> None:
    made = request()
    with pytest.raises(InvalidCallback):
        validate_callback(callback(made, code=None), made)
