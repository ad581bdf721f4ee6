"""The log-in and consent pages under fuzzing: GET /interaction/{id}, POST .../login, POST
.../consent, GET and POST /logout.

Request ids of pending authorization requests (replaced as they are finished), finished ones
and any text; with and without the session and CSRF cookies; forms near a valid one and
arbitrary. Every answer is an HTML page without a stack trace, a redirect back to the
interaction page after a log-in, or a redirect to the request's own redirect URI with ``code``
or ``error``, ``iss`` and its ``state`` (RFC 6749 §4.1.2, RFC 9207 §2). Nothing is stored by a
refused step: no session without a log-in, no code or consent without an approval.

Passwords are checked with argon2 (about 0.3 s each at bastion's parameters), so
``login.max_failures`` is 1 and the log-in form's user names come from a short list; arbitrary
user names have a test of their own with fewer cases.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import strategies as st

from bastion.config import Settings
from bastion.oauth import pkce
from bastion.store import users as user_rows
from bastion.tokens import secrets as opaque
from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import RESOURCE, AuthWorld, auth_world
from tests.support.flow import PASSWORD

GROUP = "interaction pages"
CSRF = "c" * 43
USERNAMES = ["alice", "Alice", "alice ", "bob", "", "alice\u0130", "root"]
PASSWORDS = [PASSWORD, PASSWORD.upper(), "", "x"]
STATE = "s-1"


@dataclass
class Pages:
    """The world plus the browser's state: pending request ids and a signed-in session."""

    world: AuthWorld
    pending: list[str]
    clients: list[str]  # the client of each pending slot
    finished: list[str]
    session: str

    def new_request(self, client_id: str) -> str:
        """Start an authorization request; its id."""
        uri = self.world.redirects[client_id][0]
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": uri,
            "code_challenge": pkce.s256(pkce.new_verifier()),
            "code_challenge_method": "S256",
            "scope": "mcp:tools",
            "resource": RESOURCE,
            "state": STATE,
        }
        response = self.world.send(fuzz.Spec("GET", "/authorize?" + urlencode(params)))
        assert response.status_code == 303, response.text
        return response.headers["location"].rsplit("/", 1)[1]

    def sign_in(self) -> None:
        """A fresh session for alice, stored as a log-in stores it (the log-in form itself is
        throttled after one failure here, and fuzzed)."""
        world = self.world
        sid = secrets.token_urlsafe(32)

        async def store() -> None:
            async with world.bastion.db.connect() as conn:
                alice = await user_rows.by_username(conn, "alice")
            assert alice is not None
            now = int(time.time())
            async with world.bastion.db.transaction() as conn:
                await user_rows.create_session(conn, opaque.digest(sid), alice.id, now, now + 3600)

        world.run(store())
        self.session = sid


@pytest.fixture
def pages(make_settings: Callable[..., Settings], backend_name: str) -> Iterator[Pages]:
    settings = make_settings(login={"max_failures": 1})
    with auth_world(settings, backend_name, codes=0, grants=1) as world:
        clients = [world.public_id] * 6 + [world.web.client_id] * 3
        made = Pages(world, [], clients, [], "")
        made.pending = [made.new_request(c) for c in clients]
        made.sign_in()
        world.changed()
        yield made


Ident = tuple[str, Any]  # ("slot", index) | ("finished", index) | ("text", segment)


def ident() -> st.SearchStrategy[Ident]:
    return st.one_of(
        st.tuples(st.just("slot"), st.integers(0, 8)),
        st.tuples(st.just("slot"), st.integers(0, 8)),
        st.tuples(st.just("finished"), st.integers(0, 100)),
        st.tuples(st.just("text"), fuzz.path_segment()),
    )


def cookie() -> st.SearchStrategy[tuple[str | None, str | None]]:
    """(session, csrf) cookie choices: the real ones, none, garbage."""
    garbage = fuzz.header_value(50).map(lambda b: b.decode("latin-1").replace(";", ""))
    return st.tuples(
        st.one_of(st.just("real"), st.none(), garbage),
        st.one_of(st.just(CSRF), st.none(), garbage),
    )


@dataclass
class Step:
    """One drawn case: which page, which request id, which cookies, which form."""

    kind: str
    ident: Ident
    cookies: tuple[str | None, str | None]
    form: fuzz.Pairs
    body: bytes | None  # a raw body instead of the form

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self)[:2000])


def steps(forms: Callable[[str], st.SearchStrategy[fuzz.Pairs]]) -> st.SearchStrategy[Step]:
    kinds = st.sampled_from(["show", "login", "login", "consent", "consent", "logout"])

    @st.composite
    def build(draw: st.DrawFn) -> Step:
        kind = draw(kinds)
        form = draw(forms(kind))
        body = draw(fuzz.mostly(st.none(), fuzz.form_body(st.just(form))))
        return Step(kind, draw(ident()), draw(cookie()), form, body)

    return build()


def near(kind: str) -> st.SearchStrategy[fuzz.Pairs]:
    """A valid form of each page, changed a little (user names and values from lists)."""
    if kind == "login":
        template = [("csrf", CSRF), ("username", "alice"), ("password", PASSWORD)]
        values = [CSRF, *USERNAMES, *PASSWORDS, "allow", "deny"]
    else:
        template = [("csrf", CSRF), ("decision", "allow")]
        values = [CSRF, "allow", "deny", "ALLOW", "allow ", "", "\x00"]
    names = ["csrf", "username", "password", "decision", "scope", "request_id"]
    return fuzz.mutated(template, names, values, anything=False)


def anything(kind: str) -> st.SearchStrategy[fuzz.Pairs]:
    """Arbitrary forms; a log-in form names a listed user, or carries no valid CSRF token."""
    names = ["csrf", "username", "password", "decision"]
    pairs = fuzz.form_pairs(names, [CSRF, *USERNAMES, *PASSWORDS, "allow", "deny"])
    if kind != "login":
        return pairs
    return pairs.map(
        lambda p: (
            [(k, v) for k, v in p if k != "username"] + [("username", "alice")]
            if ("csrf", CSRF) in p
            else p
        )
    )


def spec_of(pages: Pages, step: Step) -> tuple[fuzz.Spec, str | None]:
    """The request of a step, and the pending request id it names (if any)."""
    where, value = step.ident
    named: str | None = None
    if where == "slot":
        named = pages.pending[value]
        segment = named
    elif where == "finished" and pages.finished:
        segment = pages.finished[value % len(pages.finished)]
    else:
        segment = str(value) if where == "text" else "expired"
    path = {
        "show": f"/interaction/{segment}",
        "login": f"/interaction/{segment}/login",
        "consent": f"/interaction/{segment}/consent",
        "logout": "/logout",
    }[step.kind]
    method = "GET" if step.kind == "show" else "POST"
    if step.kind == "logout" and step.body is not None and len(step.body) % 2:
        method = "GET"
    spec = fuzz.Spec(method, path)
    session, csrf = step.cookies
    jar = []
    if session is not None:
        jar.append(f"bastion-session={pages.session if session == 'real' else session}")
    if csrf is not None:
        jar.append(f"bastion-csrf={csrf}")
    if jar:
        spec.header("Cookie", "; ".join(jar).encode("latin-1", "replace"))
    if method == "POST":
        spec.content = step.body if step.body is not None else urlencode(step.form).encode()
        spec.header("Content-Type", b"application/x-www-form-urlencoded")
    return spec, named


def checker(pages: Pages) -> Callable[[Step], None]:
    return lambda step: check(pages, step)


def check(pages: Pages, step: Step) -> None:
    world = pages.world
    world.changed()
    spec, named = spec_of(pages, step)
    response = world.send(spec)
    written = world.changed()
    must.no_server_error(response)
    location = response.headers.get("location", "")
    target = location.split("?", 1)[0]
    if response.status_code in (302, 303) and target.startswith(f"{world.issuer}/interaction/"):
        # A log-in: a session, back to the same request.
        assert step.kind == "login" and named is not None, must.describe(response)
        assert target == f"{world.issuer}/interaction/{named}", must.describe(response)
        assert written <= {"sessions"}, must.describe(response)
        return
    if response.status_code in (302, 303):
        # Back to the client: the request's own redirect URI, with code or error, iss, state.
        assert named is not None, must.describe(response)
        slot = pages.pending.index(named)
        uri = world.redirects[pages.clients[slot]][0]
        assert location.startswith(uri + ("&" if "?" in uri else "?")), must.describe(response)
        params = must.redirect_params(location)
        if "code" in params:
            assert params["iss"] == [world.issuer] and params["state"] == [STATE]
            assert written <= {"authorization_codes", "consents", "authorization_requests"}
        else:
            must.error_redirect(response, redirect_uris=[uri], issuer=world.issuer, state=STATE)
            assert written <= {"authorization_requests"}, must.describe(response)
        pages.finished.append(named)
        pages.pending[slot] = pages.new_request(pages.clients[slot])
        world.changed()
        return
    if response.status_code == 405:
        must.json_error(response, frozenset({"invalid_request"}))
    elif response.status_code == 404:
        # An empty id or one with a slash names no route: the app's JSON 404.
        assert step.ident[0] == "text", must.describe(response)
        assert response.json()["error"] == "not_found", must.describe(response)
    else:
        must.html_page(response)
        assert response.status_code in (200, 400, 401, 403, 429), must.describe(response)
    signed_out = "bastion-session=" in response.headers.get("set-cookie", "")
    if step.kind == "logout" and signed_out:
        assert response.status_code == 200, must.describe(response)
        assert written <= {"sessions"}, must.describe(response)
        if step.cookies[0] == "real":
            pages.sign_in()  # the fuzzer ended alice's session: keep the next cases deep
            world.changed()
        return
    assert not written, f"{written} changed: {must.describe(response)}"


def test_interaction_steps_near_a_valid_one_answer_a_page_or_a_redirect_in_the_rfc_form(
    pages: Pages, backend_name: str, tally: Tally
) -> None:
    count = run_cases(cases(0.6, backend_name), steps(near), checker(pages))
    tally(GROUP, count, pages.world.outcomes)


def test_arbitrary_interaction_steps_store_nothing_they_should_not(
    pages: Pages, backend_name: str, tally: Tally
) -> None:
    count = run_cases(cases(0.39, backend_name), steps(anything), checker(pages))
    tally(GROUP, count, pages.world.outcomes)


def test_arbitrary_user_names_at_the_log_in_form_are_refused_with_a_page(
    pages: Pages, backend_name: str, tally: Tally
) -> None:
    """Any user name reaches the password check (argon2, slow: few cases)."""
    form = st.builds(
        lambda user, password: [("csrf", CSRF), ("username", user), ("password", password)],
        fuzz.text(),
        fuzz.pick_or_text(PASSWORDS),
    )
    login = st.builds(
        Step,
        st.just("login"),
        st.tuples(st.just("slot"), st.integers(0, 8)),
        st.just((None, CSRF)),
        form,
        st.none(),
    )
    count = run_cases(max(10, cases(0.01, backend_name)), login, checker(pages))
    tally(GROUP, count, pages.world.outcomes)
