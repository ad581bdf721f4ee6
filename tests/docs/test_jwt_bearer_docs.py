"""docs/enterprise-managed-authorization.md and docs/workload-identity.md: their configuration
examples load as written and say what the pages say."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bastion.config import Settings
from bastion.config.workload import subject_pattern
from bastion.oauth.token_request import JWT_BEARER

DOCS = Path(__file__).parents[2] / "docs"


def _examples(page: str) -> list[Settings]:
    loaded = []
    for block in re.findall(r"```toml\n(.*?)```", (DOCS / page).read_text(), re.S):
        text = block.replace('"…"', '"a-secret-of-the-example"')
        if not text.startswith("issuer"):
            text = 'issuer = "https://auth.example.com"\n' + text
        loaded.append(Settings(**tomllib.loads(text)))
    return loaded


def test_the_okta_example_accepts_id_jags_from_the_org_authorization_server() -> None:
    [okta] = _examples("enterprise-managed-authorization.md")
    [upstream] = okta.upstreams
    assert upstream.accept_id_jag and upstream.authorization_server == ""
    assert okta.accepts_jwt_bearer
    assert upstream.allow.groups == ["MCP Users"]


def test_the_workload_examples_load_with_their_rules() -> None:
    kubernetes, github, spiffe = _examples("workload-identity.md")
    [k8s] = kubernetes.workload_identities
    assert (k8s.client, k8s.single_use, k8s.audience) == (
        "ci-deployer",
        False,
        "https://auth.example.com",
    )
    assert subject_pattern(k8s.subject).fullmatch("system:serviceaccount:ci:deployer")
    assert not subject_pattern(k8s.subject).fullmatch("system:serviceaccount:prod:deployer")
    [gh] = github.workload_identities
    assert gh.matches({"sub": "repo:acme/app:ref:refs/heads/main", "repository_owner": "acme"})
    assert not gh.matches({"sub": "repo:acme/app:ref:refs/heads/main", "repository_owner": "x"})
    assert gh.single_use and gh.scopes == ["notes:read"]
    [spire] = spiffe.workload_identities
    assert spire.matches({"sub": "spiffe://example.org/ns/ci/sa/deployer"})


def test_the_pages_name_the_grant_type() -> None:
    for page in ("enterprise-managed-authorization.md", "workload-identity.md"):
        assert JWT_BEARER in (DOCS / page).read_text()
