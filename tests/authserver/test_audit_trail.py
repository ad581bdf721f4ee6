"""The authorization server's audit trail (docs/audit.md): what real flows record, and what no
record may ever hold (tokens, codes, secrets, passwords, registration access tokens)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.store.database import Database
from bastion.store.schema import auth_audit, users
from bastion.tokens import secrets as opaque
from tests.support.asgi import running
from tests.support.flow import PASSWORD, add_user, authorize, exchange, login_form, register

TYPED_BY_A_STRANGER = "stranger-typed-this-password"
WRONG_PASSWORD = "alice-mistyped-her-password"


async def _rows(settings: Settings) -> list[dict[str, Any]]:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            found = await conn.execute(sa.select(auth_audit).order_by(auth_audit.c.id))
            return [dict(row._mapping) for row in found]
    finally:
        await db.dispose()


async def _count_users(settings: Settings) -> int:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            return len(list(await conn.execute(sa.select(users.c.id))))
    finally:
        await db.dispose()


async def _failed_login(
    client: httpx.AsyncClient, client_id: str, username: str, password: str
) -> None:
    location, csrf = await login_form(client, client_id)
    failed = await client.post(
        f"{location}/login",
        data={"csrf": csrf, "username": username, "password": password},
    )
    assert failed.status_code == 401


async def _grant(client: httpx.AsyncClient) -> dict[str, Any]:
    """Register a client, sign alice in, consent, redeem the code: the client's registration."""
    reg = await register(client)
    done = await authorize(client, reg["client_id"])
    assert (await exchange(client, reg["client_id"], done)).status_code == 200
    return reg


async def test_no_record_holds_a_token_code_secret_or_password(settings: Settings) -> None:
    """Every flow of the server, then every column of every record is searched for every secret
    value the flows used (and for their SHA-256 digests, which the grant tables hold)."""
    await add_user(settings)
    secrets: list[str] = [PASSWORD, WRONG_PASSWORD, TYPED_BY_A_STRANGER]
    async with running(settings) as client:
        public = await register(client)
        confidential = await register(client, token_endpoint_auth_method="client_secret_basic")
        secrets += [public["registration_access_token"], confidential["registration_access_token"]]
        secrets.append(confidential["client_secret"])
        await _failed_login(client, public["client_id"], "alice", WRONG_PASSWORD)
        await _failed_login(client, public["client_id"], "stranger", TYPED_BY_A_STRANGER)
        done = await authorize(client, public["client_id"])
        secrets.append(done.params["code"])
        secrets.append(done.verifier)
        first = (await exchange(client, public["client_id"], done)).json()
        secrets += [first["access_token"], first["refresh_token"]]
        refreshed = await client.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first["refresh_token"],
                "client_id": public["client_id"],
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        second = refreshed.json()
        secrets += [second["access_token"], second["refresh_token"]]
        for token in (second["access_token"], second["refresh_token"]):
            answer = await client.post(
                "/revoke", data={"token": token, "client_id": public["client_id"]}
            )
            assert answer.status_code == 200
        manage = await client.delete(
            confidential["registration_client_uri"].removeprefix(settings.issuer),
            headers={"Authorization": f"Bearer {confidential['registration_access_token']}"},
        )
        assert manage.status_code == 204
    records = await _rows(settings)
    forbidden = secrets + [opaque.digest(s) for s in secrets]
    for record in records:
        for column, value in record.items():
            for secret in forbidden:
                assert secret not in str(value), f"{record['type']}.{column} holds a secret"
    assert "stranger" not in str(records)
    types = [r["type"] for r in records]
    for expected in (
        "client_registered",
        "sign_in_failed",
        "sign_in",
        "consent_given",
        "grant_created",
        "grant_refreshed",
        "token_revoked",
        "grant_revoked",
        "client_deleted",
    ):
        assert expected in types, types


async def test_a_failed_sign_in_of_an_unknown_name_creates_nothing(settings: Settings) -> None:
    """The failure is recorded, without the typed name or password, and nobody is created."""
    await add_user(settings)
    before = await _count_users(settings)
    async with running(settings) as client:
        reg = await register(client)
        await _failed_login(client, reg["client_id"], "mallory", TYPED_BY_A_STRANGER)
        await _failed_login(client, reg["client_id"], "alice", WRONG_PASSWORD)
    assert await _count_users(settings) == before
    failures = [r for r in await _rows(settings) if r["type"] == "sign_in_failed"]
    assert [(r["outcome"], r["method"]) for r in failures] == [
        ("unknown_user", "password"),
        ("wrong_password", "password"),
    ]
    unknown, wrong = failures
    assert unknown["subject"] is None and unknown["client_id"] == reg["client_id"]
    assert unknown["address"] == "127.0.0.1"
    assert "mallory" not in str(unknown) and TYPED_BY_A_STRANGER not in str(unknown)
    assert wrong["subject"] is not None


async def test_the_sign_in_and_the_grant_name_the_person_client_and_grant(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    await add_user(settings)
    reg = await _grant(app_client)
    by_type = {r["type"]: r for r in await _rows(settings)}
    user_id = by_type["admin.user_added"]["target_id"]
    signed = by_type["sign_in"]
    assert (signed["subject"], signed["client_id"], signed["method"]) == (
        user_id,
        reg["client_id"],
        "password",
    )
    created = by_type["grant_created"]
    assert created["subject"] == user_id and created["client_id"] == reg["client_id"]
    assert created["method"] == "authorization_code" and len(created["grant_id"]) == 32
    assert created["detail"] == {"scope": "mcp:tools", "resource": "http://localhost:9001/mcp"}
    consent = by_type["consent_given"]
    assert consent["detail"] == {"scope": "mcp:tools", "resource": "http://localhost:9001/mcp"}
    assert by_type["client_registered"]["actor"] == f"client:{reg['client_id']}"


async def test_a_refused_consent_is_recorded(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    await add_user(settings)
    reg = await register(app_client)
    done = await authorize(app_client, reg["client_id"], decision="deny")
    assert done.params["error"] == "access_denied"
    types = [r["type"] for r in await _rows(settings)]
    assert "consent_denied" in types and "consent_given" not in types


def _with_request_id(app: Any, request_id: str) -> Callable[..., Any]:
    """What the request-id middleware does, for the test: put an id in the scope."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "bastion.request_id": request_id}
        await app(scope, receive, send)

    return wrapped


async def test_records_carry_the_request_id_of_the_request(settings: Settings) -> None:
    await add_user(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=_with_request_id(app, "req-0123"))
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as client:
            reg = await register(client)
            done = await authorize(client, reg["client_id"])
            assert (await exchange(client, reg["client_id"], done)).status_code == 200
    records = await _rows(settings)
    made_here = [r for r in records if not r["type"].startswith("admin.")]
    assert made_here and all(r["request_id"] == "req-0123" for r in made_here)
    assert [r["request_id"] for r in records if r["type"] == "admin.user_added"] == [None]


async def test_nothing_is_recorded_when_the_trail_is_off(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(audit={"enabled": False})
    await add_user(settings)
    async with running(settings) as client:
        await _grant(client)
    assert [r["type"] for r in await _rows(settings)] == ["admin.user_added"]


async def test_an_operator_revoking_grants_is_recorded_with_each_grant(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    import getpass

    from bastion.access.admin import revoke_grants

    await add_user(settings)
    await _grant(app_client)
    assert await revoke_grants(settings, username="alice") == 1
    records = await _rows(settings)
    created = next(r for r in records if r["type"] == "grant_created")
    revoked = next(r for r in records if r["type"] == "grant_revoked")
    operator = f"cli:{getpass.getuser()}"
    assert (revoked["grant_id"], revoked["actor"]) == (created["grant_id"], operator)
    assert revoked["detail"] == {"reason": "revoked by an operator"}
    summary = records[-1]
    assert (summary["type"], summary["actor"], summary["target_id"]) == (
        "admin.grants_revoked",
        operator,
        created["subject"],
    )
    assert summary["detail"] == {"user": "alice", "client_id": None, "count": 1}


async def _statements_of_a_grant(settings: Settings, username: str) -> tuple[int, int]:
    """Statements the token endpoint sends for a code exchange and for a refresh."""
    from sqlalchemy import event

    await add_user(settings, username)
    async with running(settings) as client:
        reg = await register(client)
        done = await authorize(client, reg["client_id"], username=username)
        engine = client.app.state.bastion.db.engine.sync_engine  # type: ignore[attr-defined]
        seen: list[str] = []
        task = asyncio.current_task()  # the requests' (ASGITransport), not housekeeping's

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if asyncio.current_task() is task:
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            tokens = (await exchange(client, reg["client_id"], done)).json()
            exchanged = len(seen)
            form = {"grant_type": "refresh_token", "client_id": reg["client_id"]}
            form["refresh_token"] = tokens["refresh_token"]
            assert (await client.post("/token", data=form)).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", record)
    return exchanged, len(seen) - exchanged


async def test_the_token_endpoint_records_a_grant_without_an_extra_round_trip_on_postgresql(
    make_settings: Callable[..., Settings],
) -> None:
    """The record of a grant created or refreshed rides on the statement that records its
    access token (PostgreSQL: a data-modifying WITH); SQLite, in-process, runs one more."""
    without = await _statements_of_a_grant(make_settings(audit={"enabled": False}), "bob")
    settings = make_settings()
    with_trail = await _statements_of_a_grant(settings, "alice")
    extra = 0 if settings.effective_database_url.startswith("postgresql") else 1
    assert with_trail == (without[0] + extra, without[1] + extra)
    assert [r["type"] for r in await _rows(settings)][-2:] == ["grant_created", "grant_refreshed"]
