"""A local stand-in for GitHub's OAuth app endpoints and the few REST API endpoints bastion reads.

Follows GitHub's documentation (docs.github.com: "Authorizing OAuth apps", "Troubleshooting
authorization request errors", "Troubleshooting OAuth app access token request errors", REST API
"Users", "Emails", "Organizations", "Teams"), served like GitHub Enterprise Server: the web flow
at the root, the API under ``/api/v3``.

- ``GET /login/oauth/authorize``: ``client_id`` (required), ``redirect_uri`` (must be the
  registered callback, else ``error=redirect_uri_mismatch`` to the callback), ``scope``
  (space-delimited), ``state``, ``code_challenge`` + ``code_challenge_method=S256``. The signed-in
  user approves at once, or (``deny``) the user refuses: ``error=access_denied`` with GitHub's
  ``error_description`` and ``error_uri``.
- ``POST /login/oauth/access_token``: ``client_id``, ``client_secret``, ``code``,
  ``redirect_uri``, ``code_verifier``. GitHub answers errors with status 200 and an ``error``
  (``incorrect_client_credentials``, ``redirect_uri_mismatch``, ``bad_verification_code``). The
  body is form-encoded by default, JSON for ``Accept: application/json``, XML for
  ``Accept: application/xml``; ``scope`` is comma-separated.
- ``GET /api/v3/user``, ``/user/emails``, ``/user/orgs``, ``/user/teams`` with
  ``Authorization: Bearer`` (or ``token``), paginated by ``per_page`` (default 30, at most 100)
  and ``page`` with a ``Link`` header; ``401 {"message": "Requires authentication"}`` otherwise;
  ``X-OAuth-Scopes`` on every answer. ``GET /api/v3/orgs/{org}/members/{username}``: 204 or 404.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion.oauth import pkce
from tests.support.live import serve

DOCS = "https://docs.github.com/apps/managing-oauth-apps"


@dataclass
class GitHubUser:
    """A GitHub account: profile, e-mail addresses, organisations and teams."""

    id: int = 583231
    login: str = "octocat"
    name: str | None = "The Octocat"
    public_email: str | None = "octocat@users.noreply.github.com"
    emails: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"email": "octo@old.example", "primary": False, "verified": False, "visibility": None},
            {
                "email": "Octocat@Acme.example",
                "primary": True,
                "verified": True,
                "visibility": "private",
            },
        ]
    )
    orgs: list[str] = field(default_factory=lambda: ["acme"])
    teams: list[tuple[str, str]] = field(default_factory=lambda: [("acme", "platform")])


@dataclass
class GitHubStandIn:
    """One OAuth app (client id, secret, callback) and the user who is signed in at "GitHub"."""

    client_id: str = "Iv1.b507a08c87ecfe98"
    client_secret: str = field(default_factory=lambda: secrets.token_hex(20))
    callback_url: str = ""
    user: GitHubUser = field(default_factory=GitHubUser)
    deny: bool = False
    base: str = ""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> granted scopes
    authorization_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    api_requests: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/login/oauth/authorize", self.authorize),
                Route("/login/oauth/access_token", self.access_token, methods=["POST"]),
                Route("/api/v3", self.api_root),
                Route("/api/v3/", self.api_root),
                Route("/api/v3/user", self.api_user),
                Route("/api/v3/user/emails", self.api_emails),
                Route("/api/v3/user/orgs", self.api_orgs),
                Route("/api/v3/user/teams", self.api_teams),
                Route("/api/v3/orgs/{org}/members/{username}", self.api_member),
            ]
        )

    # -- the web application flow ------------------------------------------------------------

    def _back(self, params: dict[str, str]) -> Response:
        return RedirectResponse(f"{self.callback_url}?{urlencode(params)}", status_code=302)

    async def authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        self.authorization_requests.append(q)
        if q.get("client_id") != self.client_id:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        state = {"state": q["state"]} if "state" in q else {}
        if q.get("redirect_uri", self.callback_url) != self.callback_url:
            return self._back(
                {
                    "error": "redirect_uri_mismatch",
                    "error_description": "The redirect_uri MUST match the registered callback "
                    "URL for this application.",
                    "error_uri": f"{DOCS}/troubleshooting-authorization-request-errors",
                    **state,
                }
            )
        if self.deny:
            return self._back(
                {
                    "error": "access_denied",
                    "error_description": "The user has denied your application access.",
                    "error_uri": f"{DOCS}/troubleshooting-authorization-request-errors",
                    **state,
                }
            )
        code = secrets.token_hex(10)
        self.codes[code] = q
        return self._back({"code": code, **state})

    def _answer(self, request: Request, body: dict[str, str]) -> Response:
        accept = request.headers.get("accept", "")
        if "application/json" in accept:
            return JSONResponse(body)
        if "application/xml" in accept:
            inner = "".join(f"<{k}>{v}</{k}>" for k, v in body.items())
            return Response(f"<OAuth>{inner}</OAuth>", media_type="application/xml")
        return Response(urlencode(body), media_type="application/x-www-form-urlencoded")

    async def access_token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        form = {**dict(request.query_params), **form}
        self.token_requests.append(form)
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return self._answer(
                request,
                {
                    "error": "incorrect_client_credentials",
                    "error_description": "The client_id and/or client_secret passed are incorrect.",
                    "error_uri": f"{DOCS}/troubleshooting-oauth-app-access-token-request-errors",
                },
            )
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is not None and form.get("redirect_uri", self.callback_url) != asked.get(
            "redirect_uri", self.callback_url
        ):
            return self._answer(
                request,
                {
                    "error": "redirect_uri_mismatch",
                    "error_description": "The redirect_uri MUST match the registered callback "
                    "URL for this application.",
                    "error_uri": f"{DOCS}/troubleshooting-authorization-request-errors",
                },
            )
        challenge = (asked or {}).get("code_challenge")
        if asked is None or (
            challenge is not None and pkce.s256(form.get("code_verifier", "")) != challenge
        ):
            return self._answer(
                request,
                {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                    "error_uri": f"{DOCS}/troubleshooting-oauth-app-access-token-request-errors",
                },
            )
        token = "gho_" + secrets.token_hex(18)
        scopes = ",".join(asked.get("scope", "").split())
        self.tokens[token] = scopes
        return self._answer(
            request, {"access_token": token, "scope": scopes, "token_type": "bearer"}
        )

    # -- the REST API --------------------------------------------------------------------------

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        for scheme in ("Bearer ", "token "):
            if header.startswith(scheme) and header[len(scheme) :] in self.tokens:
                return header[len(scheme) :]
        return None

    def _json(self, token: str, data: Any, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(
            data,
            headers={"X-OAuth-Scopes": self.tokens[token].replace(",", ", "), **(headers or {})},
        )

    def _unauthorized(self) -> Response:
        return JSONResponse(
            {
                "message": "Requires authentication",
                "documentation_url": "https://docs.github.com/rest",
            },
            status_code=401,
        )

    def _page(self, request: Request, token: str, items: list[Any]) -> Response:
        per_page = min(int(request.query_params.get("per_page", "30")), 100)
        page = int(request.query_params.get("page", "1"))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            following = (
                f"{request.url.replace(query=urlencode({'per_page': per_page, 'page': page + 1}))}"
            )
            last = (len(items) + per_page - 1) // per_page
            final = f"{request.url.replace(query=urlencode({'per_page': per_page, 'page': last}))}"
            headers["Link"] = f'<{following}>; rel="next", <{final}>; rel="last"'
        return self._json(token, chunk, headers)

    async def api_root(self, request: Request) -> Response:
        return JSONResponse({"current_user_url": f"{self.base}/api/v3/user"})

    async def api_user(self, request: Request) -> Response:
        self.api_requests.append(request.url.path)
        token = self._token(request)
        if token is None:
            return self._unauthorized()
        u = self.user
        return self._json(
            token,
            {
                "login": u.login,
                "id": u.id,
                "node_id": "MDQ6VXNlcjE=",
                "type": "User",
                "site_admin": False,
                "name": u.name,
                "email": u.public_email,
            },
        )

    async def api_emails(self, request: Request) -> Response:
        self.api_requests.append(request.url.path)
        token = self._token(request)
        if token is None:
            return self._unauthorized()
        if "user:email" not in self.tokens[token].split(",") and "user" not in self.tokens[
            token
        ].split(","):
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return self._page(request, token, self.user.emails)

    async def api_orgs(self, request: Request) -> Response:
        self.api_requests.append(request.url.path)
        token = self._token(request)
        if token is None:
            return self._unauthorized()
        orgs = [
            {"login": o, "id": 1000 + i, "url": f"{self.base}/api/v3/orgs/{o}", "description": None}
            for i, o in enumerate(self.user.orgs)
        ]
        return self._page(request, token, orgs)

    async def api_teams(self, request: Request) -> Response:
        self.api_requests.append(request.url.path)
        token = self._token(request)
        if token is None:
            return self._unauthorized()
        teams = [
            {
                "id": 2000 + i,
                "name": slug.title(),
                "slug": slug,
                "privacy": "closed",
                "organization": {"login": org, "id": 1000 + i},
            }
            for i, (org, slug) in enumerate(self.user.teams)
        ]
        return self._page(request, token, teams)

    async def api_member(self, request: Request) -> Response:
        token = self._token(request)
        if token is None:
            return self._unauthorized()
        member = (
            request.path_params["org"] in self.user.orgs
            and request.path_params["username"] == self.user.login
        )
        return Response(status_code=204 if member else 404)


@asynccontextmanager
async def github_standin(**kwargs: Any) -> AsyncIterator[GitHubStandIn]:
    """Run a :class:`GitHubStandIn` on a free loopback port until the block ends."""
    github = GitHubStandIn(**kwargs)
    async with serve(github.app()) as base:
        github.base = base
        yield github
