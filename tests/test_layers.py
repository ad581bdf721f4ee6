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


def module_of(path: Path) -> str:
    """The dotted name of the bastion module at ``path``."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {
    module_of(path): path for path in sorted(SRC.rglob("*.py")) if "migrations" not in path.parts
}


def bastion_imports(module: str) -> set[str]:
    """The bastion modules ``module`` imports anywhere: at the top, inside functions (lazy
    imports) and under ``TYPE_CHECKING``. ``from bastion.store import clients`` imports
    ``bastion.store.clients``; relative imports are resolved."""
    path = SOURCES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(filter(None, [package.rsplit(".", node.level - 1)[0], base]))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in SOURCES else base)
    return {name for name in found if name == "bastion" or name.startswith("bastion.")}


def within(name: str, *packages: str) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one of them."""
    return any(name == package or name.startswith(f"{package}.") for package in packages)


# Import cycles known and being taken apart; a cycle gone from the code must leave this list.
ALLOWED_CYCLES: list[frozenset[str]] = []


def test_no_import_cycles() -> None:
    """No two bastion modules import each other, directly or through others, counting lazy
    and TYPE_CHECKING imports: a cycle hidden by a lazy import is still two modules that cannot
    be understood, tested or moved apart."""
    graph = {module: bastion_imports(module) & SOURCES.keys() for module in SOURCES}
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for following in graph[todo.pop()] - seen:
                seen.add(following)
                todo.append(following)
        reach[start] = seen
    cycles = {
        frozenset({module, *(other for other in reach[module] if module in reach[other])})
        for module in graph
        if module in reach[module]
    }
    new = [
        "; ".join(f"{m} imports {', '.join(sorted(graph[m] & cycle))}" for m in sorted(cycle))
        for cycle in cycles - set(ALLOWED_CYCLES)
    ]
    assert not new, "import cycles (move the shared piece down a layer): " + " | ".join(new)
    gone = [sorted(cycle) for cycle in set(ALLOWED_CYCLES) - cycles]
    assert not gone, f"no longer cycles, remove them from ALLOWED_CYCLES: {gone}"


# What bastion.client stands on besides itself: the pure protocol and helpers both sides share.
CLIENT_FLOOR = ("bastion.oauth", "bastion.net", "bastion.private_files")


def test_the_server_side_never_imports_the_client_or_the_doctor() -> None:
    """STYLE.md rule 1: the authorization server, resource middleware, gateway, registry and
    what they share (store, tokens, identity, access, config, serve, ...) never import
    bastion.client, nor bastion.doctor which stands on it; only the command line, which drives
    both sides, does."""
    for module in SOURCES:
        if within(module, "bastion.client", "bastion.doctor", "bastion.cli"):
            continue
        for name in bastion_imports(module):
            assert not within(name, "bastion.client", "bastion.doctor"), f"{module} imports {name}"


def test_the_client_never_imports_the_server_side() -> None:
    """STYLE.md rule 1: bastion.client is what MCP clients embed: it imports only itself
    and the shared floor (CLIENT_FLOOR), never the server packages, their settings or their
    storage, nor bastion.doctor, which is built on it. A module both sides need belongs on the
    floor (and in CLIENT_FLOOR)."""
    for module in SOURCES:
        if not within(module, "bastion.client"):
            continue
        for name in bastion_imports(module):
            assert not within(name, "bastion.doctor"), f"{module} imports the doctor: {name}"
            assert within(name, "bastion.client", *CLIENT_FLOOR), f"{module} imports {name}"


def test_the_doctor_stands_on_the_client() -> None:
    """bastion.doctor is a client of any MCP server or registry: it imports itself,
    bastion.client and the client's floor (bastion.oauth and the rest of CLIENT_FLOOR), never
    the server packages or their settings (the identity-provider doctor, which checks the
    server's own settings, is bastion.identity.doctor)."""
    for module in SOURCES:
        if not within(module, "bastion.doctor"):
            continue
        for name in bastion_imports(module):
            allowed = within(name, "bastion.doctor", "bastion.client", *CLIENT_FLOOR)
            assert allowed, f"{module} imports {name}"


# What bastion.config stands on besides itself: modules that read no settings. The provider
# kinds are there because a kind's record (the settings it takes and its preset) is one object
# that configuration validates with and federation resolves with.
CONFIG_FLOOR = (
    "bastion.oauth",
    "bastion.resource.policy",
    "bastion.registry.names",
    "bastion.identity.provider_kinds",
)


def test_config_stands_on_modules_that_read_no_settings() -> None:
    """bastion.config is given to every server package; it imports only itself and
    CONFIG_FLOOR, and those import nothing from bastion but bastion.oauth and bastion.edge
    (which stands on safe_json alone, test_the_edge_stands_below_the_servers), so no server
    package that reads settings is reached from the settings."""
    for module in SOURCES:
        if within(module, "bastion.config"):
            allowed = ("bastion.config", *CONFIG_FLOOR)
        elif within(module, *CONFIG_FLOOR[1:]):
            allowed = ("bastion.oauth", "bastion.edge")
        else:
            continue
        for name in bastion_imports(module):
            assert within(name, *allowed), f"{module} imports {name}"


def test_the_edge_stands_below_the_servers() -> None:
    """bastion.edge (the body read once, the JSON-RPC reader, the answers) is shared by the
    resource middleware, the gateway and any server: it imports itself and safe_json only,
    never a server package, so any of them can stand on it."""
    for module in SOURCES:
        if not within(module, "bastion.edge"):
            continue
        for name in bastion_imports(module):
            assert within(name, "bastion.edge", "bastion.safe_json"), f"{module} imports {name}"


# What composes the apps into a running server: which app on which listener, uvicorn, logging.
COMPOSITION = ("bastion.serve", "bastion.quickstart", "bastion.authserver.app")


def test_registry_and_gateway_only_build_apps() -> None:
    """bastion.registry and bastion.gateway build ASGI apps and nothing else: which listener
    serves them, how the registry joins the authorization server on the issuer's origin and
    how uvicorn runs is decided by the composition root (bastion.serve), which imports them,
    never the other way round."""
    for module in SOURCES:
        if not within(module, "bastion.registry", "bastion.gateway"):
            continue
        for name in bastion_imports(module):
            assert not within(name, *COMPOSITION), f"{module} imports {name}"


def test_logging_is_set_up_in_one_place() -> None:
    """Only the composition root (bastion.serve, in its commands) sets up logging, through
    bastion.logs.configure_logging; nothing else calls it or logging's own set-up."""
    callers = set()
    for module, path in SOURCES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("configure_logging", "basicConfig", "dictConfig", "fileConfig"):
                    callers.add(f"{module}.{name}")
    expected = {"bastion.logs.basicConfig", "bastion.serve.commands.configure_logging"}
    assert callers == expected, f"logging set up by {sorted(callers - expected)}"


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


def test_the_metrics_stand_below_every_layer() -> None:
    """bastion.ops.metrics is where every layer records (the store, the resource middleware
    that runs in third parties' apps, the servers): it imports prometheus_client and the
    standard library only, no bastion module, database or web framework."""
    for name in imports_of(SRC / "ops" / "metrics.py"):
        top = name.split(".")[0]
        assert top in ("__future__", "collections", "functools", "typing", "prometheus_client"), (
            f"bastion.ops.metrics imports {name}"
        )


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


def test_ops_stands_below_the_servers() -> None:
    """bastion.ops (health and readiness, …) is what every listener's app wraps itself in: it
    never imports an app, the composition root, the command line or the client side, so the
    authorization server, the registry and the gateway can all stand on it."""
    above = ("bastion.authserver", "bastion.registry", "bastion.gateway", *COMPOSITION[:2])
    for module in SOURCES:
        if not within(module, "bastion.ops"):
            continue
        for name in bastion_imports(module):
            forbidden = (*above, "bastion.cli", "bastion.client", "bastion.doctor")
            assert not within(name, *forbidden), f"{module} imports {name}"
