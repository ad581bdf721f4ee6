"""The registry's scope names (checklist G01, G03): ``mcp-registry:read|write|admin`` as the
merged registry authorization document recommends, configurable names, and the old
``registry:read|write|admin`` (and ``registry:read:<group>``) as aliases for one release that
never grant more than their new names."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bastion.access import admin as access_admin
from bastion.access.rules import AccessRule
from bastion.authserver import admin
from bastion.clock import system_clock
from bastion.config import RegistryScopeNames, ResourceSettings, Settings
from bastion.oauth.www_authenticate import parse_challenges
from bastion.registry.access import ADMIN, READ, WRITE, scope_policy
from bastion.serve import create_combined_app
from bastion.store import access as rule_rows
from bastion.store import users as user_rows
from bastion.store.database import Database
from tests.registry.harness import (
    ISSUER,
    REGISTRY,
    MillisClock,
    Registry,
    RegistryFactory,
    encoded,
    registry_settings,
    running_registry,
    server_json,
)
from tests.registry.test_end_to_end import claims_of
from tests.resource.conftest import service_client
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, add_user, authorize, exchange, register
from tests.support.live import free_port, serve

OLD_READ, OLD_WRITE, OLD_ADMIN = "registry:read", "registry:write", "registry:admin"
CUSTOM = {"read": "catalog.read", "write": "catalog.write", "admin": "catalog.admin"}


def scope_of(response: httpx.Response) -> str | None:
    found = parse_challenges(response.headers["www-authenticate"])[0]
    return found.get("scope")


async def get_servers(reg: Registry, token: str) -> httpx.Response:
    return await reg.client.get(f"{reg.base}/servers", headers=reg.bearer(token))


@dataclass(frozen=True)
class SignedIn:
    token: str
    scope: str
    pages: str  # the sign-in and consent pages the person saw


async def sign_in(issuer: str, registry: str, client_id: str, scope: str) -> SignedIn:
    """alice signs in through the browser flow for ``scope`` on the registry."""
    pages: list[str] = []

    async def keep(response: httpx.Response) -> None:
        if "/interaction/" in response.url.path and response.status_code == 200:
            pages.append((await response.aread()).decode())

    async with httpx.AsyncClient(base_url=issuer, event_hooks={"response": [keep]}) as browser:
        authorized = await authorize(browser, client_id, resource=registry, scope=scope)
        response = await exchange(browser, client_id, authorized)
    assert response.status_code == 200, response.text
    body = response.json()
    return SignedIn(body["access_token"], body["scope"], "\n".join(pages))


# -- who must NOT get in: an old name grants its own role and nothing more -------------------------


@pytest.mark.parametrize(
    ("scope", "role"),
    [
        (OLD_READ, READ),
        (OLD_WRITE, WRITE),
        (OLD_ADMIN, ADMIN),
        ("registry:read:team-a", f"{READ}:team-a"),
        ("registry:foo", None),
        ("registry:read:", None),
        ("registry:readers", None),
        ("registry", None),
        ("mcp-registry:read:", None),
        ("mcp:tools", None),
    ],
)
def test_g03_an_old_name_stands_for_exactly_its_own_role(scope: str, role: str | None) -> None:
    """G03: each old name maps to its one new role; an unknown name of the old family is not
    silently accepted."""
    assert RegistryScopeNames().role(scope) == role


def test_g03_old_names_in_the_policy_imply_only_their_new_name() -> None:
    """The middleware's hierarchy: registry:read does not reach write, registry:write does not
    reach admin; registry:admin is admin, as it was."""
    names = RegistryScopeNames()
    policy = scope_policy(names)
    assert policy.missing([OLD_READ], [WRITE]) == {WRITE}
    assert policy.missing([OLD_WRITE], [ADMIN]) == {ADMIN}
    assert policy.missing([OLD_READ], [READ]) == frozenset()
    assert policy.missing([OLD_ADMIN], [READ, WRITE, ADMIN]) == frozenset()
    assert policy.missing(["registry:foo"], [READ]) == {READ}


async def test_g03_an_old_read_token_does_not_publish(reg: Registry) -> None:
    """A token issued before the rename with registry:read lists, but publishing asks for the
    write scope under its new name (403 insufficient_scope)."""
    token = await reg.token("alice", OLD_READ, groups=["team-a"])
    response = await reg.publish(token, server_json("com.acme.team-a/no-write"))
    assert response.status_code == 403
    assert scope_of(response) == f"{READ} {WRITE}"


async def test_g03_an_old_write_token_does_not_administer(reg: Registry) -> None:
    """registry:write publishes, but a status change needs the admin scope."""
    await reg.published(await reg.admin(), server_json("com.acme.team-a/s"))
    token = await reg.token("alice", OLD_WRITE, groups=["team-a", "registry-admins"])
    response = await reg.client.patch(
        f"{reg.base}/servers/{encoded('com.acme.team-a/s')}/status",
        json={"status": "deprecated"},
        headers=reg.bearer(token),
    )
    assert response.status_code == 403
    assert scope_of(response) == f"{ADMIN} {READ}"


async def test_g03_an_unknown_scope_of_the_old_family_grants_nothing(reg: Registry) -> None:
    """registry:foo, registry:readers and an empty finer scope are not read scopes: 403 asking
    for mcp-registry:read."""
    for scope in ("registry:foo", "registry:readers", "registry:read:"):
        response = await get_servers(reg, await reg.token("alice", scope))
        assert response.status_code == 403, scope
        assert scope_of(response) == "mcp-registry:read"


async def test_g03_g04_an_old_finer_read_scope_shows_only_its_group(reg: Registry) -> None:
    """registry:read:team-b shows team-b's entries, never team-a's."""
    admin = await reg.admin()
    await reg.published(admin, server_json("com.acme.team-a/alpha", groups=["team-a"]))
    await reg.published(admin, server_json("com.acme.team-b/beta", groups=["team-b"]))
    token = await reg.token("carol", f"{OLD_READ} registry:read:team-b", groups=[])
    assert await reg.list_names(token) == ["com.acme.team-b/beta@1.0.0"]


async def test_g03_custom_names_make_the_default_names_grant_nothing(
    start_registry: RegistryFactory,
) -> None:
    """With [registry.scope_names] set, a token that carries the default names is not read:
    only the configured names and the old aliases are the registry's scopes."""
    async with start_registry(scope_names=CUSTOM, scopes=["catalog.read:team-a"]) as reg:
        response = await get_servers(reg, await reg.token("alice", f"{READ} {WRITE} {ADMIN}"))
        assert response.status_code == 403
        assert scope_of(response) == "catalog.read"
        response = await reg.publish(
            await reg.token("alice", f"catalog.read {WRITE}", groups=["team-a"]),
            server_json("com.acme.team-a/x"),
        )
        assert response.status_code == 403
        assert scope_of(response) == "catalog.read catalog.write"


async def test_g03_the_as_maps_an_old_name_to_its_new_name_and_no_further(
    make_settings: Callable[..., Settings],
) -> None:
    """A client asking the AS for registry:read gets mcp-registry:read (RFC 6749 §3.3: the
    granted scope in the response), never write; registry:foo is invalid_scope; an old name for
    another resource is not the registry's and stays unknown."""
    settings = make_settings(registry=registry_settings())
    robot = await service_client(settings, "robot", scope=f"{READ} {WRITE}")
    async with running_registry(settings, MillisClock()) as reg:
        transport = httpx.ASGITransport(app=reg.auth_app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:

            async def token(scope: str, resource: str = REGISTRY) -> httpx.Response:
                return await http.post(
                    "/token",
                    data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
                    auth=(robot.client_id, robot.secret),
                )

            granted = await token(OLD_READ)
            assert granted.status_code == 200, granted.text
            assert granted.json()["scope"] == READ
            assert claims_of(granted.json()["access_token"])["scope"] == READ
            for bad in ("registry:foo", OLD_ADMIN):
                refused = await token(bad)
                assert refused.status_code == 400
                assert refused.json()["error"] == "invalid_scope", bad
            elsewhere = await token(OLD_READ, "http://localhost:9001/mcp")
            assert elsewhere.status_code == 400
            assert elsewhere.json()["error"] == "invalid_scope"


async def test_g03_an_access_rule_stored_with_an_old_name_grants_only_that_role(
    make_settings: Callable[..., Settings],
) -> None:
    """A machine rule written before the rename (`bastion access allow registry client:robot
    --scope registry:read`) still gives mcp-registry:read, and still not write."""
    settings = make_settings(registry=registry_settings())
    robot = await service_client(settings, "robot", scope=f"{READ} {WRITE}")
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.transaction() as conn:
            await rule_rows.delete_rule(conn, "*", "client:robot")
            await rule_rows.put_rule(conn, AccessRule(REGISTRY, "client:robot", (OLD_READ,)), 1)
    finally:
        await db.dispose()
    async with running_registry(settings, MillisClock()) as reg:
        transport = httpx.ASGITransport(app=reg.auth_app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            form = {"grant_type": "client_credentials", "resource": REGISTRY}
            auth = (robot.client_id, robot.secret)
            read = await http.post("/token", data={**form, "scope": READ}, auth=auth)
            assert read.status_code == 200, read.text
            assert read.json()["scope"] == READ
            write = await http.post("/token", data={**form, "scope": WRITE}, auth=auth)
            assert write.status_code == 400
            assert write.json()["error"] == "invalid_scope"
            assert (await get_servers(reg, read.json()["access_token"])).status_code == 200


# -- who may: old tokens keep working, new names work end to end, custom names work ---------------


async def test_g03_tokens_issued_with_old_names_are_still_honoured(reg: Registry) -> None:
    """registry:read lists, registry:write publishes in the caller's namespace, registry:admin
    (for registry.admins) changes status: tokens already issued keep working this release."""
    reader = await reg.token("alice", OLD_READ, groups=["team-a"])
    assert (await get_servers(reg, reader)).status_code == 200
    writer = await reg.token("alice", OLD_WRITE, groups=["team-a"])
    await reg.published(writer, server_json("com.acme.team-a/old"))
    admin = await reg.token("root", OLD_ADMIN, groups=["registry-admins"])
    response = await reg.client.patch(
        f"{reg.base}/servers/{encoded('com.acme.team-a/old')}/status",
        json={"status": "deprecated"},
        headers=reg.bearer(admin),
    )
    assert response.status_code == 200, response.text


async def test_g01_g03_new_names_end_to_end_over_http(
    make_settings: Callable[..., Settings],
) -> None:
    """Under uvicorn: the 401 asks for mcp-registry:read in realm mcp-registry, the metadata
    lists the new names, a person signs in for mcp-registry:read mcp-registry:write and
    publishes and lists; a person whose client still asks for the old names gets the new ones
    (the consent page describes them; the consent given holds for the new names)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    registry = f"{issuer}/registry"
    settings = make_settings(issuer=issuer, registry=registry_settings(approve_on_publish=True))
    await add_user(settings, "alice", groups=["team-a"])
    async with serve(create_combined_app(settings), port=port):
        async with httpx.AsyncClient(base_url=issuer) as http:
            probe = await http.get("/registry/v0.1/servers", params={"limit": 1})
            assert probe.status_code == 401
            assert probe.headers["www-authenticate"].startswith(
                'Bearer realm="mcp-registry", resource_metadata="'
            )
            assert 'scope="mcp-registry:read", DPoP ' in probe.headers["www-authenticate"]
            prm = (await http.get("/.well-known/oauth-protected-resource/registry")).json()
            assert {"mcp-registry:read", "mcp-registry:write"} <= set(prm["scopes_supported"])
            assert not any(s.startswith("registry:") for s in prm["scopes_supported"])
            as_metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
            assert not any(s.startswith("registry:") for s in as_metadata["scopes_supported"])
            client_id = (await register(http))["client_id"]
        old = await sign_in(issuer, registry, client_id, f"{OLD_READ} {OLD_WRITE}")
        assert old.scope == f"{READ} {WRITE}"
        assert "Publish, update and delete your entries in the MCP registry" in old.pages
        assert f"<code>{WRITE}</code>" in old.pages
        assert f"<code>{OLD_WRITE}</code>" not in old.pages
        new = await sign_in(issuer, registry, client_id, f"{READ} {WRITE}")
        assert new.scope == f"{READ} {WRITE}"
        assert claims_of(new.token)["scope"] == claims_of(old.token)["scope"] == new.scope
        async with httpx.AsyncClient(base_url=registry) as http:
            for token, name in (
                (new.token, "com.acme.team-a/new"),
                (old.token, "com.acme.team-a/o"),
            ):
                published = await http.post(
                    "/v0.1/publish",
                    json=server_json(name),
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert published.status_code == 200, published.text
            listed = await http.get(
                "/v0.1/servers", headers={"Authorization": f"Bearer {new.token}"}
            )
            assert listed.status_code == 200
            names = {s["server"]["name"] for s in listed.json()["servers"]}
            assert names == {"com.acme.team-a/new", "com.acme.team-a/o"}


async def test_g03_configured_names_are_the_registry_scopes(
    start_registry: RegistryFactory,
) -> None:
    """[registry.scope_names]: the metadata, the 401 and the step-up 403 name the configured
    scopes; tokens with them read and publish; finer read scopes use the configured read name;
    the old names are still aliases."""
    async with start_registry(scope_names=CUSTOM, scopes=["catalog.read:team-a"]) as reg:
        prm = (await reg.client.get("/.well-known/oauth-protected-resource/registry")).json()
        assert prm["scopes_supported"] == [
            "catalog.admin",
            "catalog.read",
            "catalog.read:team-a",
            "catalog.write",
        ]
        anonymous = await reg.client.get(f"{reg.base}/servers")
        assert scope_of(anonymous) == "catalog.read"
        reader = await reg.token("alice", "catalog.read", groups=["team-a"])
        assert (await get_servers(reg, reader)).status_code == 200
        refused = await reg.publish(reader, server_json("com.acme.team-a/c"))
        assert scope_of(refused) == "catalog.read catalog.write"
        assert "needs scope catalog.write" in refused.json()["detail"]
        writer = await reg.token("alice", "catalog.write", groups=["team-a"])
        await reg.published(writer, server_json("com.acme.team-a/c"))
        assert (await get_servers(reg, await reg.token("bob", OLD_READ))).status_code == 200
        [resource] = [r for r in reg.settings.resources if r.uri == REGISTRY]
        assert set(resource.scopes) == {*CUSTOM.values(), "catalog.read:team-a"}


@pytest.mark.parametrize(
    "names",
    [
        {"read": "catalog.read", "write": "catalog.read"},
        {"read": "registry:write"},
        {"write": "mcp-registry:admin"},
        {"write": "mcp-registry:read:team"},
        {"admin": "registry:read:x"},
        {"read": "two words"},
        {"read": 'quo"te'},
        {"read": ""},
    ],
)
def test_g03_scope_names_are_distinct_rfc6749_scope_tokens(names: dict[str, str]) -> None:
    """RFC 6749 §3.3 scope-tokens, three different ones, none another kind's default or old
    name, and none with the form of a finer read scope."""
    with pytest.raises(ValidationError):
        RegistryScopeNames(**names)


def test_g03_finer_scopes_must_be_of_the_configured_read_scope() -> None:
    """registry.scopes lists <read>:<group> (or the old registry:read:<group>, renamed)."""
    with pytest.raises(ValidationError, match=r"finer read scope catalog\.read:<group>"):
        registry_settings(scope_names=CUSTOM, scopes=["mcp-registry:read:team-a"])
    renamed = registry_settings(scope_names=CUSTOM, scopes=["registry:read:team-a"])
    assert renamed.scopes == ["catalog.read:team-a"]


# -- the start-up note -------------------------------------------------------------------------


def notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bastion.registry" and "old names" in r.getMessage()
    ]


async def start(settings: Settings, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bastion.registry"):
        async with running_registry(settings, MillisClock()):
            pass
    return notes(caplog)


async def test_g03_no_start_up_note_when_nothing_uses_old_names(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """New names everywhere (and a rule with the new name): the registry starts silently."""
    settings = make_settings(registry=registry_settings())
    await service_client(settings, "robot", scope=READ)
    assert await start(settings, caplog) == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            {"registry": {"scopes": ["registry:read:team-a"]}},
            "registry.scopes (registry:read:team-a)",
        ),
        (
            {"resources": [{"uri": REGISTRY, "scopes": [OLD_READ, OLD_WRITE]}]},
            f"resources[{REGISTRY}].scopes (registry:read registry:write)",
        ),
        ({"rule": (OLD_WRITE,)}, f"access rule {REGISTRY} group:team-a (registry:write)"),
        (
            {"rule": ("mcp:tools", OLD_READ), "resource": "*"},
            "access rule * group:team-a (registry:read)",
        ),
    ],
)
async def test_g03_one_start_up_note_names_what_still_uses_old_names(
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    named: str,
) -> None:
    """Old names in registry.scopes, in the registry's [[resources]] entry, or in an access rule
    stored before the rename: exactly one WARNING line at start-up, naming the place, the old
    names and what to change them to."""
    registry: dict[str, Any] = {"scopes": [], **overrides.get("registry", {})}
    resources = [ResourceSettings(**r) for r in overrides.get("resources", [])]
    settings = make_settings(registry=registry_settings(**registry), resources=resources)
    if "rule" in overrides:
        db = Database(settings.effective_database_url, schema=settings.database_schema)
        try:
            await db.upgrade()
            async with db.transaction() as conn:
                rule = AccessRule(
                    overrides.get("resource", REGISTRY), "group:team-a", overrides["rule"]
                )
                await rule_rows.put_rule(conn, rule, 1)
        finally:
            await db.dispose()
    [note] = await start(settings, caplog)
    assert named in note
    assert "registry:read -> mcp-registry:read" in note
    [record] = [r for r in caplog.records if r.getMessage() == note]
    assert record.levelno == logging.WARNING


# -- consent given before the rename -------------------------------------------------------------


async def consent_page_shown(settings: Settings, old_consent: set[str]) -> bool:
    """Whether alice, who consented to ``old_consent`` for an operator's confidential client
    before the rename, is asked again when the client asks for the read and write scopes."""
    await add_user(settings, "alice", groups=["team-a"])
    await admin.add_client(
        settings,
        client_id="catalogue",
        name="Catalogue",
        redirect_uris=[REDIRECT_URI],
        confidential=True,
        grant_types=["authorization_code"],
        scope=None,
    )
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.transaction() as conn:
            user = await user_rows.by_username(conn, "alice")
            assert user is not None
            await user_rows.remember_consent(
                conn, user.id, "catalogue", REGISTRY, old_consent, system_clock()
            )
    finally:
        await db.dispose()
    pages: list[str] = []

    async def keep(response: httpx.Response) -> None:
        if "/interaction/" in response.url.path and response.status_code == 200:
            pages.append((await response.aread()).decode())

    async with running_registry(settings, MillisClock()) as reg:
        transport = httpx.ASGITransport(app=reg.auth_app)
        async with httpx.AsyncClient(
            transport=transport, base_url=ISSUER, event_hooks={"response": [keep]}
        ) as browser:
            authorized = await authorize(
                browser, "catalogue", resource=REGISTRY, scope=f"{READ} {WRITE}"
            )
    assert "code" in authorized.params, authorized.location
    return any('name="decision"' in page for page in pages)


async def test_g03_a_consent_to_the_old_read_name_does_not_cover_write(
    make_settings: Callable[..., Settings],
) -> None:
    """A remembered consent to registry:read only: asking for read and write shows the consent
    page again."""
    assert await consent_page_shown(make_settings(registry=registry_settings()), {OLD_READ})


async def test_g03_a_consent_to_the_old_names_counts_for_the_new_ones(
    make_settings: Callable[..., Settings],
) -> None:
    """A remembered consent to registry:read registry:write is a consent to mcp-registry:read
    mcp-registry:write: nobody is asked again only because the names changed."""
    settings = make_settings(registry=registry_settings())
    assert not await consent_page_shown(settings, {OLD_READ, OLD_WRITE})


# -- grants made before the rename ---------------------------------------------------------------


async def test_g03_a_grant_made_under_old_names_survives_the_rename_and_refreshes_to_new_names(
    make_settings: Callable[..., Settings],
) -> None:
    """Before the upgrade (the old names configured as the names) alice is allowed by a rule
    naming registry:read registry:write and signs in. After it, giving the rule again under
    the new names ends no grant, her refresh token gets a token with the new names, and a rule
    narrowed to read ends her grant as it would have before."""
    old_names = {"read": OLD_READ, "write": OLD_WRITE, "admin": OLD_ADMIN}
    before = make_settings(registry=registry_settings(scope_names=old_names, scopes=[]))
    await add_user(before, "alice", groups=["team-a"])
    await access_admin.allow(before, REGISTRY, "group:team-a", [OLD_READ, OLD_WRITE])
    async with running(before) as http:
        client_id = (await register(http))["client_id"]
        authorized = await authorize(
            http, client_id, resource=REGISTRY, scope=f"{OLD_READ} {OLD_WRITE}"
        )
        signed_in = (await exchange(http, client_id, authorized)).json()
    assert signed_in["scope"] == f"{OLD_READ} {OLD_WRITE}"

    after = make_settings(registry=registry_settings(scopes=[]))
    _, ended = await access_admin.allow(after, REGISTRY, "group:team-a", [READ, WRITE])
    assert ended == 0
    async with running(after) as http:
        form = {"grant_type": "refresh_token", "client_id": client_id}
        refreshed = await http.post(
            "/token", data={**form, "refresh_token": signed_in["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["scope"] == f"{READ} {WRITE}"
        assert claims_of(refreshed.json()["access_token"])["scope"] == f"{READ} {WRITE}"
        _, ended = await access_admin.allow(after, REGISTRY, "group:team-a", [READ])
        assert ended == 1
        again = await http.post(
            "/token", data={**form, "refresh_token": refreshed.json()["refresh_token"]}
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
