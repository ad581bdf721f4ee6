"""A scripted user at a browser: the ``open_url`` the client tests give the Authorizer.

It follows bastion's authorization pages the way a person would: GET the authorization URL,
sign in, consent (or deny), and follow the final redirect to the client's loopback listener. It
keeps its cookies between logins (a browser session), and records every URL it was asked to open.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.support.flow import PASSWORD

FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class BrowserUser:
    """``await user(url)`` logs in as ``username`` and answers the consent with ``decision``."""

    def __init__(self, issuer: str, *, username: str = "alice", decision: str = "allow") -> None:
        self.issuer = issuer
        self.username = username
        self.decision = decision
        self.opened: list[str] = []
        self._browser = httpx.AsyncClient(timeout=10, follow_redirects=False)

    def params(self, index: int = -1) -> dict[str, list[str]]:
        """The query parameters of an opened authorization URL."""
        return parse_qs(urlsplit(self.opened[index]).query, keep_blank_values=True)

    async def aclose(self) -> None:
        await self._browser.aclose()

    async def __call__(self, url: str) -> None:
        self.opened.append(url)
        response = await self._browser.get(url)
        assert response.status_code in (302, 303), response.text
        location = urljoin(url, response.headers["location"])
        for _ in range(5):
            if not location.startswith(f"{self.issuer}/interaction/"):
                break
            page = await self._browser.get(location)
            if page.status_code in (302, 303):
                location = urljoin(location, page.headers["location"])
                continue
            assert page.status_code == 200, page.text
            action = FORM_ACTION.search(page.text)
            csrf = CSRF.search(page.text)
            assert action and csrf, page.text
            form = {"csrf": html.unescape(csrf.group(1))}
            if 'name="password"' in page.text:
                form.update(username=self.username, password=PASSWORD)
            else:
                form["decision"] = self.decision
            response = await self._browser.post(
                urljoin(location, html.unescape(action.group(1))), data=form
            )
            assert response.status_code in (302, 303), response.text
            location = urljoin(location, response.headers["location"])
        else:
            raise AssertionError(f"the log-in did not finish: stuck at {location}")
        # The redirect to the client's loopback listener.
        arrived = await self._browser.get(location)
        assert arrived.status_code == 200, arrived.text


async def never_open(url: str) -> None:
    """An opener for tests where no browser may be needed."""
    raise AssertionError(f"the client wanted a browser for {url}")
