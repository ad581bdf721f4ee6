"""Screenshots of the web console (/admin, /account), at desktop and phone width, for
docs/console.md.

    .venv/bin/python scripts/console_screenshots.py            # docs/screenshots/console-*.png
    .venv/bin/python scripts/console_screenshots.py --out DIR  # elsewhere (the test does)

It sets up what ``bastion quickstart`` sets up (its configuration, admin user, demo access rules
and registry entries) in a temporary directory on free loopback ports, adds two people, and runs
the quickstart's three listeners (authorization server with registry and console, gateway, demo
MCP server) in this process. Debian's chromium (``/usr/bin/chromium``, through Playwright) then
walks the console: Bob authorizes an application and sees his account and the administrators'
refusal; the administrator signs in and visits every page, adds a machine client (its secret shown
once), and checks whether Bob may call the demo's ``add_note`` tool.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import uvicorn
from playwright.async_api import Page

from bastion.config import Settings, load_settings
from bastion.identity.local import LocalUsers
from bastion.oauth import pkce
from bastion.quickstart import prepare, write_config
from bastion.serve.apps import quickstart_listeners
from bastion.store.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import CALLBACK, VIEWPORTS, Walk, in_chromium, register_web_client, run

__all__ = ["PAGES", "VIEWPORTS", "capture"]

PASSWORD = "correct horse battery staple"
PAGES = (
    "console-sign-in",
    "console-refused",
    "console-account",
    "console-overview",
    "console-clients",
    "console-client-new",
    "console-client-secret",
    "console-client",
    "console-people",
    "console-person-new",
    "console-person",
    "console-groups",
    "console-group",
    "console-access",
    "console-access-check",
    "console-grants",
    "console-keys",
    "console-registry",
    "console-registry-entry",
    "console-audit",
    "console-confirm",
)
Shot = Callable[[str], Awaitable[None]]


def _three_free_ports() -> int:
    """A port p with p, p+1 and p+2 free on 127.0.0.1 (quickstart's three listeners)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + 2 > 65535:
            continue
        try:
            for port in (base, base + 1, base + 2):
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three consecutive free ports on 127.0.0.1")


async def _setup(settings: Settings) -> None:
    """Bob (sales) and Carol (editors) besides the quickstart's administrator."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        users = LocalUsers(db)
        await users.add("bob", PASSWORD, name="Bob Builder", groups=["sales"])
        await users.add("carol", PASSWORD, name="Carol Writer", groups=["editors"])
    finally:
        await db.dispose()


async def _redeem(issuer: str, client: tuple[str, str], callback: str, verifier: str) -> None:
    """Exchange the code the browser brought back (the grant starts here)."""
    code = parse_qs(urlsplit(callback).query)["code"][0]
    async with httpx.AsyncClient(base_url=issuer, auth=client) as http:
        answer = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            },
        )
        answer.raise_for_status()


async def _sign_in(page: Page, username: str, password: str) -> None:
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form:has(input[name=password]) button[type=submit]")


async def _walk(page: Page, shot: Shot, settings: Settings, admin_password: str) -> None:
    issuer = settings.issuer
    demo = next(u.resource for u in settings.gateway.upstreams if u.name == "demo")
    client = await register_web_client(issuer)
    verifier = pkce.new_verifier()
    query = {
        "response_type": "code",
        "client_id": client[0],
        "redirect_uri": CALLBACK,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
        "state": "screenshot",
        "resource": str(demo),
        "scope": "mcp:tools",
    }
    await page.route(f"{CALLBACK}**", lambda route: route.fulfill(body="the application"))
    # Bob: authorizes an application, is refused the administrators' pages, sees his account.
    await page.goto(f"{issuer}/authorize?{urlencode(query)}")
    await _sign_in(page, "bob", PASSWORD)
    await page.click("button[value=allow]")
    await page.wait_for_url(f"{CALLBACK}**")
    await _redeem(issuer, client, page.url, verifier)
    await page.goto(f"{issuer}/admin")
    await shot("console-refused")
    await page.goto(f"{issuer}/account")
    await shot("console-account")
    await page.goto(f"{issuer}/logout")
    await page.click("button[type=submit]")
    # The administrator.
    await page.goto(f"{issuer}/admin")
    await shot("console-sign-in")
    await _sign_in(page, "admin", admin_password)
    await page.wait_for_url(f"{issuer}/admin")
    await shot("console-overview")
    await page.goto(f"{issuer}/admin/clients")
    await shot("console-clients")
    await page.goto(f"{issuer}/admin/clients/new")
    await page.fill("input[name=name]", "Nightly report job")
    await page.check("input[name=kind][value=machine]")
    await page.check(f"input[name=resources][value='{demo}']")
    await shot("console-client-new")
    await page.click("button:text('Add the client')")
    await shot("console-client-secret")
    await page.goto(f"{issuer}/admin/clients")
    await page.locator("a", has_text="Nightly report job").first.click()
    await shot("console-client")
    await page.goto(f"{issuer}/admin/people")
    await shot("console-people")
    await page.goto(f"{issuer}/admin/people/new")
    await shot("console-person-new")
    await page.goto(f"{issuer}/admin/people/bob")
    await shot("console-person")
    await page.goto(f"{issuer}/admin/groups")
    await shot("console-groups")
    await page.goto(f"{issuer}/admin/groups/editors")
    await shot("console-group")
    await page.goto(f"{issuer}/admin/access")
    await shot("console-access")
    check = {"user": "bob", "resource": str(demo), "tool": "add_note"}
    await page.goto(f"{issuer}/admin/access/check?{urlencode(check)}")
    await shot("console-access-check")
    await page.goto(f"{issuer}/admin/grants")
    await shot("console-grants")
    await page.goto(f"{issuer}/admin/keys")
    await shot("console-keys")
    await page.goto(f"{issuer}/admin/registry")
    await shot("console-registry")
    await page.locator("a[href*='/admin/registry/entry']").first.click()
    await shot("console-registry-entry")
    await page.goto(f"{issuer}/admin/audit")
    await shot("console-audit")
    await page.goto(f"{issuer}/signin?{urlencode({'next': '/admin/people/bob', 'fresh': '1'})}")
    await shot("console-confirm")


async def _serve_others(
    apps: list[tuple[object, int]],
) -> tuple[list[uvicorn.Server], list[asyncio.Task[None]]]:
    servers, tasks = [], []
    for app, port in apps:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        )
        servers.append(server)
        tasks.append(asyncio.create_task(server.serve()))
    for server, task in zip(servers, tasks, strict=True):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return servers, tasks


async def capture(out: Path) -> list[Path]:
    """Take every screenshot into ``out`` (an existing directory); the files written."""
    with tempfile.TemporaryDirectory() as data:
        config = write_config(Path(data), _three_free_ports())
        prepared = await prepare(config)
        assert prepared.admin_password is not None
        settings = load_settings(config)
        await _setup(settings)
        first, *others = quickstart_listeners(settings)
        servers, tasks = await _serve_others([(o.app, o.port) for o in others])
        try:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", first.port))
            password = prepared.admin_password

            async def walk() -> Walk:
                # One data set for both viewports: the second walk also sees the first one's
                # client and grant.
                async def run(page: Page, shot: Shot) -> None:
                    await _walk(page, shot, settings, password)

                return run

            return await in_chromium(first.app, listener, out, walk)
        finally:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks)


def main(argv: list[str]) -> int:
    return run(argv, capture, (__doc__ or "").split("\n")[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
