"""Password guessing at the log-in form (security review M2), against a real uvicorn server
started with bastion's own proxy options (``bastion.serve.proxy_options``): the client address
is the peer's unless ``trusted_proxies`` names the peer; counts per address (IPv6 by /64) and
per account, with a bounded back-off and Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bastion.authserver.app import create_app
from bastion.authserver.login_throttle import wait_message
from bastion.config import Settings
from bastion.oauth import pkce
from bastion.serve import proxy_options
from tests.authserver.browser_steps import MovableClock, authorization_params
from tests.support.flow import PASSWORD, add_user, csrf_of, register
from tests.support.live import free_port, serve


@dataclass
class LoginForm:
    """One pending sign-in at a live AS: post user name, password and a claimed address."""

    http: httpx.AsyncClient
    action: str
    csrf: str
    clock: MovableClock

    async def attempt(
        self, password: str = "wrong", *, forwarded_for: str | None = None
    ) -> httpx.Response:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return await self.http.post(
            self.action,
            data={"csrf": self.csrf, "username": "alice", "password": password},
            headers=headers,
        )


@asynccontextmanager
async def login_form(
    settings_for: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[LoginForm]:
    """The AS under uvicorn, as ``bastion serve`` runs it, with alice and a pending sign-in."""
    port = free_port()
    settings = settings_for(issuer=f"http://127.0.0.1:{port}", **overrides)
    await add_user(settings)
    clock = MovableClock()
    app = create_app(settings, clock=clock)
    async with (
        serve(app, port=port, **proxy_options(settings.trusted_proxies)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        client = await register(http)
        params = authorization_params(client["client_id"], pkce.new_verifier())
        response = await http.get("/authorize", params=params)
        location = response.headers["location"]
        page = await http.get(location)
        yield LoginForm(http, f"{location}/login", csrf_of(page.text), clock)


def assert_paused(response: httpx.Response, seconds: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(seconds)
    assert wait_message(seconds) in response.text


async def test_m2_rotating_x_forwarded_for_does_not_reset_the_count(
    make_settings: Callable[..., Settings],
) -> None:
    """Without trusted_proxies no forwarded header is believed, not even from 127.0.0.1
    (uvicorn's default): a new X-Forwarded-For per attempt is still the same address, and the
    right password is paused, for what is left of failure_window, once max_failures attempts
    failed."""
    limits = {"max_failures": 3, "failure_window": 60}
    async with login_form(make_settings, login=limits) as form:
        for n in range(3):
            assert (await form.attempt(forwarded_for=f"198.51.100.{n}")).status_code == 401
        form.clock.advance(10)
        paused = await form.attempt(PASSWORD, forwarded_for="198.51.100.99")
        assert_paused(paused, 50)
        form.clock.advance(50)
        assert (await form.attempt(PASSWORD)).status_code == 303


async def test_m2_ipv6_addresses_of_one_64_share_a_count(
    make_settings: Callable[..., Settings],
) -> None:
    """Behind a trusted proxy the reported address counts; every address of an IPv6 /64 counts
    as one (2001:db8::1 and 2001:db8::2), an IPv4-mapped address as its IPv4 address, and
    another /64 has its own count."""
    overrides = {"trusted_proxies": ["127.0.0.1"], "login": {"max_failures": 2}}
    async with login_form(make_settings, **overrides) as form:
        assert (await form.attempt(forwarded_for="2001:db8::1")).status_code == 401
        assert (await form.attempt(forwarded_for="2001:db8::2")).status_code == 401
        assert_paused(await form.attempt(PASSWORD, forwarded_for="2001:db8::ffff:1"), 900)
        assert (await form.attempt(forwarded_for="::ffff:192.0.2.7")).status_code == 401
        assert (await form.attempt(forwarded_for="192.0.2.7")).status_code == 401
        assert_paused(await form.attempt(PASSWORD, forwarded_for="192.0.2.7"), 900)
        assert (await form.attempt(PASSWORD, forwarded_for="2001:db8:0:1::1")).status_code == 303


async def test_m2_per_account_limit_holds_across_addresses(
    make_settings: Callable[..., Settings],
) -> None:
    """After account_max_failures failures for alice from any addresses, each attempt waits 1,
    2, 4… seconds after the last failure, never more than max_backoff, the right password
    included; once the wait is over the right password signs in and the count starts again."""
    overrides = {
        "trusted_proxies": ["127.0.0.0/8"],
        "login": {"max_failures": 100, "account_max_failures": 3, "max_backoff": 4},
    }
    async with login_form(make_settings, **overrides) as form:
        for n in range(3):
            assert (await form.attempt(forwarded_for=f"203.0.113.{n}")).status_code == 401
        assert_paused(await form.attempt(PASSWORD, forwarded_for="203.0.113.50"), 1)
        for wait in (1, 2, 4, 4):  # each wait over, one more failure: the next wait doubles
            form.clock.advance(wait)
            assert (await form.attempt(forwarded_for=f"198.51.100.{wait}")).status_code == 401
            next_wait = min(wait * 2, 4)
            assert_paused(await form.attempt(PASSWORD, forwarded_for="192.0.2.1"), next_wait)
        form.clock.advance(4)
        assert (await form.attempt(PASSWORD, forwarded_for="192.0.2.1")).status_code == 303
        assert (await form.attempt(forwarded_for="192.0.2.1")).status_code == 401


def test_the_pause_message_says_how_long_to_wait() -> None:
    assert wait_message(1) == "Too many failed attempts. Wait 1 second before trying again."
    assert wait_message(119).endswith("Wait 119 seconds before trying again.")
    assert wait_message(900).endswith("Wait 15 minutes before trying again.")
    assert wait_message(121).endswith("Wait 3 minutes before trying again.")
