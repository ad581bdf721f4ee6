"""docs/dpop.md, "At resource servers and the gateway": its configuration example loads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from bastion.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "dpop.md"


def test_the_resource_side_configuration_example_is_valid(tmp_path: Path) -> None:
    section = DOC.read_text().split("## At resource servers and the gateway", 1)[1]
    [example] = [
        b for b in re.findall(r"```toml\n(.*?)```", section, re.S) if "[gateway.dpop]" in b
    ]
    values: dict[str, Any] = tomllib.loads(example)
    values["gateway"].update({"enabled": True})
    settings = Settings(issuer="https://auth.example.com", data_dir=tmp_path, **values)
    [notes] = settings.gateway.upstreams
    assert notes.require_dpop and notes.dpop_nonce
    assert settings.gateway.dpop.algorithms == ["ES256", "EdDSA", "RS256", "PS256"]
    assert settings.registry.require_dpop is False
