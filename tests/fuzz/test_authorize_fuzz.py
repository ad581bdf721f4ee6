"""GET and POST /authorize under fuzzing (OAuth 2.1 §4.1.1, RFC 6749 §4.1.2.1, RFC 9207, RFC
9700 §4.11.2).

Requests near a valid one for each kind of client (public with a loopback redirect, an
operator's web client, a web client that registered itself, a Client ID Metadata Document, a
machine client), a few parameters changed, and requests of arbitrary parameters; in the query
or as a form. Every answer is one of: a redirect to this server's interaction page (the request
was stored), an HTML page without a stack trace (nothing stored), or an error redirect to a
redirect URI registered for the client, carrying ``error``, ``iss`` and the request's ``state``
(nothing stored).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st

from bastion.oauth import pkce
from bastion.oauth.redirect_uri import matches
from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import RESOURCE, AuthWorld

GROUP = "authorize"
PARAMS = [
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "resource",
    "state",
    "request",
    "request_uri",
    "response_mode",
    "prompt",
    "nonce",
]
VERIFIER = pkce.new_verifier()
MAX_QUERY = 8 * 1024


def values(world: AuthWorld) -> list[str]:
    uris = [uri for listed in world.redirects.values() for uri in listed]
    return [
        *world.redirects,
        *uris,
        "http://127.0.0.1:1/callback",
        "http://localhost:53682/callback",
        "code",
        "token",
        "code id_token",
        "S256",
        "plain",
        pkce.s256(VERIFIER),
        pkce.s256(VERIFIER) + "\n",
        RESOURCE,
        RESOURCE + "/",
        "http://localhost:9001/MCP",
        "mcp:tools",
        "mcp:tools mcp-registry:admin",
        "openid",
        "xyz",
    ]


def templates(world: AuthWorld) -> list[fuzz.Pairs]:
    out = []
    for client_id, uris in world.redirects.items():
        for uri in uris or ["http://127.0.0.1:53682/callback"]:
            out.append(
                [
                    ("response_type", "code"),
                    ("client_id", client_id),
                    ("redirect_uri", uri),
                    ("code_challenge", pkce.s256(VERIFIER)),
                    ("code_challenge_method", "S256"),
                    ("scope", "mcp:tools"),
                    ("resource", RESOURCE),
                    ("state", "xyz"),
                ]
            )
    return out


@st.composite
def request(draw: st.DrawFn, forms: st.SearchStrategy[fuzz.Pairs], near: bool) -> fuzz.Spec:
    pairs = draw(forms)
    method = draw(st.sampled_from(["GET", "GET", "POST", "HEAD"]))
    if method == "POST":
        encoded = st.just(urlencode(pairs).encode())
        body = draw(
            fuzz.mostly(encoded, fuzz.form_body(st.just(pairs)))
            if near
            else fuzz.form_body(st.just(pairs))
        )
        form = b"application/x-www-form-urlencoded"
        ctype = draw(fuzz.mostly(st.just(form), fuzz.content_type()))
        return fuzz.Spec("POST", "/authorize", content=body).header("Content-Type", ctype)
    # uvicorn (h11) refuses a request head over 16 KiB before the app sees it.
    return fuzz.Spec(method, "/authorize?" + urlencode(pairs)[:MAX_QUERY])


def sent(spec: fuzz.Spec) -> dict[str, list[str]]:
    """The parameters as the server reads them (empty values are omitted, RFC 6749 §3.1)."""
    raw = spec.content.decode("utf-8", "replace") if spec.method == "POST" else spec.path[11:]
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if value:
            grouped.setdefault(key, []).append(value)
    return grouped


def checker(world: AuthWorld) -> Callable[[fuzz.Spec], None]:
    world.changed()
    return lambda spec: check(world, spec)


def check(world: AuthWorld, spec: fuzz.Spec) -> None:
    response = world.send(spec)
    written = world.changed()
    must.no_server_error(response)
    location = response.headers.get("location", "")
    if response.status_code == 303 and location.startswith(f"{world.issuer}/interaction/"):
        assert written <= {"authorization_requests"}, must.describe(response)
        return
    assert not written, f"refused, yet {written} changed: {must.describe(response)}"
    if response.status_code == 302:
        params = sent(spec)
        [client_id] = params["client_id"]
        registered = world.redirects[client_id]
        redirect_uri = params.get("redirect_uri", registered)[0]
        assert matches(redirect_uri, registered), must.describe(response)
        assert location.startswith(redirect_uri), must.describe(response)
        state = params.get("state", [None])[0]
        must.error_redirect(
            response, redirect_uris=[redirect_uri], issuer=world.issuer, state=state
        )
        return
    if spec.method == "HEAD":
        assert response.status_code in (200, 400, 403, 405), must.describe(response)
        return
    if response.status_code == 405:
        must.json_error(response, frozenset({"invalid_request"}))
        return
    must.html_page(response)
    assert response.status_code in (400, 403), must.describe(response)


def test_authorization_requests_near_a_valid_one_are_stored_or_refused_in_the_rfc_form(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    """Valid requests of every kind of client with parameters dropped, replaced, repeated."""
    names, known = PARAMS, values(world)
    forms = st.sampled_from(templates(world)).flatmap(lambda t: fuzz.mutated(t, names, known))
    count = run_cases(cases(0.7, backend_name), request(forms, near=True), checker(world))
    tally(GROUP, count, world.outcomes)


def test_arbitrary_authorization_requests_never_redirect_elsewhere_or_store_anything(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    """Any parameters, any values, any encoding: a page or a redirect to a registered URI."""
    forms = fuzz.form_pairs(PARAMS, values(world))
    count = run_cases(cases(0.3, backend_name), request(forms, near=False), checker(world))
    tally(GROUP, count, world.outcomes)
