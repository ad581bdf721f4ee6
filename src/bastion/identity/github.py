"""Who signed in at GitHub: the REST API after the OAuth web application flow.

GitHub's OAuth apps speak OAuth 2.0 without OpenID Connect, so the identity comes from the API
with the user's access token (docs.github.com, "Authorizing OAuth apps", "REST API endpoints for
users, emails, organizations, teams"):

- ``GET /user``: the numeric ``id`` (stable; ``login`` can be renamed), ``login``, ``name``;
- ``GET /user/emails`` (scope ``user:email``): the address with ``primary`` and ``verified``;
- ``GET /user/orgs`` (scope ``read:org``): organisation logins;
- ``GET /user/teams`` (scope ``read:org``): teams, kept as ``org/team-slug``.

Lists are paginated with ``per_page=100`` and the ``Link: <…>; rel="next"`` header, followed
only on the API's own origin and for at most ``MAX_PAGES`` pages.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bastion.identity.errors import UpstreamInvalidResponse
from bastion.identity.providers import GITHUB_API_VERSION
from bastion.identity.upstream_client import ProviderClient

MAX_PAGES = 10
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _headers(access_token: str) -> dict[str, str]:
    return {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {access_token}",
        "X-GitHub-Api-Version": GITHUB_API_VERSION,
    }


async def _list(client: ProviderClient, path: str, access_token: str, what: str) -> list[object]:
    api = client.spec.api_url or ""
    url: str | None = f"{api}{path}?per_page=100"
    found: list[object] = []
    for _ in range(MAX_PAGES):
        if url is None:
            break
        response, body = await client.request("GET", url, what, headers=_headers(access_token))
        if response.status_code != 200:
            scopes = response.headers.get("x-oauth-scopes")
            raise UpstreamInvalidResponse(
                f"GitHub did not list your {what}",
                detail=f"{client.spec.describe()}: GET {url} answered {response.status_code}"
                + (f" (token scopes: {scopes})" if scopes is not None else ""),
                hint=f"bastion needs the scopes {' '.join(client.spec.scopes)}; an organisation "
                "that restricts OAuth app access must approve bastion's app.",
            )
        page = client.json_body(response, body, url, what)
        if not isinstance(page, list):
            raise UpstreamInvalidResponse(
                f"GitHub's list of your {what} is not valid",
                detail=f"{client.spec.describe()}: {url} did not answer a JSON array",
            )
        found.extend(page)
        url = None
        match = _NEXT.search(response.headers.get("link", ""))
        if match and urlsplit(match.group(1)).netloc == urlsplit(api).netloc:
            url = match.group(1)
    return found


async def github_claims(client: ProviderClient, access_token: str) -> dict[str, object]:
    """The claims of the GitHub user holding ``access_token``: id, login, name, email (verified
    primary only), email_verified, organizations, groups (teams as ``org/slug``, lowercase)."""
    api = client.spec.api_url or ""
    user = await client.get_json(f"{api}/user", "user profile", headers=_headers(access_token))
    if not isinstance(user, dict) or not isinstance(user.get("id"), int | str):
        raise UpstreamInvalidResponse(
            "GitHub's answer about your account is not valid",
            detail=f"{client.spec.describe()}: {api}/user has no id",
        )
    emails = await _list(client, "/user/emails", access_token, "e-mail addresses")
    primary = next(
        (
            e
            for e in emails
            if isinstance(e, dict)
            and e.get("primary") is True
            and e.get("verified") is True
            and isinstance(e.get("email"), str)
        ),
        None,
    )
    orgs = await _list(client, "/user/orgs", access_token, "organisations")
    teams = await _list(client, "/user/teams", access_token, "teams")
    groups = []
    for team in teams:
        if not isinstance(team, dict) or not isinstance(team.get("slug"), str):
            continue
        org = team.get("organization")
        if isinstance(org, dict) and isinstance(org.get("login"), str):
            groups.append(f"{org['login']}/{team['slug']}".lower())
    return {
        "id": str(user["id"]),
        "login": user.get("login") if isinstance(user.get("login"), str) else None,
        "name": user.get("name") if isinstance(user.get("name"), str) else None,
        "email": primary["email"] if primary else None,
        "email_verified": primary is not None,
        "organizations": sorted(
            {
                o["login"].lower()
                for o in orgs
                if isinstance(o, dict) and isinstance(o.get("login"), str)
            }
        ),
        "groups": sorted(set(groups)),
    }


__all__ = ["MAX_PAGES", "github_claims"]
