"""``scripts/console_screenshots.py`` (``make screenshots``) walks the console in real Chromium
at desktop and phone width, as docs/console.md shows it, on what ``bastion quickstart`` sets
up: the walk fails if a page lacks what a person clicks on it, every picture is as wide as its
viewport (no page overflows a phone's width), and docs/console.md shows every picture."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.test_screenshots import png_size

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "console_screenshots.py"


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("console_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("console_screenshots", module)
    spec.loader.exec_module(module)
    return module


def test_the_console_page_shows_every_picture_the_script_takes() -> None:
    shots = script()
    page = (ROOT / "docs" / "console.md").read_text()
    shown = set(re.findall(r"screenshots/(console-[a-z-]+)-(?:desktop|phone)\.png", page))
    assert shown == set(shots.PAGES)
    for name in shots.PAGES:
        for size in shots.VIEWPORTS:
            assert (ROOT / "docs" / "screenshots" / f"{name}-{size}.png").exists(), name


async def test_every_console_page_at_desktop_and_phone_width(tmp_path: Path) -> None:
    shots = script()
    written = await shots.capture(tmp_path)
    expected = {f"{page}-{size}.png" for page in shots.PAGES for size in shots.VIEWPORTS}
    assert {p.name for p in written} == expected
    for path in written:
        size = path.name.rsplit("-", 1)[1].removesuffix(".png")
        assert png_size(path)[0] == shots.VIEWPORTS[size][0], path.name
