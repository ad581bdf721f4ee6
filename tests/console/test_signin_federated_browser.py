"""Signing in to the console through an identity provider in Chromium, with the real
node-oidc-provider: a person lands on their account, where their linked account is shown; an
administrator by the provider's groups (``console.admin_groups``) lands on /admin."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.console.test_signin_federated import LABEL, Federated, federated  # noqa: F401
from tests.federation.test_browser_enterprise_idp import page, upstream_log_in  # noqa: F401

pytestmark = pytest.mark.browser


async def test_a_person_signs_in_to_their_account_through_the_provider(
    page: Page,  # noqa: F811
    federated: Federated,  # noqa: F811
) -> None:
    await page.goto(f"{federated.issuer}/account")
    await expect(page.locator("h1")).to_have_text("Sign in")
    await page.get_by_role("button", name=f"Continue with {LABEL}").click()
    await upstream_log_in(page, federated.op, "erin")  # type: ignore[arg-type]
    await page.wait_for_url(f"{federated.issuer}/account")
    await expect(page.locator("h1")).to_have_text("Your account")
    await expect(page.locator("#how").locator("..")).to_contain_text(f"Through {LABEL}")
    await expect(page.locator("#sign-ins ~ .table tbody tr")).to_contain_text("this console")


async def test_an_administrator_by_the_providers_groups_reaches_admin(
    page: Page,  # noqa: F811
    federated: Federated,  # noqa: F811
) -> None:
    await page.goto(f"{federated.issuer}/admin")
    await page.get_by_role("button", name=f"Continue with {LABEL}").click()
    await upstream_log_in(page, federated.op, "dana")  # type: ignore[arg-type]
    await page.wait_for_url(f"{federated.issuer}/admin")
    await expect(page.locator("h1")).to_have_text("Overview")
    await expect(page.locator(".signed-in-as")).to_have_text("Dana Ops")
