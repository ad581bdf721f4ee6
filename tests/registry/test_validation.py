"""server.json validation against the vendored 2025-12-11 schema plus the name and version rules."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import pytest

from bastion.registry.problems import Problem
from bastion.registry.validation import SCHEMA_ID, parse_object, server_schema, validate_server
from tests.registry.harness import server_json

SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"


def test_the_vendored_schema_is_the_released_2025_12_11_file_byte_for_byte() -> None:
    """The package ships static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json
    (see schemas/README.md); no download at run time."""
    data = resources.files("bastion.registry").joinpath("schemas/server.schema.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256
    assert server_schema()["$id"] == SCHEMA_ID


def _errors(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Problem) as caught:
        validate_server(document)
    assert caught.value.status == 400
    return {e.location: e.message for e in caught.value.errors}


def test_a_package_server_and_a_remote_server_with_url_variables_are_valid() -> None:
    """Schema 2025-12-11: packages with transport; remotes with URL template variables (#570)."""
    packaged = server_json(
        "io.github.user/fs",
        packages=[
            {
                "registryType": "npm",
                "identifier": "@modelcontextprotocol/server-filesystem",
                "version": "1.0.2",
                "transport": {"type": "stdio"},
                "packageArguments": [{"type": "positional", "valueHint": "path"}],
            }
        ],
    )
    remote = server_json(
        "com.example/tenant",
        remotes=[
            {
                "type": "streamable-http",
                "url": "https://{tenant_id}.api.example.com/mcp",
                "variables": {"tenant_id": {"description": "Your tenant", "isRequired": True}},
            }
        ],
    )
    for document in (packaged, remote):
        valid = validate_server(document)
        assert valid.server == document and valid.groups is None


def test_every_failing_field_is_named_with_its_location() -> None:
    """RFC 9457 problem with one error per failing field (body.<path>)."""
    errors = _errors(
        {
            "name": "not a name",
            "description": "x" * 101,
            "version": "^1.0.0",
            "packages": [{"registryType": "npm", "transport": {"type": "stdio"}}],
            "websiteUrl": "not a uri",
        }
    )
    assert set(errors) == {
        "body.name",
        "body.description",
        "body.version",
        "body.packages[0]",
        "body.websiteUrl",
    }
    assert "identifier" in errors["body.packages[0]"]


def test_missing_required_members_are_named() -> None:
    """ServerDetail requires name, description and version."""
    errors = _errors({"title": "x"})
    assert set(errors) == {"body"}
    with pytest.raises(Problem) as caught:
        validate_server({})
    assert len(caught.value.errors) == 3


def test_a_name_with_a_trailing_newline_passes_the_schema_but_not_the_name_rule() -> None:
    """The schema's pattern is a regex search ($ matches before a final newline); bastion
    matches the whole name."""
    assert _errors(server_json("io.x/weather\n")) == {
        "body.name": "must be <namespace>/<name> in reverse-DNS form, matching "
        "^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$ (exactly one '/')"
    }


def test_latest_and_ranges_are_refused_as_versions() -> None:
    """'latest' names the newest version in URLs; ranges are not versions."""
    assert set(_errors(server_json("io.x/a", "latest"))) == {"body.version"}
    assert set(_errors(server_json("io.x/a", "1.x"))) == {"body.version"}


def test_publish_options_set_groups_and_are_not_stored_in_the_server_json() -> None:
    """_meta["dev.mcp-bastion/publish"].groups are the entry's audiences; the rest of _meta
    (publisher-provided) is kept."""
    document = server_json("io.x/a", groups=["team-b", "team-a", "team-a"])
    document["_meta"]["io.modelcontextprotocol.registry/publisher-provided"] = {"tool": "ci"}
    valid = validate_server(document)
    assert valid.groups == ("team-a", "team-b")
    assert valid.server["_meta"] == {
        "io.modelcontextprotocol.registry/publisher-provided": {"tool": "ci"}
    }
    assert "_meta" not in validate_server(server_json("io.x/a", groups=[])).server


def test_bad_publish_options_are_named() -> None:
    """groups must be a list of printable group names; no other option exists."""
    errors = _errors(server_json("io.x/a", groups=["ok", "has space"]))
    assert errors == {
        "body._meta.dev.mcp-bastion/publish.groups[1]": (
            "must be 1 to 255 printable ASCII characters without spaces"
        )
    }
    document = server_json("io.x/a")
    document["_meta"] = {"dev.mcp-bastion/publish": {"approved": True}}
    assert set(_errors(document)) == {"body._meta.dev.mcp-bastion/publish"}


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (b"[]", "body"),
        (b"not json", "body"),
        (b'{"name": "a", "name": "b"}', "body"),
        (b'{"x": 1e999}', "body"),
        (b'{"x": NaN}', "body"),
        (b"\xff\xfe", "body"),
        (b'{"description": "nul \\u0000 inside"}', "body.description"),
        (b'{"a": {"b": ["\\ud800"]}}', "body.a.b[0]"),
        (b"[" * 5000 + b"]" * 5000, "body"),
    ],
)
def test_bodies_that_are_not_storable_json_objects_are_refused(body: bytes, location: str) -> None:
    """A JSON object without repeated members, non-finite numbers, NUL or lone surrogates."""
    with pytest.raises(Problem) as caught:
        parse_object(body)
    assert caught.value.status == 400
    assert [e.location for e in caught.value.errors] == [location]
