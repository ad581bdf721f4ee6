"""Workload identity on the client side (RFC 7523 §2.1, MCP SEP-1933): the token comes from the
JWT bearer grant with an assertion the platform issued to this workload (a Kubernetes projected
service-account token, a GitHub Actions OIDC token, a SPIFFE JWT-SVID), no client secret.

The assertion is read at each token request, never cached: Kubernetes rotates projected tokens
in place, and an expired one must not be sent again. It comes from the file named by
``assertion_file`` or the environment variable named by ``assertion_env`` of the pre-registered
client. A refusal of the grant (``invalid_grant``, ``invalid_scope``, ``unauthorized_client``...)
is reported with the authorization server's error code and description; the client neither
retries nor falls back to another grant (:func:`bastion.client.flow.jwt_bearer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from bastion.client.errors import AssertionUnavailable
from bastion.client.settings import PreRegisteredClient

MAX_ASSERTION_BYTES = 64 * 1024


class _Environment(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")


def environment_value(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of the environment variable ``name`` (empty when unset), read now through a
    pydantic-settings model like every other setting read from the environment (house rule 5);
    ``environ`` replaces the process environment (tests)."""
    if environ is not None:
        return environ.get(name, "")
    field: dict[str, Any] = {name: (str, "")}
    model = create_model("_Variable", __base__=_Environment, **field)
    return str(getattr(model(), name))


def read_assertion(client: PreRegisteredClient, *, environ: Mapping[str, str] | None = None) -> str:
    """The workload token configured for ``client``, read now (file or environment)."""
    if client.assertion_file is not None:
        path = client.assertion_file
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_ASSERTION_BYTES + 1)
        except OSError as exc:
            raise AssertionUnavailable(
                f"cannot read the workload token file {path} (assertion_file of the client "
                f"{client.client_id} at {client.issuer}): {exc.strerror or exc}"
            ) from None
        if len(raw) > MAX_ASSERTION_BYTES:
            raise AssertionUnavailable(f"the workload token file {path} is larger than 64 KiB")
        token = raw.decode("utf-8", errors="replace").strip()
        where = f"the file {path}"
    elif client.assertion_env is not None:
        token = environment_value(client.assertion_env, environ).strip()
        where = f"the environment variable {client.assertion_env}"
    else:
        raise AssertionUnavailable(
            f"the client {client.client_id} at {client.issuer} has no assertion_file or "
            "assertion_env"
        )
    if not token:
        raise AssertionUnavailable(
            f"{where} holds no workload token (assertion for the client {client.client_id} at "
            f"{client.issuer}); check that the platform mounts or exports it"
        )
    return token


__all__ = ["MAX_ASSERTION_BYTES", "environment_value", "read_assertion"]
