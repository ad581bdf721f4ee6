"""House rules that keep the layers apart (STYLE.md rules 1, 5 and 12)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bastion

SRC = Path(bastion.__file__).parent
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages([str(SRC)], prefix="bastion.")
    if ".migrations" not in m.name
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_oauth_package_is_pure_protocol() -> None:
    """bastion.oauth does no I/O and knows no web framework, HTTP client or storage."""
    forbidden = ("starlette", "sqlalchemy", "httpx", "uvicorn", "asyncio", "socket", "bastion.")
    for path in (SRC / "oauth").glob("*.py"):
        for name in imports_of(path):
            if name.startswith("bastion.oauth"):
                continue
            assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_resource_package_needs_no_database() -> None:
    """bastion.resource runs in third parties' apps: it reaches bastion's AS over HTTP only
    (JWKS, introspection, the revocation document), never its database."""
    forbidden = ("sqlalchemy", "asyncpg", "aiosqlite", "alembic", "bastion.store", "bastion.config")
    for path in [*(SRC / "resource").glob("*.py"), SRC / "follower.py"]:
        for name in imports_of(path):
            assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_only_config_reads_the_environment() -> None:
    """Configuration lives in one settings model; nothing else reads os.environ."""
    for path in SRC.rglob("*.py"):
        if path.is_relative_to(SRC / "config") or "migrations" in path.parts:
            continue
        text = path.read_text()
        assert "os.environ" not in text and "getenv" not in text, path


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_its_exports(name: str) -> None:
    """Each module has an explicit __all__ whose names all exist."""
    module = importlib.import_module(name)
    if name.endswith("__init__") or (module.__file__ and module.__file__.endswith("__init__.py")):
        exported = getattr(module, "__all__", [])
    else:
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        exported = module.__all__
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names missing {item}"
