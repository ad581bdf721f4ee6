"""docs/providers/ has a page per kind, and every configuration example in the federation docs
is a configuration bastion accepts (issue 6, "Done when": "docs/ has a page per preset with the
exact settings on the provider's side and in bastion")."""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path

import pytest

from bastion.config import IdentityProviderKind, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = {
    kind: DOCS / "providers" / f"{'oidc' if kind == 'oauth2' else kind}.md"
    for kind in typing.get_args(IdentityProviderKind)
}
_TOML = re.compile(r"```toml\n(.*?)```", re.S)


@pytest.mark.parametrize("kind", sorted(PAGES))
def test_every_kind_has_a_page_naming_its_redirect_uri(kind: str) -> None:
    text = PAGES[kind].read_text()
    assert f'kind = "{kind}"' in text
    assert "/login/" in text and "/callback" in text


@pytest.mark.parametrize(
    "page", sorted([*DOCS.glob("providers/*.md"), DOCS / "federation.md"]), ids=lambda p: p.name
)
def test_configuration_examples_are_valid(page: Path) -> None:
    blocks = _TOML.findall(page.read_text())
    assert blocks, page
    for block in blocks:
        values = tomllib.loads(block.replace('"…"', '"example-secret"'))
        settings = Settings(**values)
        assert settings.upstreams, block
