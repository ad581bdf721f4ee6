"""A gateway whose secret key is not the authorization server's refuses to start.

The connect pages (on the authorization server) seal each person's upstream tokens under the
secret key; a gateway with another key could open none of them and would ask every person to
connect again, endlessly. The signing keys are sealed under the same key, so the gateway checks
one of them at start and says what to configure.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastion.authserver.admin import rotate_keys
from bastion.authserver.secret_key import cipher_for
from bastion.config import Settings
from bastion.gateway import create_gateway_app
from bastion.store.database import Database
from bastion.vault.errors import UpstreamMisconfigured
from bastion.vault.tokens import VaultTokens
from tests.support.live import free_port, serve

AS_KEY = "the-authorization-servers-secret-key-0123456789"
OTHER_KEY = "a-gateway-configured-with-another-key-0123456789"


def _settings(make_settings: Callable[..., Settings], secret: str) -> Settings:
    gateway = f"http://127.0.0.1:{free_port()}"
    return make_settings(
        secret_key=secret,
        gateway={
            "enabled": True,
            "public_url": gateway,
            "upstreams": [
                {
                    "name": "up",
                    "path": "/mcp/up",
                    "url": "http://127.0.0.1:9/mcp",
                    "auth": "oauth",
                    "oauth": {"client_id": "bastion", "allow_private_addresses": True},
                }
            ],
        },
    )


async def _check(settings: Settings) -> None:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    vault = VaultTokens(
        settings.gateway.upstreams, issuer=settings.issuer, db=db, cipher=cipher_for(settings)
    )
    try:
        await vault.check_secret()
    finally:
        await vault.aclose()
        await db.dispose()


async def test_a_gateway_with_another_secret_key_refuses_to_start(
    make_settings: Callable[..., Settings],
) -> None:
    await rotate_keys(_settings(make_settings, AS_KEY))
    other = _settings(make_settings, OTHER_KEY)
    with pytest.raises(UpstreamMisconfigured, match="same secret_key"):
        await _check(other)
    with pytest.raises(RuntimeError, match="startup failed"):
        async with serve(create_gateway_app(other)):
            pass


async def test_the_authorization_server_s_key_or_no_key_yet_passes(
    make_settings: Callable[..., Settings],
) -> None:
    settings = _settings(make_settings, AS_KEY)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()  # the authorization server's first start, before it made a key
    finally:
        await db.dispose()
    await _check(settings)  # no signing key stored yet: nothing to compare
    await rotate_keys(settings)
    await _check(settings)
