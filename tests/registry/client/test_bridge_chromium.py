"""VS Code's renderer, as near as a test gets to it: real Chromium lists a registry behind OAuth
through the https bridge, from a page that is not served over http, under VS Code's workbench
content security policy (``connect-src 'self' https: ws:``,
src/vs/code/electron-browser/workbench/workbench.html in microsoft/vscode), trusting the
bridge's certificate only because ``bastion proxy registry --trust`` put the local CA into the
NSS database Chromium reads on Linux ($HOME/.pki/nssdb). No certificate-error flags.

VS Code's renderer has the origin ``vscode-file://vscode-app``, which headless Chromium cannot
serve. The page here is an extension page instead, ``chrome-extension://<id>``: like VS Code's,
a non-http origin whose fetches are cross-origin requests under CORS (the extension asks for no
host permissions) and under the page's own CSP. The bridge must never allow ``null`` (a data:
or file: page's origin), so the test adds this one extension origin to its allow-list, as a
person would add an origin with ``--allow-origin``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.async_api import Page, async_playwright

from bastion.client import RegistryClient
from bastion.client.local_ca import LocalCA
from bastion.client.local_trust import TrustTarget, install
from bastion.client.registry_bridge import DEFAULT_ORIGINS
from tests.registry.client.https_bridge import https_bridge
from tests.registry.live_registry import ALICE_SEES, ALPHA, LiveRegistry

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# VS Code's connect-src, exactly; the rest keeps the page to its own script.
WORKBENCH_CSP = "default-src 'none'; script-src 'self'; connect-src 'self' https: ws:"
PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{WORKBENCH_CSP}">
<title>gallery</title><script src="gallery.js"></script></head><body></body></html>
"""
# What VS Code's gallery service does, in the page's own script: pages of latest versions.
SCRIPT = """
const violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  violations.push({ directive: e.effectiveDirective, blocked: e.blockedURI });
});
async function attempt(work) {
  try { return { ok: true, value: await work() }; }
  catch (e) { return { ok: false, error: String(e) }; }
}
async function listServers(base) {
  return attempt(async () => {
    const names = [];
    let cursor = null;
    for (let page = 0; page < 20; page++) {
      const url = new URL("/v0.1/servers", base);
      url.searchParams.set("limit", "2");
      url.searchParams.set("version", "latest");
      if (cursor) url.searchParams.set("cursor", cursor);
      const response = await fetch(url);
      if (!response.ok) throw new Error("HTTP " + response.status);
      const body = await response.json();
      names.push(...body.servers.map((s) => s.server.name));
      cursor = body.metadata.nextCursor;
      if (!cursor) break;
    }
    return names;
  });
}
async function latest(base, name) {
  return attempt(async () => {
    const response = await fetch(
      new URL("/v0.1/servers/" + encodeURIComponent(name) + "/versions/latest", base));
    return { status: response.status, name: (await response.json()).server.name };
  });
}
async function fetchPlain(url) {
  return attempt(async () => (await fetch(url)).status);
}
"""


def extension(directory: Path) -> str:
    """Write a page-only extension (no host permissions) and return its origin; the manifest's
    ``key`` fixes its id (the first 128 bits of the key's SHA-256, as letters a to p)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    extension_id = "".join("abcdefghijklmnop"[int(c, 16)] for c in hashlib.sha256(der).hexdigest())
    manifest = {
        "manifest_version": 3,
        "name": "gallery page",
        "version": "1.0",
        "key": base64.b64encode(der).decode(),
    }
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "gallery.html").write_text(PAGE)
    (directory / "gallery.js").write_text(SCRIPT)
    return f"chrome-extension://{extension_id[:32]}"


@contextlib.asynccontextmanager
async def gallery_page(home: Path, extension_dir: Path, origin: str) -> AsyncIterator[Page]:
    """Chromium with ``home`` as $HOME (its NSS database) showing the extension's page."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(home / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--disable-extensions-except={extension_dir}",
                f"--load-extension={extension_dir}",
            ],
            ignore_default_args=["--disable-extensions"],
            env={**os.environ, "HOME": str(home)},
        )
        try:
            page = await context.new_page()
            page.set_default_timeout(10_000)
            await page.goto(f"{origin}/gallery.html")
            assert await page.evaluate("location.origin") == origin
            yield page
        finally:
            await context.close()


async def call(page: Page, function: str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(f"(args) => {function}(...args)", list(args))
    return result


@pytest.fixture(autouse=True)
def tools() -> None:
    if not os.access(CHROMIUM, os.X_OK) or shutil.which("certutil") is None:
        pytest.fail(
            "the browser tests need Debian's chromium and certutil (libnss3-tools); "
            "`make test` installs both (scripts/test-setup.sh)"
        )


async def test_chromium_under_vs_code_csp_lists_the_registry_through_the_https_bridge(
    live: LiveRegistry, tmp_path: Path
) -> None:
    trusted_home, untrusted_home = tmp_path / "home", tmp_path / "stranger"
    trusted_home.mkdir()
    untrusted_home.mkdir()
    origin = extension(tmp_path / "extension")
    ca_dir = tmp_path / "local-ca"

    # What `bastion proxy registry --trust` does for Chromium on Linux.
    outcomes = install(
        LocalCA(ca_dir), TrustTarget(home=trusted_home, platform="linux", stores=("nss",))
    )
    assert [o.done for o in outcomes] == [True], outcomes
    assert (trusted_home / ".pki" / "nssdb" / "cert9.db").exists()

    async with (
        live.authorizer("alice", store="bridge") as auth,
        RegistryClient(live.url, auth) as registry,
    ):
        await registry.ensure_token()  # as `bastion proxy registry` signs in before serving
        async with (
            https_bridge(registry, ca_dir, allowed_origins=(*DEFAULT_ORIGINS, origin)) as bridge,
            https_bridge(registry, ca_dir) as default_bridge,
        ):
            async with gallery_page(trusted_home, tmp_path / "extension", origin) as page:
                failures: list[str | None] = []
                page.on("requestfailed", lambda request: failures.append(request.failure))
                # The CSP is in force: plain http is refused before any request is made.
                plain = await call(page, "fetchPlain", f"{live.url}/v0.1/servers?limit=1")
                assert not plain["ok"] and "Failed to fetch" in plain["error"]
                violations: list[dict[str, str]] = []
                for _ in range(100):
                    violations = await page.evaluate("violations")
                    if violations:
                        break
                    await page.wait_for_timeout(20)
                assert violations == [
                    {"directive": "connect-src", "blocked": f"{live.url}/v0.1/servers?limit=1"}
                ]

                # Over https, with the CA trusted through NSS and CORS for this origin.
                listed = await call(page, "listServers", bridge.url)
                assert listed == {"ok": True, "value": ALICE_SEES}
                found = await call(page, "latest", bridge.url, ALPHA)
                assert found == {"ok": True, "value": {"status": 200, "name": ALPHA}}

                # Who must not get in: a bridge that does not allow this origin answers 403
                # without CORS headers, and Chromium gives the page nothing.
                failures.clear()
                refused = await call(page, "listServers", default_bridge.url)
                assert not refused["ok"] and "Failed to fetch" in refused["error"], refused
                # Refused by CORS (the same certificate passed just before), not by TLS.
                assert failures == ["net::ERR_FAILED"]

            # Nor a Chromium that does not trust the local CA.
            async with gallery_page(untrusted_home, tmp_path / "extension", origin) as page:
                failures = []
                page.on("requestfailed", lambda request: failures.append(request.failure))
                untrusted = await call(page, "listServers", bridge.url)
                assert not untrusted["ok"] and "Failed to fetch" in untrusted["error"]
                assert failures == ["net::ERR_CERT_AUTHORITY_INVALID"]
