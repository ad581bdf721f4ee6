"""One settings model for all of bastion: a TOML file, then ``BASTION_*`` environment variables.

Nested sections use ``__`` in environment names, e.g. ``BASTION_TOKENS__ACCESS_TOKEN_TTL=300``.
Nothing else in bastion reads the environment: build a :class:`Settings` and pass it in.

A module per section: :mod:`.authserver` (tokens, CIMD, registration, quotas, unknown clients,
log-in, token exchange), :mod:`.resources`, :mod:`.gateway`, :mod:`.revocations`,
:mod:`.identity_providers` (``[[upstreams]]``), :mod:`.console`, :mod:`.registry` with
:mod:`.registry_scopes`; the top level in :mod:`.settings`, files and environment in
:mod:`.loading`. Import from ``bastion.config``.
"""

from __future__ import annotations

from bastion.config.authserver import (
    CimdSettings,
    LoginSettings,
    QuotaSettings,
    RegistrationSettings,
    SigningAlg,
    TokenExchangeRule,
    TokenSettings,
    UnknownClientSettings,
)
from bastion.config.console import ConsoleSettings
from bastion.config.gateway import (
    GatewaySettings,
    UpstreamExchangeSettings,
    UpstreamListingSettings,
    UpstreamOAuthSettings,
    UpstreamSettings,
    listing_name,
)
from bastion.config.identity_providers import (
    ENTRA_SHARED_TENANTS,
    AllowRulesSettings,
    ClaimMappingSettings,
    IdentityProviderKind,
    IdentityProviderSettings,
)
from bastion.config.loading import (
    CONFIG_FILE_VARIABLE,
    CONFIG_VARIABLE,
    METRICS_DIRECTORY_VARIABLE,
    config_file_from_environment,
    environment_names_data,
    export_config_file,
    export_metrics_directory,
    load_settings,
    settings_from_environment,
)
from bastion.config.metrics import MetricsSettings
from bastion.config.registry import MirrorSettings, RegistrySettings
from bastion.config.registry_scopes import (
    OLD_REGISTRY_SCOPES,
    REGISTRY_SCOPES,
    RegistryScopeNames,
)
from bastion.config.resources import ResourceSettings
from bastion.config.revocations import RevocationSettings
from bastion.config.settings import Settings
from bastion.config.workload import WorkloadIdentityRule

__all__ = [
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
]
