"""People's side of the console's tests: signing in at /signin, a grant given to an
application, whether it still works (all over real HTTP)."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from bastion.store.schema import token_families
from tests.console.conftest import Console, csrf_of
from tests.support.flow import PASSWORD, authorize, exchange, register

NEW_PASSWORD = "a new passphrase of several words"


async def can_sign_in(console: Console, username: str, password: str) -> bool:
    """Whether ``username`` signs in at /signin with ``password`` (real HTTP)."""
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        form = await http.get("/signin", params={"next": "/account"})
        answer = await http.post(
            "/signin",
            data={
                "csrf": csrf_of(form.text),
                "next": "/account",
                "username": username,
                "password": password,
            },
        )
        return answer.status_code == 303


async def grant(console: Console, username: str, password: str = PASSWORD) -> str:
    """A grant ``username`` gives an application over real HTTP: its refresh token."""
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        client = await register(http)
        done = await authorize(
            http,
            client["client_id"],
            username=username,
            password=password,
            resource=console.url("/mcp/notes"),
        )
        answer = await exchange(http, client["client_id"], done)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["refresh_token"])


async def refresh_works(console: Console, refresh_token: str) -> bool:
    """Whether the application that holds ``refresh_token`` still gets tokens with it."""
    db = console.database()
    try:
        async with db.connect() as conn:
            client_id = await conn.scalar(sa.select(token_families.c.client_id).limit(1))
    finally:
        await db.dispose()
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        answer = await http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
        )
        return answer.status_code == 200


__all__ = ["NEW_PASSWORD", "can_sign_in", "grant", "refresh_works"]
