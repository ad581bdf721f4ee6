"""``scripts/screenshots.py`` (``make screenshots``) walks every page in real Chromium at desktop
and phone width, as docs/pages.md shows them: the walk fails if a page lacks what a person must
find on it (the form fields, the buttons), and each picture is as wide as its viewport (nothing
overflows a phone's width)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.browser
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshots.py"


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_every_page_at_desktop_and_phone_width(tmp_path: Path) -> None:
    shots = script()
    written = await shots.capture(tmp_path)
    expected = {f"{page}-{size}.png" for page in shots.PAGES for size in shots.VIEWPORTS}
    assert {p.name for p in written} == expected
    for path in written:
        size = path.name.rsplit("-", 1)[1].removesuffix(".png")
        assert png_size(path)[0] == shots.VIEWPORTS[size][0], path.name
