"""Every way a token stops being good before its ``exp``, run against a running deployment:
a token is obtained and used (200), then revoked, and the resource is polled until it answers
401 ``invalid_token`` "the token has been revoked"; the delay is returned.

A :class:`Deployment` is whatever runs the authorization server, the gateway and the registry
(in one process, or in several); the revocations are made as people make them: RFC 7009
requests to the AS, and the administration functions the CLI calls (``bastion users``,
``bastion clients``, ``bastion access``), each on a database connection of its own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from bastion.access import admin as access_admin
from bastion.authserver import admin
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.registry.access import READ
from bastion.resource.verifier import REVOKED
from bastion.store.database import Database
from tests.gateway.test_gateway import ACCEPT, INIT
from tests.gateway.upstream import RecordingUpstream
from tests.support.clients import machine_client
from tests.support.flow import add_user, authorize, exchange, register

POLL = 0.02
LIMIT = 5.0


@dataclass(frozen=True)
class Target:
    """A protected resource of the deployment and one request that needs a token there."""

    name: str
    resource: str
    scope: str
    url: str

    async def call(self, http: httpx.AsyncClient, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if self.name == "gateway":
            return await http.post(self.url, json=INIT, headers={**headers, "Accept": ACCEPT})
        return await http.get(self.url, headers=headers)


def gateway_target(gateway: str) -> Target:
    """The upstream "notes" at /mcp/notes of the gateway at ``gateway``."""
    url = f"{gateway}/mcp/notes"
    return Target("gateway", url, "mcp:tools", url)


def registry_target(registry: str) -> Target:
    """The registry whose URL (and resource) is ``registry``."""
    return Target("registry", registry, READ, f"{registry}/v0.1/servers")


def upstream_app() -> Starlette:
    """The recording upstream, for ``uvicorn --factory`` (GET /mcp/ready answers 200)."""
    return RecordingUpstream().app


def gateway_settings(gateway: str, upstream: str) -> dict[str, Any]:
    """The ``gateway`` section: one HTTP upstream, "notes", at ``upstream``."""
    return {
        "enabled": True,
        "public_url": gateway,
        "upstreams": [
            {
                "name": "notes",
                "path": "/mcp/notes",
                "url": upstream,
                "scopes": ["mcp:tools"],
                "policy": {"default": ["mcp:tools"]},
            }
        ],
    }


@dataclass
class Deployment:
    """What the scenarios need: the settings of the deployment's database (administration is
    done through them, as the CLI does), where tokens are obtained, and where RFC 7009
    requests go (another process of the AS, across processes)."""

    settings: Settings
    token_url: str
    revoke_url: str


@dataclass
class Holder:
    """Who holds the token: a person (through a public client) or a machine client."""

    access_token: str
    client_id: str
    refresh_token: str | None = None
    username: str | None = None
    secret: str | None = None


Revoke = Callable[[Deployment, Target, Holder], Awaitable[None]]
Prepare = Callable[[Deployment, Target], Awaitable[None]]


async def _nothing(_deployment: Deployment, _target: Target) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    """One way of revoking: for a person's token or a machine client's, with what must be in
    place before the token is issued."""

    id: str
    name: str
    revoke: Revoke
    machine: bool = False
    prepare: Prepare = _nothing
    cleanup: Prepare = _nothing


async def person(deployment: Deployment, target: Target) -> Holder:
    """A new user in group finance signs in to a new public client and gets tokens."""
    username = f"alice-{secrets.token_hex(4)}"
    await add_user(deployment.settings, username, groups=["finance"])
    async with httpx.AsyncClient(base_url=deployment.token_url, trust_env=False) as http:
        client_id = (await register(http))["client_id"]
        done = await authorize(
            http, client_id, username=username, resource=target.resource, scope=target.scope
        )
        response = await exchange(http, client_id, done)
    assert response.status_code == 200, response.text
    tokens = response.json()
    return Holder(tokens["access_token"], client_id, tokens["refresh_token"], username)


async def machine(deployment: Deployment, target: Target) -> Holder:
    """A machine client made by an operator for ``target`` gets a client_credentials token."""
    made = await machine_client(
        deployment.settings,
        client_id=f"robot-{secrets.token_hex(4)}",
        name="robot",
        resources=[target.resource],
        scope=target.scope,
    )
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            f"{deployment.token_url}/token",
            data={
                "grant_type": "client_credentials",
                "resource": target.resource,
                "scope": target.scope,
            },
            auth=made.auth,
        )
    assert response.status_code == 200, response.text
    return Holder(response.json()["access_token"], made.client_id, secret=made.secret)


async def _rfc7009(deployment: Deployment, holder: Holder, token: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            f"{deployment.revoke_url}/revoke",
            data={"token": token, "client_id": holder.client_id},
        )
    assert response.status_code == 200, response.text


async def revoke_access_token(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """RFC 7009 §2.1: the client revokes the access token itself."""
    await _rfc7009(deployment, holder, holder.access_token)


async def revoke_refresh_token(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """RFC 7009 §2.1: the client revokes its refresh token (what ``bastion logout`` does),
    which ends the whole grant."""
    assert holder.refresh_token is not None
    await _rfc7009(deployment, holder, holder.refresh_token)


async def _as_admin(
    deployment: Deployment, holder: Holder, action: Callable[[LocalUsers, str], Awaitable[Any]]
) -> None:
    """Run a ``bastion users`` action on the holder, on a connection of its own."""
    assert holder.username is not None
    settings = deployment.settings
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        assert await action(LocalUsers(db), holder.username)
    finally:
        await db.dispose()


async def remove_user(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """``bastion users remove``."""
    await _as_admin(deployment, holder, lambda users, name: users.remove(name))


async def disable_user(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """``bastion users disable``."""
    await _as_admin(deployment, holder, lambda users, name: users.set_disabled(name, True))


async def change_password(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """``bastion users passwd``."""
    new = "a different horse battery staple"
    await _as_admin(deployment, holder, lambda users, name: users.set_password(name, new))


async def remove_group(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """``bastion users groups NAME --remove finance``."""
    await _as_admin(
        deployment, holder, lambda users, name: users.change_groups(name, remove=["finance"])
    )


async def finance_only(deployment: Deployment, target: Target) -> None:
    """Rules: the target is for group finance and for one other person."""
    await access_admin.allow(deployment.settings, target.resource, "group:finance", [])
    await access_admin.allow(deployment.settings, target.resource, "user:someone-else", [])


async def open_again(deployment: Deployment, target: Target) -> None:
    """Remove what :func:`finance_only` left, so that the target is open to people again."""
    await access_admin.remove(deployment.settings, target.resource, "user:someone-else")


async def remove_group_rule(deployment: Deployment, target: Target, _holder: Holder) -> None:
    """``bastion access remove RESOURCE group:finance``: finance may no longer use it."""
    ended = await access_admin.remove(deployment.settings, target.resource, "group:finance")
    assert ended >= 1


async def remove_client(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """``bastion clients remove``."""
    await admin.remove_client(deployment.settings, holder.client_id)


async def rotate_secret(deployment: Deployment, _target: Target, holder: Holder) -> None:
    """``bastion clients rotate-secret``."""
    await admin.rotate_client_secret(deployment.settings, holder.client_id)


async def remove_client_rule(deployment: Deployment, target: Target, holder: Holder) -> None:
    """``bastion access remove RESOURCE client:ID``."""
    await access_admin.remove(deployment.settings, target.resource, f"client:{holder.client_id}")


KINDS = [
    Kind("rfc7009-access", "RFC 7009 revocation of the access token", revoke_access_token),
    Kind("rfc7009-refresh", "RFC 7009 revocation of the refresh token", revoke_refresh_token),
    Kind("users-remove", "users remove", remove_user),
    Kind("users-disable", "users disable", disable_user),
    Kind("users-passwd", "users passwd", change_password),
    Kind("users-groups-remove", "users groups --remove", remove_group),
    Kind(
        "access-remove-person",
        "access remove of the person's rule",
        remove_group_rule,
        prepare=finance_only,
        cleanup=open_again,
    ),
    Kind("clients-remove", "clients remove", remove_client, machine=True),
    Kind("clients-rotate-secret", "clients rotate-secret", rotate_secret, machine=True),
    Kind(
        "access-remove-client",
        "access remove of the client's rule",
        remove_client_rule,
        machine=True,
    ),
]


async def delay_until_refused(deployment: Deployment, target: Target, kind: Kind) -> float:
    """Obtain a token, show it works at ``target``, revoke it the ``kind`` way, and poll
    every 20 ms (for at most 5 s) until the target refuses it as revoked; the seconds from
    the moment the revocation was committed to the first refusal."""
    await kind.prepare(deployment, target)
    try:
        return await _delay(deployment, target, kind)
    finally:
        await kind.cleanup(deployment, target)


async def _delay(deployment: Deployment, target: Target, kind: Kind) -> float:
    holder = await (machine if kind.machine else person)(deployment, target)
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        accepted = await target.call(http, holder.access_token)
        assert accepted.status_code == 200, accepted.text
        await kind.revoke(deployment, target, holder)
        committed = time.monotonic()
        while True:
            answer = await target.call(http, holder.access_token)
            if answer.status_code != 200:
                break
            assert time.monotonic() - committed < LIMIT, f"still accepted after {LIMIT} s"
            await asyncio.sleep(POLL)
        delay = time.monotonic() - committed
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'error_description="{REVOKED}"' in challenge
    return delay


__all__ = [
    "KINDS",
    "Deployment",
    "Kind",
    "Target",
    "delay_until_refused",
    "gateway_settings",
    "gateway_target",
    "registry_target",
    "upstream_app",
]
