"""The browser side: which URLs may be opened (C18) and the loopback redirect listener
(RFC 8252 §7.3, §8.3)."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest

from bastion.client.browser import check_authorization_url, headless_opener, open_in_browser
from bastion.client.errors import CallbackTimeout, UnsafeAuthorizationUrl
from bastion.client.loopback import LoopbackListener


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "http://as.example.com/authorize",
        "https://as.example.com/authorize?x=1 --new-window",
        "https://as.example.com/a\nb",
        "ftp://as.example.com/",
        "//as.example.com/authorize",
    ],
)
def test_c18_only_https_or_loopback_http_urls_are_opened(url: str) -> None:
    """MCP security: open only http(s) authorization URLs, http only for loopback; refuse
    javascript:, data:, file:, vbscript: (and anything a shell or browser could misread)."""
    with pytest.raises(UnsafeAuthorizationUrl):
        check_authorization_url(url)


def test_c18_https_and_loopback_http_are_allowed() -> None:
    assert check_authorization_url("https://as.example.com/authorize?a=b")
    assert check_authorization_url("http://127.0.0.1:9000/authorize")
    assert check_authorization_url("http://localhost/authorize")
    assert check_authorization_url("http://as.lan/authorize", allow_insecure_http=True)


async def test_c18_the_default_opener_prints_the_url_before_opening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The URL is printed for headless use, then handed to :mod:`webbrowser` (no shell)."""
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, new=0: opened.append(url) or True)
    out = io.StringIO()
    await open_in_browser(out)("https://as.example.com/authorize?x=1")
    assert "https://as.example.com/authorize?x=1" in out.getvalue()
    assert opened == ["https://as.example.com/authorize?x=1"]
    with pytest.raises(UnsafeAuthorizationUrl):
        await open_in_browser(out)("javascript:alert(1)")
    assert len(opened) == 1


async def test_the_listener_accepts_exactly_one_callback() -> None:
    """RFC 8252 §7.3: 127.0.0.1, an ephemeral port; the first GET of the redirect path is the
    authorization response; other paths 404, later callbacks 410; the page echoes nothing."""
    async with await LoopbackListener.start() as listener, httpx.AsyncClient() as http:
        assert listener.port > 0
        assert listener.redirect_uri == f"http://127.0.0.1:{listener.port}/callback"
        assert (await http.get(f"http://127.0.0.1:{listener.port}/favicon.ico")).status_code == 404
        first = await http.get(f"{listener.redirect_uri}?code=<script>x</script>&state=s")
        assert first.status_code == 200
        assert "<script>" not in first.text
        assert first.headers["cache-control"] == "no-store"
        assert await listener.wait(5) == "code=%3Cscript%3Ex%3C/script%3E&state=s"
        again = await http.get(f"{listener.redirect_uri}?code=other")
        assert again.status_code == 410
        assert (await http.post(listener.redirect_uri)).status_code == 405


async def test_the_page_says_what_happened_for_which_server_and_echoes_nothing() -> None:
    """After Deny the page says nothing was authorized (not "received"); it names the server
    the client asked for, and shows nothing of the query (an attacker could craft it)."""
    server = "http://127.0.0.1:8001/mcp/demo"
    async with await LoopbackListener.start(server=server) as listener, httpx.AsyncClient() as h:
        denied = await h.get(
            f"{listener.redirect_uri}?error=access_denied&error_description=<b>evil</b>&state=s"
        )
    assert "Authorization declined" in denied.text and "Nothing was authorized" in denied.text
    assert "received" not in denied.text
    assert f"<code>{server}</code>" in denied.text
    assert "evil" not in denied.text
    assert denied.headers["content-security-policy"].startswith("default-src 'none'")
    async with await LoopbackListener.start(server=server) as listener, httpx.AsyncClient() as h:
        odd = await h.get(f"{listener.redirect_uri}?error=<script>&state=s")
        assert "Authorization refused" in odd.text and "<script>" not in odd.text
    async with await LoopbackListener.start() as listener, httpx.AsyncClient() as h:
        ok = await h.get(f"{listener.redirect_uri}?code=c&state=s")
        assert "Authorization received" in ok.text and "<code>" not in ok.text


async def test_the_listener_times_out() -> None:
    async with await LoopbackListener.start() as listener:
        with pytest.raises(CallbackTimeout, match=r"within 0\.05 s"):
            await listener.wait(0.05)


async def test_the_listener_falls_back_to_an_ephemeral_port_when_its_port_is_taken() -> None:
    """A registered port already in use: listen elsewhere (ASes match loopback ports loosely,
    RFC 8252 §7.3)."""
    async with await LoopbackListener.start() as first:
        second = await LoopbackListener.start(port=first.port)
        try:
            assert second.port != first.port
        finally:
            await second.close()


async def test_the_headless_opener_delivers_the_redirect_to_the_listener() -> None:
    """For authorization servers that redirect at once: the opener follows the redirect to the
    request's redirect_uri and requests it once."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    from tests.support.live import serve

    async def authorize(request: Request) -> RedirectResponse:
        target = request.query_params["redirect_uri"]
        return RedirectResponse(f"{target}?code=abc&state=s", status_code=302)

    app = Starlette(routes=[Route("/authorize", authorize)])
    async with serve(app) as base, await LoopbackListener.start() as listener:
        url = f"{base}/authorize?redirect_uri={listener.redirect_uri}"
        await asyncio.wait_for(headless_opener()(url), 5)
        assert await listener.wait(1) == "code=abc&state=s"
