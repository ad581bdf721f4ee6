"""No ``Any`` in the signatures bastion exports (issue 15): every callable a module lists in
``__all__``, and every public method of an exported class, says what it takes and returns.

Annotations are resolved in their module, so an alias that hides ``Any`` (``X = dict[str, Any]``)
counts as ``Any``. The few signatures that keep it are listed in :data:`ALLOWED`, each with the
reason; an entry that no longer needs its place fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator

from starlette import types as asgi

import bastion

# Why a signature keeps ``Any``, by kind. JSON objects elsewhere are ``dict[str, object]``
# (``jose.JsonObject``, ``jsonrpc.Message``) narrowed where read; the ones below still pass a
# document through (a stored form read back, a registry document) or wrap an untyped library.
JSON_LOADS = "json.loads's own contract: its keyword options, and any JSON value back"
WIRE = "an OAuth/OIDC JSON document from or for the wire, read field by field after validation"
JWK = "a JWK (RFC 7517) as joserfc takes and returns it"
REGISTRY_DOC = "an MCP registry server.json document or API body, validated against its schema"
COLUMNS = "column values of a registry entry update, chosen per caller"
CLICK = "click's untyped command and parameter objects, passed through"
OVERRIDES = "Settings field overrides, validated by the pydantic model they are passed to"
UVICORN = "uvicorn.Config keyword options, passed through"
REPLACE = "dataclasses.replace's keyword overrides, passed through"

# "module.Qualified.name": why its signature keeps ``Any``.
ALLOWED: dict[str, str] = {
    "bastion.authserver.admin.add_client": JWK,
    "bastion.cli.client_context.load_client_settings": OVERRIDES,
    "bastion.cli.common.run": CLICK,
    "bastion.cli.common.settings_or_exit": OVERRIDES,
    "bastion.cli.help_style.StyledGroup.__init__": CLICK,
    "bastion.cli.help_style.metavar_for": CLICK,
    "bastion.cli.help_style.styled": CLICK,
    "bastion.cli.registry_publish.check_document": REGISTRY_DOC,
    "bastion.cli.registry_publish.plan_of": REGISTRY_DOC,
    "bastion.client.conformance.ConformanceEnvironment.context_json": WIRE,
    "bastion.client.conformance.settings_for": WIRE,
    "bastion.client.discovery.fetch_json": WIRE,
    "bastion.client.discovery.validate_as_metadata": WIRE,
    "bastion.client.discovery.validate_prm": WIRE,
    "bastion.client.models.RegisteredClient.from_json": WIRE,
    "bastion.client.models.TokenSet.from_json": WIRE,
    "bastion.client.models.TokenSet.with_changes": REPLACE,
    "bastion.config.loading.load_settings": OVERRIDES,
    "bastion.quickstart.demo_entries": REGISTRY_DOC,
    "bastion.registry.api.server_response": REGISTRY_DOC,
    "bastion.registry.app.openapi_document": REGISTRY_DOC,
    "bastion.registry.audit.export": REGISTRY_DOC,
    "bastion.registry.audit.export_line": REGISTRY_DOC,
    "bastion.registry.gateway_listing.Change.__init__": COLUMNS,
    "bastion.registry.gateway_listing.Listing.__init__": REGISTRY_DOC,
    "bastion.registry.importer.Importer.add": REGISTRY_DOC,
    "bastion.registry.importer.batches_of": REGISTRY_DOC,
    "bastion.registry.importer.import_documents": REGISTRY_DOC,
    "bastion.registry.importer.read_file": REGISTRY_DOC,
    "bastion.registry.importer.read_registry": REGISTRY_DOC,
    "bastion.registry.mirror.parse_item": REGISTRY_DOC,
    "bastion.registry.mirror.updated_at_of": REGISTRY_DOC,
    "bastion.registry.mirror_upstream.UpstreamPass.__init__": REGISTRY_DOC,
    "bastion.registry.service.Registry.publish": REGISTRY_DOC,
    "bastion.registry.service.Registry.update": REGISTRY_DOC,
    "bastion.registry.service.parse_status_change": REGISTRY_DOC,
    "bastion.registry.validation.ValidServer.__init__": REGISTRY_DOC,
    "bastion.registry.validation.check_groups": REGISTRY_DOC,
    "bastion.registry.validation.parse_object": REGISTRY_DOC,
    "bastion.registry.validation.validate_server": REGISTRY_DOC,
    "bastion.safe_json.loads": JSON_LOADS,
    "bastion.serve.apps.create_combined_app": UVICORN,
    "bastion.serve.running.proxy_options": UVICORN,
    "bastion.serve.running.serve_one": UVICORN,
    "bastion.serve.running.uvicorn_options": UVICORN,
    "bastion.store.registry.Entry.__init__": REGISTRY_DOC,
    "bastion.store.registry.update_entry": COLUMNS,
    "bastion.tokens.keys.KeyManager.jwks": JWK,
    "bastion.tokens.keys.SigningKey.__init__": JWK,
    "bastion.tokens.keys.import_jwk": JWK,
}

# Alembic scripts: imported by Alembic inside a migration context, not an API.
SKIPPED_PACKAGES = ("bastion.store.migrations",)

_ANY_WORD = re.compile(r"\bAny\b")

# The ASGI spec's own types: a scope and its messages are dicts of any value by definition.
ASGI_TYPES: tuple[object, ...] = (asgi.Scope, asgi.Message, asgi.Receive, asgi.Send)


def _modules() -> Iterator[types.ModuleType]:
    for info in pkgutil.walk_packages(bastion.__path__, prefix="bastion."):
        if info.name.startswith(SKIPPED_PACKAGES):
            continue
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        yield importlib.import_module(info.name)


def _callables(module: types.ModuleType) -> Iterator[Callable[..., object]]:
    """The module's exported functions, and the public methods of its exported classes."""
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if inspect.isclass(value):
            yield from _methods(value)
        elif inspect.isfunction(value):
            yield value


def _methods(cls: type) -> Iterator[Callable[..., object]]:
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in ("__init__", "__call__", "__new__"):
            continue
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            yield member


def _mentions_any(annotation: object) -> bool:
    if any(annotation is kind for kind in ASGI_TYPES):
        return False
    if annotation is typing.Any:
        return True
    if isinstance(annotation, str):
        return bool(_ANY_WORD.search(annotation))
    if isinstance(annotation, typing.ForwardRef):
        return bool(_ANY_WORD.search(annotation.__forward_arg__))
    return any(_mentions_any(arg) for arg in typing.get_args(annotation))


def _resolved(function: Callable[..., object]) -> dict[str, object]:
    """Each annotation evaluated in the function's module; the text where that fails (a name
    imported only for type checking)."""
    raw: dict[str, object] = dict(getattr(function, "__annotations__", {}))
    namespace = vars(sys.modules[function.__module__])
    resolved: dict[str, object] = {}
    for key, annotation in raw.items():
        if isinstance(annotation, str):
            with contextlib.suppress(Exception):  # a name imported for type checking only
                annotation = eval(annotation, dict(namespace))
        resolved[key] = annotation
    return resolved


def _with_any() -> set[str]:
    found: set[str] = set()
    for module in _modules():
        for function in _callables(module):
            if not function.__module__.startswith("bastion."):
                continue  # re-exported from a library
            if any(_mentions_any(a) for a in _resolved(function).values()):
                found.add(f"{function.__module__}.{function.__qualname__}")
    return found


def test_no_exported_signature_takes_or_returns_any() -> None:
    found = _with_any()
    unexplained = sorted(found - ALLOWED.keys())
    assert not unexplained, f"{len(unexplained)} exported signatures use Any:\n" + "\n".join(
        unexplained
    )


def test_every_allowed_signature_still_needs_its_place() -> None:
    stale = sorted(ALLOWED.keys() - _with_any())
    assert not stale, f"no longer use Any, remove from ALLOWED: {stale}"


def test_an_alias_that_hides_any_is_seen() -> None:
    namespace: dict[str, object] = {}
    exec(
        "from __future__ import annotations\n"
        "from typing import Any\n"
        "Loose = dict[str, Any]\n"
        "def f(x: Loose) -> None: ...\n",
        namespace,
    )
    function = namespace["f"]
    assert isinstance(function, types.FunctionType)
    module = types.ModuleType("bastion._probe")
    module.__dict__.update(namespace)
    function.__module__ = module.__name__
    sys.modules[module.__name__] = module
    try:
        assert any(_mentions_any(a) for a in _resolved(function).values())
    finally:
        del sys.modules[module.__name__]
