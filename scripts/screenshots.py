"""Screenshots of every page a person meets, at desktop and phone width, for docs/pages.md.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png
    .venv/bin/python scripts/screenshots.py --out DIR  # elsewhere (tests/e2e/test_screenshots.py)

It runs bastion's authorization server in this process on a free loopback port, with a temporary
SQLite database, two resources (one closed by an access rule), a user and a web client, and
drives Debian's chromium (``/usr/bin/chromium``, through Playwright) through the pages: sign-in,
a failed sign-in, consent, a step-up consent, access denied, an unknown application, an expired
sign-in, sign-out, and the loopback page bastion's own client shows after the redirect.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvicorn
from playwright.async_api import Page, async_playwright
from starlette.types import ASGIApp

from bastion.access import admin as access_admin
from bastion.authserver.app import create_app
from bastion.client.loopback import page as loopback_page
from bastion.config import ResourceSettings, Settings
from bastion.identity.local import LocalUsers
from bastion.oauth import pkce
from bastion.store.database import Database

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
PASSWORD = "correct horse battery staple"
CALLBACK = "https://app.example.com/callback"
PAGES = (
    "sign-in",
    "sign-in-failed",
    "consent",
    "consent-step-up",
    "access-denied",
    "unknown-application",
    "sign-in-expired",
    "sign-out",
    "signed-out",
    "loopback-received",
    "loopback-declined",
)


async def _setup(settings: Settings) -> None:
    """The user and the access rule."""
    db = Database(settings.effective_database_url)
    try:
        await db.upgrade()
        await LocalUsers(db).add(
            "alice", PASSWORD, name="Alice Example", groups=["editors"], email="alice@example.com"
        )
    finally:
        await db.dispose()
    await access_admin.allow(settings, "Ledger", "group:finance", [])


async def register_web_client(issuer: str) -> tuple[str, str]:
    """A new web client "Weather Desk" (consent is remembered per client: each walk starts
    afresh): its id and secret."""
    async with httpx.AsyncClient(base_url=issuer) as http:
        answer = await http.post(
            "/register",
            json={
                "client_name": "Weather Desk",
                "redirect_uris": [CALLBACK],
                "application_type": "web",
                "token_endpoint_auth_method": "client_secret_basic",
            },
        )
        answer.raise_for_status()
        return answer.json()["client_id"], answer.json()["client_secret"]


def _authorize(issuer: str, client_id: str, resource: str, scope: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "code_challenge": pkce.s256(pkce.new_verifier()),
        "code_challenge_method": "S256",
        "state": "screenshot",
        "resource": resource,
        "scope": scope,
    }
    return f"{issuer}/authorize?{urlencode(query)}"


async def _walk(
    page: Page, shot: Callable[[str], Awaitable[None]], issuer: str, client_id: str
) -> None:
    notes, ledger = f"{issuer}/mcp/notes", f"{issuer}/mcp/ledger"
    await page.route(f"{CALLBACK}**", lambda route: route.fulfill(body="the application"))
    await page.goto(_authorize(issuer, client_id, notes, "mcp:tools"))
    await shot("sign-in")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", "not the password")
    await page.click("button[type=submit]")
    await shot("sign-in-failed")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await shot("consent")
    await page.click("button[value=allow]")
    await page.wait_for_url(f"{CALLBACK}**")
    await page.goto(_authorize(issuer, client_id, notes, "mcp:tools notes:write"))
    await shot("consent-step-up")
    await page.click("button[value=deny]")
    await page.wait_for_url(f"{CALLBACK}**")
    await page.goto(_authorize(issuer, client_id, ledger, "mcp:tools"))
    await shot("access-denied")
    await page.goto(_authorize(issuer, "nobody-registered-this", notes, "mcp:tools"))
    await shot("unknown-application")
    await page.goto(f"{issuer}/interaction/{'x' * 43}")
    await shot("sign-in-expired")
    await page.goto(f"{issuer}/logout")
    await shot("sign-out")
    await page.click("button[type=submit]")
    await shot("signed-out")
    await page.goto("about:blank")  # not under the last page's CSP, which forbids inline style
    await page.set_content(loopback_page("code=c&state=s", notes))
    await shot("loopback-received")
    await page.set_content(loopback_page("error=access_denied&state=s", notes))
    await shot("loopback-declined")


Walk = Callable[[Page, Callable[[str], Awaitable[None]]], Awaitable[None]]


async def in_chromium(
    app: ASGIApp, listener: socket.socket, out: Path, walk: Callable[[], Awaitable[Walk]]
) -> list[Path]:
    """Serve ``app`` on ``listener``, then at each viewport run the walk ``walk()`` returns
    (called once the server is up, to set up what the walk needs) in a fresh browser context,
    a screenshot into ``out`` at each ``shot(name)``; the files written."""
    written: list[Path] = []
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                for size, (width, height) in VIEWPORTS.items():
                    context = await browser.new_context(viewport={"width": width, "height": height})
                    tab = await context.new_page()
                    tab.set_default_timeout(10_000)

                    async def shot(name: str, tab: Page = tab, size: str = size) -> None:
                        # After a click that navigates, the page may still be loading its
                        # style sheet: an unstyled page is no picture of it.
                        await tab.wait_for_load_state()
                        path = out / f"{name}-{size}.png"
                        await tab.screenshot(path=str(path), full_page=True)
                        written.append(path)

                    await (await walk())(tab, shot)
                    await context.close()
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await serving
        listener.close()
    return written


def loopback_listener() -> tuple[socket.socket, str]:
    """A socket bound to a free loopback port, and the http URL it serves."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


async def capture(out: Path) -> list[Path]:
    """Take every screenshot into ``out`` (an existing directory); the files written."""
    listener, issuer = loopback_listener()
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            issuer=issuer,
            data_dir=Path(data),
            secret_key="screenshots-secret-key-long-enough-0123456789",
            resources=[
                ResourceSettings(
                    uri=f"{issuer}/mcp/notes",
                    name="Team notes",
                    scopes=["mcp:tools", "notes:write"],
                ),
                ResourceSettings(uri=f"{issuer}/mcp/ledger", name="Ledger", scopes=["mcp:tools"]),
            ],
            scope_descriptions={"notes:write": "Add notes to the team notebook"},
            access_contact="the platform team (#mcp-access)",
        )
        prepared = False

        async def walk() -> Walk:
            nonlocal prepared
            if not prepared:
                await _setup(settings)
                prepared = True
            client_id, _ = await register_web_client(issuer)

            async def run(page: Page, shot: Callable[[str], Awaitable[None]]) -> None:
                await _walk(page, shot, issuer, client_id)

            return run

        return await in_chromium(create_app(settings), listener, out, walk)


def run(argv: list[str], take: Callable[[Path], Awaitable[list[Path]]], description: str) -> int:
    """The command line of a screenshots script: ``--out DIR`` (default docs/screenshots)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=DOCS, help="where the PNG files go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(take(args.out)):
        print(path)
    return 0


def main(argv: list[str]) -> int:
    return run(argv, capture, (__doc__ or "").split("\n")[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
