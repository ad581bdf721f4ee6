"""A person at the browser for the tutorial's commands: the program ``$BROWSER`` names.

``bastion login`` and friends open the authorization URL with Python's :mod:`webbrowser`, which
runs ``$BROWSER`` with the URL. This script opens it in Debian's Chromium (Playwright), signs in
and answers the consent page as ``$TUTORIAL_PERSON`` says (``user password decision``), and
returns once the browser has left the authorization server for the client's loopback page.
"""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import urlsplit

from playwright.async_api import Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
STEPS = 6


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _answer(page: Page, username: str, password: str, decision: str) -> None:
    issuer = _origin(page.url)
    for _ in range(STEPS):
        if _origin(page.url) != issuer:
            await page.wait_for_load_state()
            return
        if await page.locator("input[name=password]").count():
            await page.fill("input[name=username]", username)
            await page.fill("input[name=password]", password)
            action = page.click("button:text('Sign in')")
        else:
            button = page.locator(f"button[name=decision][value={decision}]")
            if not await button.count():
                button = page.locator("button[name=decision]")
            action = button.first.click()
        async with page.expect_navigation():
            await action
    raise SystemExit(f"person.py: still at {page.url} after {STEPS} pages")


async def main(url: str) -> None:
    username, password, decision = os.environ["TUTORIAL_PERSON"].split()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await page.goto(url)
            await _answer(page, username, password, decision)
        finally:
            await browser.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
