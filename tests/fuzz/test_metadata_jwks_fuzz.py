"""The well-known metadata documents (RFC 8414 §3, OpenID Connect Discovery §4) and /jwks
(RFC 7517 §5) under fuzzing: any method, query string, headers and paths near them.

A GET answers the same document every time (nothing a request carries changes it), any other
method a JSON 405, any other path a JSON 404; nothing is ever written.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import strategies as st

from bastion.oauth.well_known import metadata_paths
from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import AuthWorld

GROUP = "metadata + jwks"
METHODS = ["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
HEADERS = [
    "Accept",
    "Origin",
    "If-None-Match",
    "Authorization",
    "Accept-Encoding",
    "X-Forwarded-Host",
]


@st.composite
def request(draw: st.DrawFn, paths: list[str]) -> fuzz.Spec:
    path = draw(st.sampled_from(paths))
    if draw(st.integers(0, 4)) == 4:
        path += draw(st.sampled_from(["/", "/x", "%2F", "/..", "/.well-known"]))
    query = draw(st.lists(st.tuples(fuzz.text(12), fuzz.text(20)), max_size=3))
    if query:
        # uvicorn (h11) refuses a request head over 16 KiB before the app sees it.
        path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query)[:8192]
    spec = fuzz.Spec(draw(st.sampled_from(METHODS)), path)
    for name in draw(st.lists(st.sampled_from(HEADERS), max_size=3, unique=True)):
        spec.header(name, draw(fuzz.header_value()))
    if spec.method in ("POST", "PUT", "PATCH"):
        spec.content = draw(st.binary(max_size=40))
    return spec


def test_metadata_and_jwks_answer_the_same_documents_whatever_the_request(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    documents = {p: world.send(fuzz.Spec("GET", p)).json() for p in metadata_paths(world.issuer)}
    documents["/jwks"] = world.send(fuzz.Spec("GET", "/jwks")).json()
    assert documents["/jwks"]["keys"]
    world.changed()

    def check(spec: fuzz.Spec) -> None:
        response = world.send(spec)
        must.no_server_error(response)
        assert not world.changed(), must.describe(response)
        path = spec.path.split("?", 1)[0]
        if response.status_code == 200 and spec.method == "GET":
            assert response.json() == documents[path], must.describe(response)
            assert response.headers["access-control-allow-origin"] == "*"
        elif spec.method == "HEAD":
            assert response.content == b"", must.describe(response)
        elif response.status_code in (404, 405):
            assert response.json()["error"] in ("not_found", "invalid_request")
        else:
            # Starlette's redirect of a trailing slash, on this server.
            assert response.status_code == 307, must.describe(response)
            assert response.headers["location"].startswith(world.issuer)

    count = run_cases(cases(1.0, backend_name), request([*documents]), check)
    tally(GROUP, count, world.outcomes)
