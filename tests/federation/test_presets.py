"""``[[upstreams]]`` configuration: what each preset fills in (docs/providers/<kind>.md), and
the mistakes refused at start-up with a message naming the setting."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import IdentityProviderSettings, Settings
from bastion.identity.provider_kinds import KINDS, PRESET_SETTINGS, KindName
from bastion.identity.providers import ProviderSpec, redirect_uri, resolve

SECRET = "s3cret"


def spec(**values: Any) -> ProviderSpec:
    return resolve(
        IdentityProviderSettings(
            **{"name": "idp", "client_id": "bastion", "client_secret": SECRET, **values}
        )
    )


def refused(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        IdentityProviderSettings(**{"name": "idp", "client_id": "bastion", **values})
    return str(caught.value)


def test_generic_oidc_discovers_from_the_issuer() -> None:
    s = spec(kind="oidc", issuer="https://idp.example.com/tenant/")
    assert s.protocol == "oidc"
    assert s.issuer == "https://idp.example.com/tenant/"  # kept exactly, trailing slash included
    assert s.discovery_url == "https://idp.example.com/tenant/.well-known/openid-configuration"
    assert s.scopes == ("openid", "email", "profile")
    assert s.auth_method == "client_secret_basic"
    assert (s.claims.subject, s.claims.email, s.claims.groups) == ("sub", "email", "groups")
    assert s.use_userinfo


def test_entra_uses_v2_endpoints_of_the_tenant_and_never_sends_resource() -> None:
    tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
    s = spec(kind="entra", tenant=tenant, allow={"groups": ["g"]})
    assert s.issuer == f"https://login.microsoftonline.com/{tenant}/v2.0"
    assert s.discovery_url == (
        f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"
    )
    assert "resource" not in s.authorization_params and "resource" not in s.token_params
    assert (s.claims.groups, s.claims.organization, s.claims.email_verified) == (
        "groups",
        "tid",
        "xms_edov",
    )
    assert not s.use_userinfo
    message = refused(kind="entra", tenant=tenant, client_secret=SECRET, resource="https://api")
    assert "AADSTS901002" in message and "api://<app-id>/<scope>" in message


def test_entra_multi_tenant_needs_allow_rules_and_checks_the_token_tenant() -> None:
    message = refused(kind="entra", tenant="organizations", client_secret=SECRET)
    assert "anyone with an account there could sign in" in message
    s = spec(kind="entra", tenant="organizations", allow={"organizations": ["t-1"]})
    assert s.issuer == "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert s.discovery_url == (
        "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration"
    )


def test_okta_custom_and_org_authorization_servers() -> None:
    assert (
        spec(kind="okta", domain="acme.okta.com").issuer == "https://acme.okta.com/oauth2/default"
    )
    assert (
        spec(kind="okta", domain="acme.okta.com", authorization_server="aus1").issuer
        == "https://acme.okta.com/oauth2/aus1"
    )
    assert spec(kind="okta", domain="acme.okta.com", authorization_server="").issuer == (
        "https://acme.okta.com"
    )


def test_auth0_issuer_has_its_trailing_slash_and_audience_is_sent() -> None:
    s = spec(kind="auth0", domain="acme.eu.auth0.com", audience="https://api.acme.example")
    assert s.issuer == "https://acme.eu.auth0.com/"
    assert s.discovery_url == "https://acme.eu.auth0.com/.well-known/openid-configuration"
    assert s.authorization_params == {"audience": "https://api.acme.example"}
    assert (s.claims.groups, s.claims.organization) == (None, "org_id")


def test_keycloak_google_cognito() -> None:
    kc = spec(kind="keycloak", base_url="https://sso.acme.example/", realm="staff")
    assert kc.issuer == "https://sso.acme.example/realms/staff"
    google = spec(kind="google", allow={"organizations": ["acme.example"]})
    assert google.issuer == "https://accounts.google.com"
    assert (google.claims.organization, google.claims.groups) == ("hd", None)
    cognito = spec(kind="cognito", region="eu-west-1", user_pool_id="eu-west-1_AbC123")
    assert cognito.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert cognito.claims.groups == "cognito:groups"


def test_github_com_and_enterprise_server() -> None:
    dotcom = spec(kind="github", allow={"organizations": ["acme"]})
    assert dotcom.protocol == "github"
    assert dotcom.authorization_endpoint == "https://github.com/login/oauth/authorize"
    assert dotcom.token_endpoint == "https://github.com/login/oauth/access_token"
    assert dotcom.api_url == "https://api.github.com"
    assert dotcom.scopes == ("read:user", "user:email", "read:org")
    assert dotcom.auth_method == "client_secret_post"
    assert dotcom.claims.subject == "id"  # the numeric id; logins can be renamed
    ghes = spec(kind="github", base_url="https://github.acme.example")
    assert ghes.api_url == "https://github.acme.example/api/v3"
    assert "anyone with an account there" in refused(kind="github", client_secret=SECRET)


def test_store_refresh_token_adds_offline_access_except_for_google() -> None:
    assert (
        "offline_access" in spec(kind="okta", domain="a.okta.com", store_refresh_token=True).scopes
    )
    google = spec(kind="google", allow={"any_account": True}, store_refresh_token=True)
    assert "offline_access" not in google.scopes
    assert google.authorization_params == {"access_type": "offline", "prompt": "consent"}


def test_claim_mapping_overrides_and_disables() -> None:
    s = spec(
        kind="auth0",
        domain="a.auth0.com",
        claims={"groups": "https://acme.example/groups", "organization": ""},
    )
    assert s.claims.groups == "https://acme.example/groups"
    assert s.claims.organization is None


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"kind": "entra", "client_secret": SECRET}, "needs tenant"),
        ({"kind": "okta", "client_secret": SECRET}, "needs domain"),
        ({"kind": "keycloak", "base_url": "https://k", "client_secret": SECRET}, "needs realm"),
        ({"kind": "cognito", "region": "eu-west-1", "client_secret": SECRET}, "needs user_pool_id"),
        ({"kind": "oidc", "client_secret": SECRET}, "needs issuer"),
        ({"kind": "oauth2", "client_secret": SECRET}, "needs authorization_endpoint"),
        (
            {"kind": "okta", "domain": "a", "audience": "x", "client_secret": SECRET},
            "does not take audience",
        ),
        ({"kind": "oidc", "issuer": "https://i"}, "needs client_secret"),
        ({"kind": "oidc", "issuer": "http://idp.example.com", "client_secret": SECRET}, "https"),
        (
            {
                "kind": "oidc",
                "issuer": "https://i",
                "client_secret": SECRET,
                "extra_authorization_params": {"state": "x"},
            },
            "cannot set state",
        ),
        (
            {"kind": "google", "client_secret": SECRET, "authorization_endpoint": "https://x"},
            "the preset sets the endpoints",
        ),
        (
            {"kind": "oidc", "issuer": "https://i", "client_secret": SECRET, "name": "Bad Name"},
            "name",
        ),
        (
            {
                "kind": "oidc",
                "issuer": "https://i",
                "client_secret": SECRET,
                "allow": {"email_domains": ["@x.com"]},
            },
            "bare domains",
        ),
    ],
)
def test_configuration_mistakes_are_refused_with_the_setting_named(
    values: dict[str, Any], says: str
) -> None:
    assert says in refused(**values)


def test_upstream_names_are_unique_and_the_redirect_uri_follows_the_issuer() -> None:
    one = {
        "name": "a",
        "kind": "oidc",
        "issuer": "https://i",
        "client_id": "c",
        "client_secret": "s",
    }
    with pytest.raises(ValidationError, match="used twice"):
        Settings(upstreams=[one, one])
    assert redirect_uri("https://auth.example.com/base", "corp") == (
        "https://auth.example.com/base/login/corp/callback"
    )


def test_secrets_are_masked_in_reprs() -> None:
    cfg = IdentityProviderSettings(
        name="a", kind="oidc", issuer="https://i", client_id="c", client_secret="hunter2"
    )
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
    assert "hunter2" not in repr(resolve(cfg))


def test_every_kind_the_settings_name_has_one_record() -> None:
    """The kind's name, the settings it requires and takes, and its preset are one record
    (bastion.identity.provider_kinds): configuration and resolve both read it."""
    assert list(KINDS) == list(typing.get_args(KindName))
    for name, kind in KINDS.items():
        assert kind.name == name
        assert kind.required <= kind.allowed
        assert kind.allowed - set(PRESET_SETTINGS) <= {
            "authority_host",
            "authorization_endpoint",
            "token_endpoint",
            "userinfo_endpoint",
        }


@pytest.mark.parametrize("name", ["okta", "keycloak", "cognito"])
def test_a_kind_names_every_setting_it_requires(name: str) -> None:
    message = refused(kind=name, client_secret=SECRET)
    assert f"upstream 'idp' (kind {name}) needs {', '.join(sorted(KINDS[name].required))}" in (
        message
    )
