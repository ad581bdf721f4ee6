"""`[[registry.mirrors]]` settings: what is refused, with errors that say what to change
(docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import MirrorSettings, RegistrySettings, load_settings

GOOD: dict[str, Any] = {
    "name": "official",
    "url": "https://registry.modelcontextprotocol.io",
    "namespaces": ["io.github.acme/*"],
}

REFUSED = [
    ({"url": "http://registry.example.com"}, "http on a non-loopback host"),
    ({"url": "ftp://registry.example.com"}, "absolute https URL"),
    ({"url": "https://user:pw@registry.example.com"}, "credentials"),
    ({"url": "https://registry.example.com/?x=1"}, "query"),
    ({"namespaces": [], "names": []}, "has no filter"),
    ({"namespaces": ["io.github.acme/tool"]}, "not a namespace filter"),
    ({"namespaces": ["*/*"]}, "not a namespace filter"),
    ({"namespaces": ["io.github.*.x"]}, "not a namespace filter"),
    ({"names": ["not-a-name"]}, "not a server name"),
    ({"name": "Official"}, "lowercase"),
    ({"interval_seconds": 10}, "greater than or equal to 60"),
    ({"groups": ["two words"]}, "not a group"),
    ({"max_pages": 0}, "greater than or equal to 1"),
    ({"search": ""}, "at least 1 character"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
def test_a_mirror_setting_that_would_be_unsafe_or_unclear_is_refused(
    change: dict[str, Any], message: str
) -> None:
    """Plain http to a remote upstream, no filter at all (which would import everything
    silently), filters that do not parse: refused at start-up, saying why."""
    with pytest.raises(ValidationError, match=message):
        MirrorSettings(**{**GOOD, **change})


def test_mirror_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="used twice"):
        RegistrySettings(mirrors=[MirrorSettings(**GOOD), MirrorSettings(**GOOD)])


def test_defaults_and_a_loopback_http_upstream(tmp_path: Path) -> None:
    """From TOML: interval 1 h, owner mirror:<name>, approved, statuses follow, http allowed
    on loopback only; names alone are a filter."""
    path = tmp_path / "bastion.toml"
    path.write_text(
        "\n".join(
            [
                "[registry]",
                "enabled = true",
                "[[registry.mirrors]]",
                'name = "local"',
                'url = "http://127.0.0.1:8123/"',
                'names = ["io.github.acme/weather"]',
            ]
        )
    )
    [mirror] = load_settings(path).registry.mirrors
    assert mirror.url == "http://127.0.0.1:8123"
    assert (mirror.interval_seconds, mirror.owner_subject, mirror.approved) == (
        3600,
        "mirror:local",
        True,
    )
    assert mirror.follow_status and mirror.groups == [] and mirror.max_pages == 50
