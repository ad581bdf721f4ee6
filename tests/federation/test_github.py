"""GitHub as the upstream: OAuth 2.0 without OpenID Connect, identity from the REST API (issue 6,
"Done when" 2), against tests/federation/github_standin.py.

docs.github.com, "Authorizing OAuth apps" (web application flow; PKCE), "REST API endpoints for
users / emails / organizations / teams" (pagination by Link header), "Troubleshooting ... errors".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bastion.config import Settings
from bastion.store.schema import linked_accounts, users
from tests.federation.github_standin import GitHubStandIn, github_standin
from tests.federation.support import (
    Bastion,
    consent_and_redeem,
    new_issuer,
    nothing_created,
    page_text,
    rows,
    running_bastion,
    sign_in_upstream,
)
from tests.support.jwt import claims_of

NAME = "gh"


def github_upstream(github: GitHubStandIn, **overrides: Any) -> dict[str, Any]:
    return {
        "name": NAME,
        "kind": "github",
        "display_name": "GitHub",
        "base_url": github.base,  # a GitHub Enterprise Server style base: API under /api/v3
        "client_id": github.client_id,
        "client_secret": github.client_secret,
        "allow": {"organizations": ["ACME"]},
        "allow_private_addresses": True,
        **overrides,
    }


@asynccontextmanager
async def federated(
    make_settings: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[tuple[Bastion, GitHubStandIn]]:
    port, issuer = new_issuer()
    async with (
        github_standin(callback_url=f"{issuer}/login/{NAME}/callback") as github,
        running_bastion(make_settings, port, [github_upstream(github, **overrides)]) as bastion,
    ):
        yield bastion, github


async def test_org_member_signs_in_with_verified_primary_email_and_teams_as_groups(
    make_settings: Callable[..., Settings],
) -> None:
    """The web application flow with state and PKCE S256, the code redeemed with
    client_secret_post and ``Accept: application/json``, then /user (the numeric id is the
    subject), /user/emails (the primary verified address, not the public or an unverified
    one), /user/orgs (allow rule by organisation, case-insensitive) and /user/teams (groups
    ``org/team``); the GitHub token stays with bastion."""
    async with federated(make_settings) as (bastion, github):
        async with httpx.AsyncClient() as http:
            pending, callback = await sign_in_upstream(http, bastion, NAME)
            tokens = await consent_and_redeem(http, bastion, pending, callback)
        asked = github.authorization_requests[-1]
        assert asked["scope"] == "read:user user:email read:org"
        assert asked["code_challenge_method"] == "S256"
        assert asked["redirect_uri"] == bastion.callback(NAME)
        assert "nonce" not in asked  # OAuth 2.0, not OpenID Connect
        redeemed = github.token_requests[-1]
        assert redeemed["client_secret"] == github.client_secret
        assert redeemed["code_verifier"]
        [link] = await rows(bastion.settings, linked_accounts)
        [user] = await rows(bastion.settings, users)
    assert (link.issuer, link.subject, link.provider) == (github.base, "583231", NAME)
    assert link.refresh_token_encrypted is None
    assert user.username == "gh:octocat"
    assert user.email == "octocat@acme.example"
    assert user.name == "The Octocat"
    assert user.groups == ["acme/platform"]
    claims = claims_of(tokens["access_token"])
    assert claims["sub"] == user.id
    assert claims["email"] == "octocat@acme.example"
    assert claims["groups"] == ["acme/platform"]
    assert not any(token in json.dumps(tokens) for token in github.tokens)


async def test_non_member_of_the_allowed_organisation_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    """Allow rule by organisation: a GitHub user outside it gets a 403 page; nothing created."""
    async with federated(make_settings) as (bastion, github):
        github.user.orgs = ["other-org"]
        github.user.teams = [("other-org", "devs")]
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 403
        assert "not in an organisation allowed to sign in here" in page_text(callback)
        await nothing_created(bastion.settings)


async def test_organisation_on_a_later_page_is_found(
    make_settings: Callable[..., Settings],
) -> None:
    """Lists are paginated (``per_page=100``, ``Link: rel="next"``): membership listed on the
    second page still counts."""
    async with federated(make_settings) as (bastion, github):
        github.user.orgs = [f"org-{i}" for i in range(150)] + ["acme"]
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 303, callback.text
        assert github.api_requests.count("/api/v3/user/orgs") == 2


async def test_team_rule_and_email_domain_rule_both_apply(
    make_settings: Callable[..., Settings],
) -> None:
    """Every non-empty rule list must match: the team rule passes, the e-mail domain rule
    (verified primary address only) refuses."""
    async with federated(
        make_settings,
        allow={
            "organizations": ["acme"],
            "groups": ["acme/platform"],
            "email_domains": ["corp.example"],
        },
    ) as (bastion, _):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 403
        assert "e-mail addresses at acme.example may not sign in here" in page_text(callback)
        await nothing_created(bastion.settings)


async def test_user_without_a_verified_primary_email_has_none(
    make_settings: Callable[..., Settings],
) -> None:
    """Only a primary *and* verified address counts; the public profile e-mail never does."""
    async with federated(make_settings) as (bastion, github):
        github.user.emails = [
            {
                "email": "octocat@acme.example",
                "primary": True,
                "verified": False,
                "visibility": None,
            }
        ]
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 303
        [user] = await rows(bastion.settings, users)
    assert user.email is None


async def test_github_access_denied_shows_a_page(make_settings: Callable[..., Settings]) -> None:
    """The user refuses at GitHub (error=access_denied with GitHub's description): 403 page."""
    async with federated(make_settings) as (bastion, github):
        github.deny = True
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 403
        text = page_text(callback)
        assert "GitHub did not let you sign in (access was denied)" in text
        assert "The user has denied your application access." in text
        await nothing_created(bastion.settings)


async def test_incorrect_client_credentials_answered_with_200_are_an_error(
    make_settings: Callable[..., Settings],
) -> None:
    """GitHub answers token errors with status 200 and an ``error`` member: still a refusal,
    and the page names the settings to check."""
    async with federated(make_settings, client_secret="wrong") as (bastion, github):
        async with httpx.AsyncClient() as http:
            _, callback = await sign_in_upstream(http, bastion, NAME)
        assert callback.status_code == 502
        text = page_text(callback)
        assert "(incorrect_client_credentials)" in text
        assert "upstreams[gh].client_id, client_secret" in text
        assert github.api_requests == []
        await nothing_created(bastion.settings)


async def test_standin_answers_the_token_request_per_accept_header() -> None:
    """The stand-in follows GitHub's documented token response formats: form-encoded by
    default, JSON for Accept: application/json, XML for Accept: application/xml."""
    async with (
        github_standin(callback_url="http://127.0.0.1:1/cb") as github,
        httpx.AsyncClient() as http,
    ):
        form = {"client_id": github.client_id, "client_secret": github.client_secret, "code": "x"}
        url = f"{github.base}/login/oauth/access_token"
        plain = await http.post(url, data=form)
        as_json = await http.post(url, data=form, headers={"Accept": "application/json"})
        as_xml = await http.post(url, data=form, headers={"Accept": "application/xml"})
    assert plain.status_code == as_json.status_code == as_xml.status_code == 200
    assert plain.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert plain.text.startswith("error=bad_verification_code&")
    assert as_json.json()["error"] == "bad_verification_code"
    assert as_xml.text.startswith("<OAuth><error>bad_verification_code</error>")
