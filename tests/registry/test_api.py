"""The generic registry API v0.1 (and /v0): shapes, list parameters, versions, latest, publish,
edit, status, errors as RFC 9457 problems (registry OpenAPI, "Registry API facts")."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.registry.harness import META, Registry, server_json


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = body["_meta"][META]
    return found


async def _admin_headers(reg: Registry) -> dict[str, str]:
    return reg.bearer(await reg.admin())


async def test_list_answers_a_server_list_with_metadata_count(reg: Registry) -> None:
    """ServerList: {servers: [ServerResponse], metadata: {count}}; no nextCursor on the last
    page; each entry's registry metadata under bastion's own _meta key."""
    headers = await _admin_headers(reg)
    published = await reg.published(await reg.admin(), server_json("io.x/a", title="A"))
    response = await reg.client.get(f"{reg.base}/servers", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body == {"servers": [published], "metadata": {"count": 1}}
    entry = body["servers"][0]
    assert entry["server"] == server_json("io.x/a", title="A")
    assert set(_meta(entry)) == {
        "status",
        "statusChangedAt",
        "publishedAt",
        "updatedAt",
        "isLatest",
        "approved",
        "groups",
    }


async def test_v0_paths_are_aliases_of_v0_1(reg: Registry) -> None:
    """VS Code probes /v0.1/servers?limit=1, then /v0/servers?limit=1."""
    headers = await _admin_headers(reg)
    await reg.published(await reg.admin(), server_json("io.x/a"))
    for path in ("/servers?limit=1", "/servers/io.x%2Fa/versions/latest"):
        new = await reg.client.get(f"/registry/v0.1{path}", headers=headers)
        old = await reg.client.get(f"/registry/v0{path}", headers=headers)
        assert new.status_code == old.status_code == 200
        assert new.json() == old.json()
    response = await reg.client.post(
        "/registry/v0/publish", json=server_json("io.x/b"), headers=headers
    )
    assert response.status_code == 200


async def test_limit_defaults_to_30_and_pages_follow_next_cursor(reg: Registry) -> None:
    """limit default 30; metadata.nextCursor while more remain; the next page starts after it."""
    admin = await reg.admin()
    for i in range(31):
        await reg.published(admin, server_json(f"io.x/s{i:02d}"))
    headers = reg.bearer(admin)
    first = (await reg.client.get(f"{reg.base}/servers", headers=headers)).json()
    assert first["metadata"]["count"] == 30 and len(first["servers"]) == 30
    cursor = first["metadata"]["nextCursor"]
    second = (
        await reg.client.get(f"{reg.base}/servers", params={"cursor": cursor}, headers=headers)
    ).json()
    assert [s["server"]["name"] for s in second["servers"]] == ["io.x/s30"]
    assert "nextCursor" not in second["metadata"]
    names = [s["server"]["name"] for s in first["servers"]]
    assert names == sorted(names)
    assert len(await reg.list_names(admin, limit=100)) == 31
    assert len(await reg.list_names(admin, limit=7)) == 31


INVALID_QUERIES = [
    ({"limit": "0"}, "query.limit"),
    ({"limit": "101"}, "query.limit"),
    ({"limit": "-1"}, "query.limit"),
    ({"limit": "ten"}, "query.limit"),
    ({"limit": "\uff11"}, "query.limit"),  # a fullwidth digit one
    ({"cursor": "nope"}, "query.cursor"),
    ({"updated_since": "2025-08-07"}, "query.updated_since"),
    ({"include_deleted": "yes"}, "query.include_deleted"),
    ({"search": "a\x00b"}, "query.search"),
    ({"version": "1\x01"}, "query.version"),
]


async def test_invalid_list_parameters_are_400_problems_naming_the_parameter(
    reg: Registry,
) -> None:
    """limit is 1 to 100 (max 100); cursor opaque; updated_since RFC 3339; RFC 9457 body."""
    headers = await _admin_headers(reg)
    for params, location in INVALID_QUERIES:
        response = await reg.client.get(f"{reg.base}/servers", params=params, headers=headers)
        assert response.status_code == 400, params
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "about:blank" and problem["title"] == "Bad Request"
        assert problem["status"] == 400
        assert [e["location"] for e in problem["errors"]] == [location]


async def test_search_is_a_case_insensitive_substring_of_name_or_description(
    reg: Registry,
) -> None:
    """search: substring of the name and description; % and _ are literal."""
    admin = await reg.admin()
    await reg.published(admin, server_json("io.x/weather", description="Forecasts"))
    await reg.published(admin, server_json("io.x/files", description="Read WEATHER logs"))
    await reg.published(admin, server_json("io.x/other", description="100% other_stuff"))
    assert await reg.list_names(admin, search="Weath") == ["io.x/files@1.0.0", "io.x/weather@1.0.0"]
    assert await reg.list_names(admin, search="forecast") == ["io.x/weather@1.0.0"]
    assert await reg.list_names(admin, search="0%") == ["io.x/other@1.0.0"]
    assert await reg.list_names(admin, search="r_s") == ["io.x/other@1.0.0"]
    assert await reg.list_names(admin, search="_x") == []


async def test_updated_since_returns_changes_after_a_time_deleted_ones_included(
    reg: Registry,
) -> None:
    """updated_since (RFC 3339): entries updated after it, deleted ones included ("always true
    when updated_since is provided")."""
    admin = await reg.admin()
    first = await reg.published(admin, server_json("io.x/old"))
    since = _meta(first)["updatedAt"]
    reg.clock.advance(5_000)
    await reg.published(admin, server_json("io.x/new"))
    await reg.published(admin, server_json("io.x/gone"))
    await reg.client.delete(
        f"{reg.base}/servers/io.x%2Fgone/versions/1.0.0", headers=reg.bearer(admin)
    )
    assert await reg.list_names(admin, updated_since=since) == [
        "io.x/gone@1.0.0",
        "io.x/new@1.0.0",
    ]
    assert await reg.list_names(admin, updated_since="2000-01-01T00:00:00+01:00") == [
        "io.x/gone@1.0.0",
        "io.x/new@1.0.0",
        "io.x/old@1.0.0",
    ]


async def test_version_latest_and_exact_version_filters(reg: Registry) -> None:
    """version=latest: the latest version of each server; version=1.2.3: that version only."""
    admin = await reg.admin()
    for version in ("1.0.0", "2.0.0", "1.5.0"):
        await reg.published(admin, server_json("io.x/a", version))
    await reg.published(admin, server_json("io.x/b", "1.5.0"))
    assert await reg.list_names(admin, version="latest") == ["io.x/a@2.0.0", "io.x/b@1.5.0"]
    assert await reg.list_names(admin, version="1.5.0") == ["io.x/a@1.5.0", "io.x/b@1.5.0"]
    assert len(await reg.list_names(admin)) == 4


async def test_is_latest_moves_with_publications_and_deletions(reg: Registry) -> None:
    """isLatest marks one version per server: the highest SemVer among approved, non-deleted
    versions; versions whose flag flips get a new updatedAt (so mirrors see the change)."""
    admin = await reg.admin()
    headers = reg.bearer(admin)
    one = await reg.published(admin, server_json("io.x/a", "1.0.0"))
    assert _meta(one)["isLatest"] is True
    two = await reg.published(admin, server_json("io.x/a", "2.0.0"))
    await reg.published(admin, server_json("io.x/a", "1.5.0"))
    base = f"{reg.base}/servers/io.x%2Fa/versions"
    latest = (await reg.client.get(f"{base}/latest", headers=headers)).json()
    assert latest["server"]["version"] == "2.0.0"
    old = (await reg.client.get(f"{base}/1.0.0", headers=headers)).json()
    assert _meta(old)["isLatest"] is False
    assert _meta(old)["updatedAt"] > _meta(one)["updatedAt"]
    await reg.client.delete(f"{base}/2.0.0", headers=headers)
    latest = (await reg.client.get(f"{base}/latest", headers=headers)).json()
    assert latest["server"]["version"] == "1.5.0"
    assert _meta(two)["isLatest"] is True


async def test_versions_are_listed_newest_publication_first(reg: Registry) -> None:
    """GET /servers/{name}/versions: every visible version, newest first; 404 for no server."""
    admin = await reg.admin()
    for version in ("1.0.0", "3.0.0", "2.0.0"):
        await reg.published(admin, server_json("io.x/a", version))
    headers = reg.bearer(admin)
    response = await reg.client.get(f"{reg.base}/servers/io.x%2Fa/versions", headers=headers)
    body = response.json()
    assert [s["server"]["version"] for s in body["servers"]] == ["2.0.0", "3.0.0", "1.0.0"]
    assert body["metadata"] == {"count": 3}
    response = await reg.client.get(f"{reg.base}/servers/io.x%2Fnone/versions", headers=headers)
    assert response.status_code == 404
    assert response.json()["detail"] == "no server named 'io.x/none'"


async def test_names_and_versions_are_url_encoded_in_paths(reg: Registry) -> None:
    """io.example%2Fweather and 1.0.0%2Bbuild; an unencoded '/' in the name works too."""
    admin = await reg.admin()
    await reg.published(admin, server_json("io.example/weather", "1.0.0+build.7"))
    headers = reg.bearer(admin)
    for path in (
        "/servers/io.example%2Fweather/versions/1.0.0%2Bbuild.7",
        "/servers/io.example%2fweather/versions/1.0.0+build.7",
        "/servers/io.example/weather/versions/1.0.0%2Bbuild.7",
    ):
        response = await reg.client.get(reg.base + path, headers=headers)
        assert response.status_code == 200, path
        assert response.json()["server"]["version"] == "1.0.0+build.7"
    response = await reg.client.get(
        f"{reg.base}/servers/bad%20name%2Fx/versions/latest", headers=headers
    )
    assert response.status_code == 404


async def test_publishing_a_version_twice_is_a_409_conflict(reg: Registry) -> None:
    """A published version is immutable except through PUT: 409 naming body.version."""
    admin = await reg.admin()
    await reg.published(admin, server_json("io.x/a"))
    response = await reg.publish(admin, server_json("io.x/a", description="again"))
    assert response.status_code == 409
    assert response.json()["errors"] == [
        {"location": "body.version", "message": "already published", "value": "1.0.0"}
    ]


async def test_an_invalid_server_json_is_a_400_problem_naming_each_field(reg: Registry) -> None:
    """server.json validated against the 2025-12-11 schema and the name rules; RFC 9457."""
    response = await reg.publish(
        await reg.admin(), {"name": "bad", "description": "", "version": "1.x"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"] == "the server.json is not valid (schema 2025-12-11)"
    assert {e["location"] for e in problem["errors"]} == {
        "body.name",
        "body.description",
        "body.version",
    }


async def test_bodies_that_are_not_json_objects_are_refused(reg: Registry) -> None:
    """415 for another media type; 400 for JSON that is not an object; 413 beyond the limit."""
    admin = await reg.admin()
    await reg.published(admin, server_json("io.x/a"))
    headers = reg.bearer(admin)
    path = f"{reg.base}/servers/io.x%2Fa/versions/1.0.0"
    response = await reg.client.put(
        path, content=b"name=x", headers={**headers, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    response = await reg.client.put(path, json=[1, 2], headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"location": "body", "message": "must be an object"}]
    big = server_json("io.x/a", packages=[{"x": "y" * (1024 * 1024)}])
    response = await reg.client.put(path, json=big, headers=headers)
    assert response.status_code == 413


async def test_put_must_name_the_server_and_version_of_its_url(reg: Registry) -> None:
    """PUT .../{name}/versions/{version}: the body's name and version must match."""
    admin = await reg.admin()
    await reg.published(admin, server_json("io.x/a"))
    response = await reg.client.put(
        f"{reg.base}/servers/io.x%2Fa/versions/1.0.0",
        json=server_json("io.x/b", "2.0.0"),
        headers=reg.bearer(admin),
    )
    assert response.status_code == 400
    assert [e["location"] for e in response.json()["errors"]] == ["body.name", "body.version"]


async def test_status_of_a_version_changes_with_a_message_and_time(reg: Registry) -> None:
    """PATCH .../versions/{version}/status {status, statusMessage}; the same status again is
    400 "no changes to apply"; an unknown status is 400 naming body.status."""
    admin = await reg.admin()
    published = await reg.published(admin, server_json("io.x/a"))
    headers = reg.bearer(admin)
    path = f"{reg.base}/servers/io.x%2Fa/versions/1.0.0/status"
    change = {"status": "deprecated", "statusMessage": "use io.x/b"}
    response = await reg.client.patch(path, json=change, headers=headers)
    assert response.status_code == 200
    meta = _meta(response.json())
    assert meta["status"] == "deprecated" and meta["statusMessage"] == "use io.x/b"
    assert meta["statusChangedAt"] > _meta(published)["statusChangedAt"]
    assert meta["isLatest"] is True  # deprecated is still the latest
    response = await reg.client.patch(path, json=change, headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"] == "no changes to apply: the status is already deprecated"
    response = await reg.client.patch(path, json={"status": "gone", "x": 1}, headers=headers)
    assert response.status_code == 400
    assert {e["location"] for e in response.json()["errors"]} == {"body.status", "body.x"}
    response = await reg.client.patch(
        f"{reg.base}/servers/io.x%2Fa/versions/9.9.9/status", json=change, headers=headers
    )
    assert response.status_code == 404


async def test_status_of_a_whole_server_changes_every_version(reg: Registry) -> None:
    """PATCH /servers/{name}/status: every version in one transaction; AllVersionsStatusResponse
    {updatedCount, servers}; deleted versions leave the default lists."""
    admin = await reg.admin()
    for version in ("1.0.0", "2.0.0"):
        await reg.published(admin, server_json("io.x/a", version))
    headers = reg.bearer(admin)
    path = f"{reg.base}/servers/io.x%2Fa/status"
    response = await reg.client.patch(path, json={"status": "deleted"}, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["updatedCount"] == 2
    assert {_meta(s)["status"] for s in body["servers"]} == {"deleted"}
    assert await reg.list_names(admin) == []
    response = await reg.client.patch(path, json={"status": "deleted"}, headers=headers)
    assert response.json()["updatedCount"] == 0
    response = await reg.client.patch(path, json={"status": "active"}, headers=headers)
    assert response.json()["updatedCount"] == 2
    assert await reg.list_names(admin, version="latest") == ["io.x/a@2.0.0"]
    response = await reg.client.patch(
        f"{reg.base}/servers/io.x%2Fnone/status", json={"status": "active"}, headers=headers
    )
    assert response.status_code == 404


async def test_wrong_methods_and_unknown_paths_are_problems(reg: Registry) -> None:
    """405 with Allow for a known path, 404 for anything else, both RFC 9457."""
    headers = await _admin_headers(reg)
    response = await reg.client.delete(f"{reg.base}/servers", headers=headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.headers["content-type"] == "application/problem+json"
    response = await reg.client.get(f"{reg.base}/publish", headers=headers)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    response = await reg.client.get(f"{reg.base}/nothing", headers=headers)
    assert response.status_code == 404
    response = await reg.client.get("/elsewhere", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_openapi_document_is_served_and_names_this_registry(reg: Registry) -> None:
    """bastion's OpenAPI document (paths and shapes of the upstream generic registry API),
    its server URL the registry URL; readable without a token."""
    response = await reg.client.get("/registry/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document["servers"][0]["url"] == "http://localhost/registry"
    for version in ("v0.1", "v0"):
        assert set(document["paths"]) >= {
            f"/{version}/servers",
            f"/{version}/servers/{{serverName}}/versions",
            f"/{version}/servers/{{serverName}}/versions/{{version}}",
            f"/{version}/servers/{{serverName}}/versions/{{version}}/status",
            f"/{version}/servers/{{serverName}}/status",
            f"/{version}/publish",
        }


async def test_concurrent_publications_of_one_server_leave_exactly_one_latest(
    reg: Registry,
) -> None:
    """Publications of one server lock its row, so the latest version is chosen by one writer
    at a time: after ten concurrent publications exactly one version is the latest, the highest."""
    admin = await reg.admin()
    versions = [f"1.{i}.0" for i in range(10)]
    responses = await asyncio.gather(
        *(reg.publish(admin, server_json("io.x/race", v)) for v in versions)
    )
    assert [r.status_code for r in responses] == [200] * 10
    body = (
        await reg.client.get(f"{reg.base}/servers/io.x%2Frace/versions", headers=reg.bearer(admin))
    ).json()
    latest = [s["server"]["version"] for s in body["servers"] if _meta(s)["isLatest"]]
    assert latest == ["1.9.0"]
