"""docs/client.md's client.toml examples load as written (``ClientSettings`` forbids unknown
keys), and the DPoP, enterprise-managed authorization and workload identity ones say what the
text says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bastion.client.settings import ClientSettings

DOC = Path(__file__).parents[2] / "docs" / "client.md"


def _examples() -> list[ClientSettings]:
    return [
        ClientSettings.model_validate(tomllib.loads(block))
        for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    ]


def test_every_client_toml_example_loads() -> None:
    assert len(_examples()) >= 7


def test_the_dpop_example_sets_auto_and_a_per_issuer_never() -> None:
    [example] = [e for e in _examples() if any(p.dpop for p in e.pre_registered)]
    assert example.dpop == "auto"
    assert example.pre_registered[0].dpop == "never"


def test_the_enterprise_example_is_a_jwt_bearer_client_with_an_idp() -> None:
    [example] = [e for e in _examples() if any(p.enterprise for p in e.pre_registered)]
    [client] = example.pre_registered
    assert client.grant_type == "jwt-bearer" and client.client_secret is not None
    assert client.enterprise is not None
    assert client.enterprise.idp_issuer == "https://acme.okta.com"
    assert client.enterprise.id_token_file == Path("/home/me/.cache/acme/id_token")


def test_the_workload_examples_read_a_file_or_a_variable() -> None:
    workloads = [
        p
        for e in _examples()
        for p in e.pre_registered
        if p.grant_type == "jwt-bearer" and p.enterprise is None
    ]
    assert [(p.assertion_file, p.assertion_env) for p in workloads] == [
        (Path("/var/run/secrets/tokens/bastion"), None),
        (None, "MCP_WORKLOAD_TOKEN"),
    ]
    assert all(p.client_secret is None for p in workloads)
