"""WWW-Authenticate: Bearer challenges (RFC 6750 §3, RFC 9728 §5.1) and the challenge grammar
(RFC 9110 §11.6.1, §11.3 auth-param, §5.6.4 quoted-string)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.oauth.www_authenticate import (
    Challenge,
    build_bearer_challenge,
    parse_challenges,
    quote,
)

PRM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def test_r02_r03_challenge_names_the_metadata_and_the_scope() -> None:
    """RFC 9728 §5.1, RFC 6750 §3: resource_metadata and scope as quoted-strings."""
    assert build_bearer_challenge(resource_metadata=PRM, scope="mcp:tools files:read") == (
        f'Bearer resource_metadata="{PRM}", scope="mcp:tools files:read"'
    )


def test_r07_insufficient_scope_challenge_has_every_parameter_in_order() -> None:
    """RFC 6750 §3.1: error, error_description, scope; realm first when given."""
    header = build_bearer_challenge(
        resource_metadata=PRM,
        scope="files:write",
        error="insufficient_scope",
        error_description="needs files:write",
        realm="mcp",
    )
    assert header == (
        f'Bearer realm="mcp", resource_metadata="{PRM}", scope="files:write", '
        'error="insufficient_scope", error_description="needs files:write"'
    )


def test_challenge_without_parameters_is_the_bare_scheme() -> None:
    """RFC 9110 §11.6.1: auth-scheme alone is a challenge."""
    assert build_bearer_challenge(resource_metadata=None) == "Bearer"


def test_quoted_string_escapes_quote_and_backslash() -> None:
    """RFC 9110 §5.6.4: quoted-pair for DQUOTE and backslash."""
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    header = build_bearer_challenge(resource_metadata=None, realm='say "hi" \\o/')
    assert header == 'Bearer realm="say \\"hi\\" \\\\o/"'
    assert parse_challenges(header)[0].get("realm") == 'say "hi" \\o/'


@pytest.mark.parametrize("bad", ["a\r\nSet-Cookie: x=1", "tab\x00", "caf\u00e9", "line\n"])
def test_values_that_would_inject_headers_are_refused(bad: str) -> None:
    """RFC 9110 §5.5: CR, LF and NUL are never allowed in a field value."""
    with pytest.raises(ValueError, match="quoted-string"):
        build_bearer_challenge(resource_metadata=bad)


@pytest.mark.parametrize("scope", ['a"b', "a\\b", "a  b", "a\nb", " a"])
def test_scope_must_be_scope_tokens(scope: str) -> None:
    """RFC 6750 §3: scope = scope-token *( SP scope-token )."""
    with pytest.raises(ValueError, match="scope"):
        build_bearer_challenge(resource_metadata=PRM, scope=scope)


def test_error_code_with_forbidden_characters_is_refused() -> None:
    """RFC 6750 §3: error values use NQSCHAR only."""
    with pytest.raises(ValueError, match="error code"):
        build_bearer_challenge(resource_metadata=PRM, error='bad"code')


def test_error_description_is_reduced_to_the_allowed_characters() -> None:
    """RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E; exception text is mapped
    rather than failing the response."""
    header = build_bearer_challenge(
        resource_metadata=None, error="invalid_token", error_description='expected "x"\\y é\n'
    )
    assert header == ('Bearer error="invalid_token", error_description="expected \'x\'/y ??"')


def test_rfc9110_example_with_two_challenges_in_one_field() -> None:
    """RFC 9110 §11.6.1 example: params separated by commas like challenges; escapes inside."""
    header = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    assert parse_challenges(header) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]


def test_token68_challenges() -> None:
    """RFC 9110 §11.2: token68 after the scheme, with "=" padding."""
    assert parse_challenges('Negotiate a87421000492aa874209af8bc028==, Bearer realm="x"') == [
        Challenge("negotiate", {}, "a87421000492aa874209af8bc028=="),
        Challenge("bearer", {"realm": "x"}),
    ]
    assert parse_challenges("Basic dXNlcg=") == [Challenge("basic", {}, "dXNlcg=")]


def test_scheme_and_parameter_names_are_case_insensitive() -> None:
    """RFC 9110 §11.1 (scheme), §11.2 (parameter names)."""
    [challenge] = parse_challenges('BEARER Resource_Metadata="u", ERROR=invalid_token')
    assert challenge.scheme == "bearer"
    assert challenge.get("resource_metadata") == "u"
    assert challenge.get("Error") == "invalid_token"


def test_odd_whitespace_and_empty_list_elements_are_tolerated() -> None:
    """RFC 9110 §5.6.1 (empty list elements), §5.6.3 BWS around "="."""
    header = ' ,, Bearer   realm = "x" ,\t scope="a b",,  error = invalid_token , '
    assert parse_challenges(header) == [
        Challenge("bearer", {"realm": "x", "scope": "a b", "error": "invalid_token"})
    ]


def test_commas_inside_quoted_strings_do_not_split() -> None:
    """RFC 9110 §5.6.4: a quoted-string may contain commas and "=" signs."""
    [challenge] = parse_challenges('Bearer error_description="a, b=c, d", scope="x"')
    assert challenge.params == {"error_description": "a, b=c, d", "scope": "x"}


def test_bare_schemes_in_a_list() -> None:
    """A challenge without parameters followed by another challenge."""
    assert parse_challenges("Bearer, Basic realm=x") == [
        Challenge("bearer"),
        Challenge("basic", {"realm": "x"}),
    ]


def test_unquoted_url_value_is_kept_whole() -> None:
    """Out of grammar (":" and "/" are not tchar, RFC 9110 §5.6.2) but sent by servers in the
    wild: an unquoted value runs to the next comma or whitespace, so the URL is not cut at ":"."""
    header = f"Bearer resource_metadata={PRM}?v=1, scope=mcp:tools, Basic realm=x/y"
    assert parse_challenges(header) == [
        Challenge("bearer", {"resource_metadata": f"{PRM}?v=1", "scope": "mcp:tools"}),
        Challenge("basic", {"realm": "x/y"}),
    ]


def test_unquoted_value_ends_at_whitespace() -> None:
    """What follows an unquoted value up to the next comma is not part of it (nor a parameter)."""
    assert parse_challenges("Bearer realm=a b c, error=invalid_token") == [
        Challenge("bearer", {"realm": "a", "error": "invalid_token"})
    ]
    assert parse_challenges("Bearer realm=https://h/p\t, Negotiate abc==") == [
        Challenge("bearer", {"realm": "https://h/p"}),
        Challenge("negotiate", {}, "abc=="),
    ]


def test_quoted_values_are_unchanged_by_the_unquoted_tolerance() -> None:
    """RFC 9110 §5.6.4: a quoted URL with commas and escapes next to an unquoted one."""
    header = f'Bearer resource_metadata="{PRM}", error_description="a, \\"b\\"", scope=x:y'
    [challenge] = parse_challenges(header)
    assert challenge.params == {
        "resource_metadata": PRM,
        "error_description": 'a, "b"',
        "scope": "x:y",
    }


def test_repeated_parameter_keeps_the_first() -> None:
    """RFC 9110 §11.2: each parameter name only once per challenge; be lenient, keep the first."""
    [challenge] = parse_challenges('Bearer scope="a", scope="b"')
    assert challenge.get("scope") == "a"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", []),
        ("   ", []),
        (",,,", []),
        ('"quoted"', [Challenge("quoted")]),
        ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
        ("Bearer realm=", [Challenge("bearer", {}, "realm=")]),
        ("=== Bearer", [Challenge("bearer")]),
    ],
)
def test_garbage_gives_what_can_be_read(header: str, expected: list[Challenge]) -> None:
    """The parser reads headers from servers it does not control: it never raises."""
    assert parse_challenges(header) == expected


@given(st.text(max_size=200))
def test_parser_never_raises(header: str) -> None:
    """Any string at all: a list of challenges, no exception."""
    result = parse_challenges(header)
    assert all(isinstance(c, Challenge) and c.scheme for c in result)


_QDTEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_SCOPE_TOKEN = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)
_NQSCHAR = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=40,
)


@given(
    resource_metadata=st.none() | _QDTEXT.filter(bool),
    scope=st.none() | st.lists(_SCOPE_TOKEN, min_size=1, max_size=4).map(" ".join),
    error=st.none() | _NQSCHAR,
    error_description=st.none() | _NQSCHAR,
    realm=st.none() | _QDTEXT.filter(bool),
    other=st.sampled_from(["", 'Basic realm="x", ', "Negotiate abc==, "]),
)
def test_build_then_parse_round_trips(
    resource_metadata: str | None,
    scope: str | None,
    error: str | None,
    error_description: str | None,
    realm: str | None,
    other: str,
) -> None:
    """Whatever the builder writes, the parser reads back unchanged, even after another
    challenge in the same field (RFC 9110 §11.6.1)."""
    header = build_bearer_challenge(
        resource_metadata=resource_metadata,
        scope=scope,
        error=error,
        error_description=error_description,
        realm=realm,
    )
    challenges = parse_challenges(other + header)
    bearer = challenges[-1]
    assert bearer.scheme == "bearer"
    expected = {
        "realm": realm,
        "resource_metadata": resource_metadata,
        "scope": scope,
        "error": error,
        "error_description": error_description,
    }
    assert bearer.params == {k: v for k, v in expected.items() if v}
    assert bearer.token68 is None
