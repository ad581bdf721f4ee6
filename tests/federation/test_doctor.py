"""``bastion doctor --upstream NAME`` against real providers: node-oidc-provider (configured like
an enterprise IdP) and the GitHub stand-in. Each mistake an operator makes when registering
bastion at the provider shows up as a failed check that names it."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.config import Settings
from bastion.identity.doctor import Check, check_upstream
from tests.federation.github_standin import github_standin
from tests.support.oidc_provider import OidcProvider, oidc_provider

ISSUER = "http://127.0.0.1:8000"
CALLBACK = f"{ISSUER}/login/corp/callback"


def client(secret: str, redirect_uri: str = CALLBACK) -> dict[str, Any]:
    return {
        "client_id": "bastion",
        "client_secret": secret,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "client_secret_basic",
    }


def settings_for(op: OidcProvider, secret: str, **overrides: Any) -> Settings:
    return Settings(
        issuer=ISSUER,
        upstreams=[
            {
                "name": "corp",
                "kind": "oidc",
                "issuer": op.issuer,
                "client_id": "bastion",
                "client_secret": secret,
                "allow_private_addresses": True,
                **overrides,
            }
        ],
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_doctor_passes_a_correctly_registered_enterprise_idp() -> None:
    secret = secrets.token_urlsafe(16)
    async with oidc_provider(clients=[client(secret)], default_resource=None) as op:
        checks = by_name(await check_upstream(settings_for(op, secret), "corp"))
    assert [c.status for c in checks.values()] == ["ok"] * len(checks), checks
    assert set(checks) == {
        "configuration",
        "redirect URI",
        "discovery",
        "issuer",
        "PKCE",
        "JWKS",
        "authorization request",
        "client credentials",
    }
    assert CALLBACK in checks["redirect URI"].detail
    assert "invalid_grant" in checks["client credentials"].detail


async def test_doctor_fails_a_wrong_client_secret() -> None:
    """RFC 6749 §5.2: the provider answers invalid_client to a made-up code redeemed with the
    wrong secret."""
    async with oidc_provider(clients=[client("right-secret")], default_resource=None) as op:
        checks = by_name(await check_upstream(settings_for(op, "wrong-secret"), "corp"))
    assert checks["client credentials"].status == "fail"
    assert "client_secret" in checks["client credentials"].detail


async def test_doctor_fails_an_unregistered_redirect_uri() -> None:
    async with oidc_provider(
        clients=[client("s", redirect_uri="http://127.0.0.1:9999/elsewhere")], default_resource=None
    ) as op:
        checks = by_name(await check_upstream(settings_for(op, "s"), "corp"))
    assert checks["authorization request"].status == "fail"
    assert CALLBACK in checks["authorization request"].detail


async def test_doctor_fails_an_issuer_that_is_not_exactly_the_providers() -> None:
    """OpenID Connect Discovery 1.0 §4.3: the document's issuer must equal the configured one
    (here a trailing slash too many); nothing else is checked then."""
    async with oidc_provider(clients=[client("s")], default_resource=None) as op:
        settings = settings_for(op, "s", issuer=op.issuer + "/")
        checks = by_name(await check_upstream(settings, "corp"))
    assert checks["discovery"].status == "fail"
    assert repr(op.issuer) in checks["discovery"].detail
    assert "exact issuer" in checks["discovery"].detail
    assert "authorization request" not in checks


async def test_doctor_fails_an_unreachable_provider_and_an_unknown_name() -> None:
    settings = Settings(
        issuer=ISSUER,
        upstreams=[
            {
                "name": "corp",
                "kind": "oidc",
                "issuer": "http://127.0.0.1:9",
                "client_id": "c",
                "client_secret": "s",
                "allow_private_addresses": True,
            }
        ],
    )
    checks = by_name(await check_upstream(settings, "corp"))
    assert checks["discovery"].status == "fail"
    assert "127.0.0.1:9" in checks["discovery"].detail
    [unknown] = await check_upstream(settings, "nope")
    assert unknown.status == "fail" and "configured: corp" in unknown.detail


async def test_doctor_checks_github_without_discovery() -> None:
    async with github_standin(callback_url=f"{ISSUER}/login/gh/callback") as github:

        def configured(secret: str) -> Settings:
            upstream = {
                "name": "gh",
                "kind": "github",
                "base_url": github.base,
                "client_id": github.client_id,
                "client_secret": secret,
                "allow_private_addresses": True,
            }
            return Settings(issuer=ISSUER, upstreams=[upstream])

        checks = by_name(await check_upstream(configured(github.client_secret), "gh"))
        wrong = by_name(await check_upstream(configured("wrong"), "gh"))
    assert [c.status for c in checks.values()] == ["ok"] * len(checks), checks
    assert "bad_verification_code" in checks["client credentials"].detail
    assert wrong["client credentials"].status == "fail"


async def test_cli_doctor_prints_the_checks_and_exits_1_on_failure(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(16)
    async with oidc_provider(clients=[client(secret)], default_resource=None) as op:
        config = tmp_path / "bastion.toml"
        config.write_text(
            f'issuer = "{ISSUER}"\n\n[[upstreams]]\nname = "corp"\nkind = "oidc"\n'
            f'issuer = "{op.issuer}"\nclient_id = "bastion"\nclient_secret = "{secret}"\n'
            "allow_private_addresses = true\n"
        )
        runner = CliRunner()
        good = await asyncio.to_thread(
            runner.invoke, app, ["doctor", "--upstream", "corp", "--config", str(config)]
        )
        unknown = await asyncio.to_thread(
            runner.invoke, app, ["doctor", "--upstream", "nope", "--config", str(config)]
        )
    assert good.exit_code == 0, good.output
    assert "client credentials" in good.output and "fail" not in good.output
    assert unknown.exit_code == 1
    assert "no upstream named 'nope'" in unknown.output
