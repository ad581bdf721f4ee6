"""The public API is what the packages export: every change to it is made here on purpose
(STYLE.md rule 12)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import bastion

# Each package whose __init__ declares __all__, with the names it exports.
EXPORTS = {
    "bastion": ["__version__"],
    "bastion.access": ["AccessRule", "Decision", "Person", "decide_machine", "decide_person"],
    "bastion.client": [
        "AssertionUnavailable",
        "AuthorizationDenied",
        "AuthorizationError",
        "AuthorizationServerMetadata",
        "Authorizer",
        "BastionAuth",
        "BearerChallenge",
        "ClientError",
        "ClientSettings",
        "DPoPKey",
        "Discovery",
        "DiscoveryError",
        "EnterpriseIdp",
        "FileStorage",
        "KeyringStorage",
        "MemoryStorage",
        "OpenUrl",
        "PreRegisteredClient",
        "ProtectedResourceMetadata",
        "RegisteredClient",
        "RegistrationError",
        "RegistryClient",
        "RegistryError",
        "ServerEntry",
        "ServerPage",
        "StorageError",
        "TokenEndpointError",
        "TokenSet",
        "TokenStorage",
        "Trace",
        "TraceStep",
        "bearer_challenge",
        "discover",
        "headless_opener",
        "open_in_browser",
    ],
    "bastion.config": [
        "CONFIG_FILE_VARIABLE",
        "CONFIG_VARIABLE",
        "ENTRA_SHARED_TENANTS",
        "METRICS_DIRECTORY_VARIABLE",
        "OLD_REGISTRY_SCOPES",
        "REGISTRY_SCOPES",
        "AllowRulesSettings",
        "CimdSettings",
        "ClaimMappingSettings",
        "ConsoleSettings",
        "GatewaySettings",
        "IdentityProviderKind",
        "IdentityProviderSettings",
        "LoginSettings",
        "MetricsSettings",
        "MirrorSettings",
        "QuotaSettings",
        "RegistrationSettings",
        "RegistryScopeNames",
        "RegistrySettings",
        "ResourceSettings",
        "RevocationSettings",
        "Settings",
        "SigningAlg",
        "TokenExchangeRule",
        "TokenSettings",
        "UnknownClientSettings",
        "UpstreamExchangeSettings",
        "UpstreamListingSettings",
        "UpstreamOAuthSettings",
        "UpstreamSettings",
        "WorkloadIdentityRule",
        "config_file_from_environment",
        "environment_names_data",
        "export_config_file",
        "export_metrics_directory",
        "listing_name",
        "load_settings",
        "settings_from_environment",
    ],
    "bastion.doctor": ["Check", "Diagnosis", "Kind", "Status", "diagnose"],
    "bastion.gateway": [
        "AuditLog",
        "AuditMiddleware",
        "ForwardedIdentity",
        "HttpProxy",
        "IdentityError",
        "StdioBridge",
        "create_gateway_app",
        "sign_identity_headers",
        "verify_identity_headers",
    ],
    "bastion.registry": [
        "META_KEY",
        "Registry",
        "create_registry_app",
    ],
    "bastion.serve": [
        "METRICS_LISTENER",
        "SHUTDOWN_GRACE",
        "Listener",
        "PortUnavailable",
        "bind_listener",
        "bind_listeners",
        "create_combined_app",
        "proxy_options",
        "quickstart_listeners",
        "registry_listeners",
        "run_gateway",
        "run_quickstart",
        "run_registry",
        "run_server",
        "run_together",
        "serve_one",
        "serve_together",
        "server_app",
        "shares_issuer_origin",
        "uvicorn_options",
        "worker_app",
    ],
    "bastion.resource": [
        "DEFAULT_ALGORITHMS",
        "SUPPORTED_ALGORITHMS",
        "HttpRevocationFeed",
        "IntrospectionVerifier",
        "JwtVerifier",
        "Principal",
        "ResourceDPoP",
        "ResourceServerMiddleware",
        "RevocationCheck",
        "RevocationList",
        "RpcCall",
        "ScopePolicy",
        "ScopePolicySettings",
        "TokenVerifier",
        "rpc_calls",
    ],
}


def test_every_package_that_exports_names_is_pinned() -> None:
    """A package that starts declaring __all__ in its __init__ is added to EXPORTS."""
    packages = [
        info.name
        for info in pkgutil.walk_packages(bastion.__path__, prefix="bastion.")
        if info.ispkg and ".migrations" not in info.name
    ]
    exporting = {
        name for name in ["bastion", *packages] if hasattr(importlib.import_module(name), "__all__")
    }
    assert exporting == EXPORTS.keys()


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_exported_members(name: str) -> None:
    """__all__ is exactly the pinned list, each name in it is defined, and nothing public is
    imported into the package without being exported."""
    package = importlib.import_module(name)
    assert sorted(package.__all__) == sorted(EXPORTS[name])
    for member in package.__all__:
        assert hasattr(package, member), f"{name}.__all__ names {member}, which is not defined"
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_")
        and not isinstance(value, types.ModuleType)
        and member != "annotations"  # from __future__ import annotations
    }
    unexported = sorted(public - set(package.__all__))
    assert not unexported, f"{name} imports {unexported} without exporting them"
