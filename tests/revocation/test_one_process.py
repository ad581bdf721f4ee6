"""Revocation reaches the gateway and the registry within a second in one process (issue:
"revocation that reaches every resource"), on SQLite and PostgreSQL.

The authorization server and the registry run as one app (``create_combined_app``: the registry
checks the list the AS keeps current), the gateway as another app of the same process with its
own database feed (as ``bastion gateway`` does), in front of a recording upstream; all under
uvicorn on loopback. Variants: the registry on an origin of its own, following the database
itself; the gateway and that registry following the AS's revocation document over HTTP.

Each way of revoking (RFC 7009, ``bastion users``, ``bastion clients``, ``bastion access``) is
made while a token works, and the resource is polled every 20 ms until it answers 401
invalid_token "the token has been revoked".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.gateway import create_gateway_app
from bastion.registry.app import create_registry_app
from bastion.serve import create_combined_app
from tests.gateway.upstream import RecordingUpstream
from tests.revocation.scenarios import (
    KINDS,
    Deployment,
    Kind,
    Target,
    delay_until_refused,
    gateway_settings,
    gateway_target,
    registry_target,
)
from tests.support.live import free_port, serve

BOUND = 1.0


@pytest.fixture
async def running(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Deployment, dict[str, Target]]]:
    """The deployment. Parameter "database" (the default): the registry shares the AS's app,
    the gateway follows the database; "apart": the registry has an origin (and app) of its own
    and follows the database itself; "http": that registry and the gateway follow the AS's
    revocation document."""
    variant = getattr(request, "param", "database")
    apart = variant != "database"
    recorder = RecordingUpstream()
    as_port, gateway_port, registry_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    registry = f"http://127.0.0.1:{registry_port}" if apart else f"{issuer}/registry"
    async with serve(recorder.app) as upstream:
        settings = make_settings(
            issuer=issuer,
            resources=[],
            gateway=gateway_settings(gateway, f"{upstream}/mcp"),
            registry={"enabled": True, "public_url": registry},
            revocations={"feed": "http" if variant == "http" else "database"},
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                if apart:
                    await stack.enter_async_context(serve(create_app(settings), port=as_port))
                    registry_app = create_registry_app(settings)
                    await stack.enter_async_context(serve(registry_app, port=registry_port))
                else:
                    await stack.enter_async_context(
                        serve(create_combined_app(settings), port=as_port)
                    )
                gateway_app = create_gateway_app(settings)
                await stack.enter_async_context(serve(gateway_app, port=gateway_port))
                targets = {
                    "gateway": gateway_target(gateway),
                    "registry": registry_target(registry),
                }
                yield Deployment(settings, issuer, issuer), targets
        finally:
            recorder.release()


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
@pytest.mark.parametrize("where", ["gateway", "registry"])
async def test_a_revocation_is_refused_within_a_second_in_one_process(
    running: tuple[Deployment, dict[str, Target]], where: str, kind: Kind
) -> None:
    deployment, targets = running
    delay = await delay_until_refused(deployment, targets[where], kind)
    assert delay < BOUND, f"{kind.name} took {delay:.3f} s to reach the {where}"


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
@pytest.mark.parametrize("running", ["apart"], indirect=True)
async def test_a_registry_on_its_own_origin_refuses_within_a_second(
    running: tuple[Deployment, dict[str, Target]], kind: Kind
) -> None:
    """``bastion registry serve`` with registry.public_url on another origin: no AS in its app,
    so it follows the database itself."""
    deployment, targets = running
    delay = await delay_until_refused(deployment, targets["registry"], kind)
    assert delay < BOUND, f"{kind.name} took {delay:.3f} s to reach the registry"


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
@pytest.mark.parametrize("where", ["gateway", "registry"])
@pytest.mark.parametrize("running", ["http"], indirect=True)
async def test_resources_following_the_revocation_document_refuse_within_a_second(
    running: tuple[Deployment, dict[str, Target]], where: str, kind: Kind
) -> None:
    """revocations.feed = "http": the gateway and the registry apart long-poll
    <issuer>/revocations instead of reading the database."""
    deployment, targets = running
    delay = await delay_until_refused(deployment, targets[where], kind)
    assert delay < BOUND, f"{kind.name} took {delay:.3f} s to reach the {where}"
