"""Request values in log records (security review L6): a CR or LF that a client smuggles into a
redirect_uri, client_id or path is escaped, so one record stays one line whatever formatter the
application that embeds bastion uses."""

from __future__ import annotations

import logging

import httpx
import pytest

from bastion.config import Settings
from tests.support.flow import REDIRECT_URI, register
from tests.support.live import raw_request

FORGED = "\n2026-01-01 00:00:00,000 INFO bastion.authserver admin logged in\r"
PLAIN = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


async def test_l6_a_newline_in_redirect_uri_or_client_id_gives_one_log_line(
    live_as: tuple[str, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """Over HTTP to a live server: an unregistered redirect_uri and an unknown client_id
    carrying CR and LF, and a path carrying ESC and NEL, are each logged on one line with the
    control characters escaped."""
    issuer, _ = live_as
    caplog.set_level(logging.INFO, "bastion")
    async with httpx.AsyncClient(base_url=issuer) as http:
        client = await register(http)
        pkce = {"response_type": "code", "code_challenge": "x" * 43}
        for params in (
            {**pkce, "client_id": client["client_id"], "redirect_uri": REDIRECT_URI + FORGED},
            {**pkce, "client_id": "nobody" + FORGED, "redirect_uri": REDIRECT_URI},
        ):
            response = await http.get("/authorize", params=params)
            assert response.status_code == 400
    # The path as logged has lost CR and LF (urlsplit drops them) but not ESC or NEL (U+0085).
    response = await raw_request(issuer, "GET", "/register/nobody%1b%5b2J%c2%85forged")
    assert response.status == 401
    records = [r for r in caplog.records if r.name.startswith("bastion")]
    messages = [r.getMessage() for r in records]
    assert any(REDIRECT_URI + "\\n2026-01-01" in m for m in messages), messages
    assert any("/register/nobody\\x1b[2J\\x85forged" in m for m in messages), messages
    for record in records:
        line = PLAIN.format(record)
        assert line.isprintable(), line
