"""Pure rules of the registry: names and versions, the latest version, cursors, times, paths."""

from __future__ import annotations

import pytest

from bastion.registry import cursor, paths
from bastion.registry.names import name_problem, version_problem
from bastion.registry.times import format_rfc3339, parse_rfc3339
from bastion.registry.versions import Candidate, choose_latest, semver_key


@pytest.mark.parametrize(
    "name",
    ["io.github.user/weather", "com.acme/x_y.z-1", "a/b", "a-b.c/" + "x" * 194],
)
def test_names_matching_the_schema_pattern_and_length_are_accepted(name: str) -> None:
    """server.schema.json 2025-12-11 ServerDetail.name: ^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$,
    3 to 200 characters."""
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "io.x/weather\n",  # `$` of a regex search would accept the final newline
        "noslash",
        "a/b/c",
        "/x",
        "x/",
        "io.x/we ather",
        "io_x/weather",
        "a/" + "x" * 199,
        "ab",
        "io.x/wéather",
    ],
)
def test_names_outside_the_pattern_or_length_are_refused(name: str) -> None:
    """The name rule is matched in full (not a regex search) and the length bounds hold."""
    assert name_problem(name) is not None


@pytest.mark.parametrize("version", ["1.0.0", "2.1.0-alpha.1", "1.0.0+build.5", "2024-01-01", "v3"])
def test_specific_versions_are_accepted(version: str) -> None:
    """Any specific version string is allowed (SemVer recommended, not required)."""
    assert version_problem(version) is None


@pytest.mark.parametrize(
    "version",
    [
        "^1.2.3",
        "~1.2.3",
        ">=1.2.3",
        "<2",
        "1.x",
        "1.*",
        "*",
        "1.0 - 2.0",
        "1 || 2",
        "latest",
        "",
        "a/b",
        "1\x00",
        "9" * 256,
    ],
)
def test_version_ranges_reserved_words_and_unsafe_strings_are_refused(version: str) -> None:
    """server.json: "Version ranges are rejected"; bastion: 'latest' names the newest version,
    and a version is one URL path segment."""
    assert version_problem(version) is not None


def test_semver_precedence_follows_semver_2_section_11() -> None:
    """SemVer 2.0.0 §11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
    1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0; build metadata is ignored."""
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    keys = [semver_key(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert sorted(ordered, key=lambda v: semver_key(v)) == ordered  # type: ignore[arg-type,return-value]
    assert semver_key("1.0.0+a") == semver_key("1.0.0+b")
    assert semver_key("01.0.0") is None and semver_key("1.0") is None


def _c(version: str, at: int, status: str = "active", approved: bool = True) -> Candidate:
    return Candidate(version, at, status, approved)


def test_latest_is_the_highest_semver_not_the_newest_publication() -> None:
    """A backport published after 2.0.0 does not become the latest."""
    assert choose_latest([_c("2.0.0", 1), _c("1.9.9", 2), _c("2.0.0-rc.1", 3)]) == "2.0.0"


def test_latest_falls_back_to_publication_order_when_a_version_is_not_semver() -> None:
    """Non-semantic versions "may not sort predictably": the newest publication wins."""
    assert choose_latest([_c("2024-05", 1), _c("2024-04", 2)]) == "2024-04"


def test_latest_skips_unapproved_and_deleted_versions_while_others_exist() -> None:
    """Unapproved versions are not offered to everyone; deleted ones are gone."""
    assert choose_latest([_c("1.0.0", 1), _c("2.0.0", 2, approved=False)]) == "1.0.0"
    assert choose_latest([_c("1.0.0", 1), _c("2.0.0", 2, status="deleted")]) == "1.0.0"
    assert choose_latest([_c("1.0.0", 1, approved=False)]) == "1.0.0"
    assert choose_latest([_c("1.0.0", 1, "deleted"), _c("2.0.0", 2, "deleted")]) == "2.0.0"
    assert choose_latest([]) is None


def test_cursor_round_trips_and_refuses_anything_it_did_not_issue() -> None:
    """Cursors are opaque keys of the last entry of a page."""
    token = cursor.encode("io.x/y", "1.0.0+b")
    assert cursor.decode(token) == ("io.x/y", "1.0.0+b")
    for bad in ["", "k1.", "k1.!!!", "abc", "k1." + "e30", "k1.WyJhIl0", "k1." + "A" * 2000]:
        with pytest.raises(ValueError, match="not a cursor this registry issued"):
            cursor.decode(bad)


def test_rfc3339_times_parse_to_milliseconds_and_format_back() -> None:
    """RFC 3339 §5.6 date-time with a mandatory offset; lowercase t and z allowed (§5.6 NOTE)."""
    assert parse_rfc3339("2025-08-07T13:15:04.280Z") == 1754572504280
    assert parse_rfc3339("2025-08-07t15:15:04.280999+02:00") == 1754572504280
    assert format_rfc3339(1754572504280) == "2025-08-07T13:15:04.280Z"
    for bad in [
        "2025-08-07",
        "2025-08-07T13:15:04",
        "2025-13-01T00:00:00Z",
        "yesterday",
        "2016-12-31T23:59:60Z",
    ]:
        with pytest.raises(ValueError, match="not a"):
            parse_rfc3339(bad)


@pytest.mark.parametrize(
    ("raw", "resource", "name", "version"),
    [
        (b"/registry/v0.1/servers", "list", None, None),
        (b"/registry/v0/publish", "publish", None, None),
        (b"/registry/v0.1/servers/io.x%2Fy/versions", "list_versions", "io.x/y", None),
        (b"/registry/v0.1/servers/io.x%2fy/versions/latest", "version", "io.x/y", "latest"),
        (b"/registry/v0.1/servers/io.x/y/versions/1.0.0%2Bb", "version", "io.x/y", "1.0.0+b"),
        (
            b"/registry/v0.1/servers/io.x%2Fy/versions/1.0.0/status",
            "version_status",
            "io.x/y",
            "1.0.0",
        ),
        (b"/registry/v0.1/servers/io.x%2Fy/status", "server_status", "io.x/y", None),
    ],
)
def test_paths_read_url_encoded_server_names_from_the_raw_path(
    raw: bytes, resource: str, name: str | None, version: str | None
) -> None:
    """Registry OpenAPI: serverName is URL-encoded (com.example%2Fmy-server); versions too."""
    target = paths.parse(raw, "/registry")
    assert target == paths.Target(resource, name, version)


@pytest.mark.parametrize(
    "raw",
    [
        b"/registry/v0.2/servers",
        b"/registry/v0.1",
        b"/registry/v0.1/servers/io.x%2Fy",
        b"/registry/v0.1/servers/io.x%2Fy/versions/",
        b"/registry/v0.1/servers/a%2Fb%2Fc/versions",
        b"/other/v0.1/servers",
        b"/registry/v0.1/servers/%FF%2Fx/versions",
    ],
)
def test_paths_that_name_no_operation_are_not_found(raw: bytes) -> None:
    """Anything else under the prefix is 404."""
    assert paths.parse(raw, "/registry") is None
