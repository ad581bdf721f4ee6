"""Reading the 401/403 challenge (checklist C02): RFC 9110 §11.6.1 challenge lists, RFC 6750 §3
Bearer parameters, RFC 9728 §5.1 ``resource_metadata``."""

from __future__ import annotations

import pytest

from bastion.client.discovery import BearerChallenge, bearer_challenge


def test_c02_the_bearer_challenge_is_found_among_several() -> None:
    """RFC 9110 §11.6.1: one field may carry several challenges; the Bearer one is used."""
    found = bearer_challenge(
        ['Basic realm="x", Bearer resource_metadata="https://h/.well-known/a", scope="a b"']
    )
    assert found == BearerChallenge(resource_metadata="https://h/.well-known/a", scope=("a", "b"))


def test_c02_several_header_fields_are_combined() -> None:
    """RFC 9110 §5.3: several WWW-Authenticate fields are one list."""
    found = bearer_challenge(['DPoP algs="ES256"', 'Bearer error="invalid_token", scope="x"'])
    assert found is not None
    assert found.error == "invalid_token"
    assert found.scope == ("x",)


def test_c02_quoted_strings_keep_commas_and_escapes() -> None:
    """RFC 9110 §5.6.4: a quoted-string may hold commas and backslash-escaped quotes."""
    found = bearer_challenge(
        [
            'Bearer error="insufficient_scope", error_description="needs a, \\"b\\"", '
            'scope="files:read files:write", resource_metadata="https://h/m"'
        ]
    )
    assert found is not None
    assert found.error_description == 'needs a, "b"'
    assert found.scope == ("files:read", "files:write")
    assert found.resource_metadata == "https://h/m"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_c02_the_scheme_is_case_insensitive(scheme: str) -> None:
    """RFC 9110 §11.1: auth-scheme is case-insensitive."""
    assert bearer_challenge([f'{scheme} realm="mcp"']) == BearerChallenge(realm="mcp")


def test_c02_no_bearer_challenge_means_none() -> None:
    """Only other schemes (or nothing): there is no Bearer challenge to follow."""
    assert bearer_challenge(['Basic realm="x"']) is None
    assert bearer_challenge([]) is None
    assert bearer_challenge([""]) is None


def test_c02_a_bearer_challenge_with_parameters_wins_over_a_bare_one() -> None:
    """``Bearer, Bearer scope="x"``: the one that says something is used."""
    assert bearer_challenge(['Bearer, Bearer scope="x"']) == BearerChallenge(scope=("x",))


def test_c02_empty_values_and_repeated_scopes_are_normalised() -> None:
    """Empty parameters count as absent; a scope listed twice is asked for once."""
    found = bearer_challenge(['Bearer scope="a  a b", resource_metadata=""'])
    assert found == BearerChallenge(scope=("a", "b"))


def test_c02_garbage_never_raises() -> None:
    """The header comes from servers we do not control: malformed input yields what can be
    read, never an exception."""
    for value in ['Bearer scope="unterminated', "=,=,", "Bearer ,,,", '"', "Bearer a=b=c"]:
        bearer_challenge([value])


def test_c01_c02_an_unquoted_resource_metadata_url_is_followed_whole() -> None:
    """Out of the RFC 9110 grammar, but seen in the wild: ``resource_metadata`` unquoted. Its
    URL is kept up to the next comma, not cut at the first ":" (RFC 9728 §5.1)."""
    url = "https://h.example/.well-known/oauth-protected-resource/mcp"
    found = bearer_challenge([f"Bearer resource_metadata={url}, scope=mcp:tools"])
    assert found == BearerChallenge(resource_metadata=url, scope=("mcp:tools",))


def test_rfc9449_7_1_a_dpop_only_challenge_is_followed_like_a_bearer_one() -> None:
    """A resource that takes DPoP tokens only challenges with ``DPoP``: its resource_metadata,
    scope and error are read the same way, and the DPoP offer is recorded."""
    found = bearer_challenge(['DPoP algs="ES256 PS256", resource_metadata="https://h/m"'])
    assert found == BearerChallenge(resource_metadata="https://h/m", dpop_algs=("ES256", "PS256"))


def test_rfc9449_7_1_both_schemes_the_bearer_parameters_and_the_dpop_offer() -> None:
    found = bearer_challenge(['Bearer resource_metadata="https://h/m", DPoP'])
    assert found == BearerChallenge(resource_metadata="https://h/m", dpop_algs=())


def test_rfc9449_9_a_use_dpop_nonce_challenge_is_told_from_others() -> None:
    from bastion.client.dpop import asks_for_nonce

    assert asks_for_nonce(['DPoP error="use_dpop_nonce", algs="ES256"'])
    assert not asks_for_nonce(['DPoP error="invalid_dpop_proof"'])
    assert not asks_for_nonce(['Bearer error="use_dpop_nonce"'])
