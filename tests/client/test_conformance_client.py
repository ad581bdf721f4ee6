"""The official MCP conformance suite's client scenarios with bastion's client under test.

``conformance client --command "<python> -m bastion.client.conformance"`` starts a mock MCP
server (and mock authorization servers) per scenario, runs our entry point with the server URL
as its last argument and ``MCP_CONFORMANCE_SCENARIO`` / ``MCP_CONFORMANCE_CONTEXT`` set, and
judges the traffic. Suites: ``auth`` and ``draft`` at spec versions 2025-11-25 and 2026-07-28,
``backcompat`` at those versions (where it selects no scenario: its two scenarios belong to the
2025-03-26 revision) and without a version (where it runs them), and the client-credentials
extension scenarios (``--force``). No check may be FAILURE or WARNING, and the run must exit 0.
SKIPPED checks are the suite's "not exercised" marks (``http-standard-headers`` cannot see an
``initialize`` on the stateless 2026-07-28 wire, which has none).

The suite's own output (with its "N passed, M failed" totals) is captured, never printed; a
failure shows only the checks that did not pass and the client's stderr for those scenarios.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.conformance

COMMAND = f"{shlex.quote(sys.executable)} -m bastion.client.conformance"
SUITE_TIMEOUT = 300.0
TIMESTAMP = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$")

AUTH = {
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
}
DRAFT = {
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/authorization-server-migration",
    "auth/iss-supported",
    "auth/iss-not-advertised",
    "auth/iss-supported-missing",
    "auth/iss-wrong-issuer",
    "auth/iss-unexpected",
    "auth/iss-normalized",
    "auth/metadata-issuer-mismatch",
    "request-metadata",
    "sep-2322-client-request-state",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "json-schema-ref-no-deref",
}
BACKCOMPAT = {
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
}


@pytest.fixture
def conformance_cli() -> str:
    """The wrapper script of the conformance suite (scripts/setup-node.sh prints its path)."""
    path = os.environ.get("BASTION_CONFORMANCE")
    if not path:
        pytest.skip(
            "BASTION_CONFORMANCE is not set: run `make test` (it runs scripts/test-setup.sh), or "
            "`export BASTION_CONFORMANCE=$(bash scripts/setup-node.sh)`"
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"BASTION_CONFORMANCE={path} is not an executable file: rerun setup-node.sh")
    return path


@dataclass(frozen=True)
class ClientRun:
    """A finished ``conformance client`` run: exit code and the checks of each scenario."""

    returncode: int
    checks: dict[str, list[dict[str, Any]]]
    stderr: dict[str, str]

    def problems(self) -> list[str]:
        return [
            f"{scenario}: {c['id']} {c['status']} {c.get('errorMessage') or c.get('description')}"
            for scenario, checks in sorted(self.checks.items())
            for c in checks
            if c["status"] in ("FAILURE", "WARNING")
        ]

    def report(self) -> str:
        failing = {line.split(":")[0] for line in self.problems()}
        logs = "".join(
            f"--- client stderr, {name} ---\n{self.stderr.get(name, '')[-3000:]}\n"
            for name in sorted(failing)
        )
        return "\n".join(self.problems()) + "\n" + logs


async def run_client(cli: str, output: Path, *args: str) -> ClientRun:
    """Run ``conformance client`` with our entry point; its console output stays captured."""
    proc = await asyncio.create_subprocess_exec(
        cli,
        "client",
        "--command",
        COMMAND,
        "-o",
        str(output),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await asyncio.wait_for(proc.communicate(), SUITE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"conformance client {' '.join(args)} did not finish in {SUITE_TIMEOUT} s")
    checks: dict[str, list[dict[str, Any]]] = {}
    stderr: dict[str, str] = {}
    for path in sorted(output.glob("**/checks.json")):
        scenario = TIMESTAMP.sub("", str(path.parent.relative_to(output)))
        checks[scenario] = json.loads(path.read_text())
        log = path.parent / "stderr.txt"
        stderr[scenario] = log.read_text(errors="replace") if log.exists() else ""
    assert proc.returncode is not None
    return ClientRun(proc.returncode, checks, stderr)


def assert_all_pass(run: ClientRun, expected: set[str]) -> None:
    assert set(run.checks) == expected, f"scenarios run: {sorted(run.checks)}"
    assert not run.problems(), run.report()
    assert run.returncode == 0, run.report()


def statuses(run: ClientRun, check_id: str) -> set[str]:
    return {c["status"] for checks in run.checks.values() for c in checks if c["id"] == check_id}


@pytest.mark.parametrize("version", ["2025-11-25", "2026-07-28"])
async def test_c01_to_c17_conformance_auth_suite(
    conformance_cli: str, tmp_path: Path, version: str
) -> None:
    """``--suite auth``: PRM discovery in all its variants (C01, C02), AS metadata by RFC 8414 and
    OIDC with path issuers (C04), CIMD, DCR and pre-registration (C06, C08), scope selection and
    step-up with a retry limit (C14, C15), token endpoint auth methods, PKCE (C10) and the
    ``resource`` parameter equal to the PRM's (C12)."""
    run = await run_client(conformance_cli, tmp_path, "--suite", "auth", "--spec-version", version)
    assert_all_pass(run, AUTH)
    assert statuses(run, "resource-parameter-matches-prm") == {"SUCCESS"}
    assert statuses(run, "pkce-s256-method-used") == {"SUCCESS"}
    if version == "2026-07-28":
        assert statuses(run, "sep-837-application-type-present") == {"SUCCESS"}
        assert statuses(run, "sep-2350-scope-union-on-reauth") == {"SUCCESS"}


async def test_c01_c05_c09_c11_c16_conformance_draft_suite(
    conformance_cli: str, tmp_path: Path
) -> None:
    """``--suite draft`` at 2026-07-28: resource mismatch refused (C01), metadata issuer
    mismatch refused (C05), re-registration on an AS change without reusing credentials (C03,
    C09), RFC 9207 ``iss`` handling (C11), offline_access (C16), and the SDK-level scenarios of
    the stateless revision."""
    run = await run_client(
        conformance_cli, tmp_path, "--suite", "draft", "--spec-version", "2026-07-28"
    )
    assert_all_pass(run, DRAFT)
    assert statuses(run, "resource-mismatch-rejected") == {"SUCCESS"}
    assert statuses(run, "sep-2352-no-cross-as-credential-reuse") == {"SUCCESS"}
    assert statuses(run, "sep-2468-client-no-normalization") == {"SUCCESS"}
    assert statuses(run, "sep-2207-offline-access-requested") == {"SUCCESS"}


@pytest.mark.parametrize(
    ("suite", "version"),
    [("draft", "2025-11-25"), ("backcompat", "2025-11-25"), ("backcompat", "2026-07-28")],
)
async def test_conformance_suites_with_no_scenario_at_a_version_run_clean(
    conformance_cli: str, tmp_path: Path, suite: str, version: str
) -> None:
    """These combinations select no scenario (draft scenarios start at 2026-07-28; backcompat
    ones end before 2025-06-18): the run must still succeed and skip nothing silently."""
    run = await run_client(conformance_cli, tmp_path, "--suite", suite, "--spec-version", version)
    assert_all_pass(run, set())


async def test_conformance_backcompat_suite_with_the_legacy_mode(
    conformance_cli: str, tmp_path: Path
) -> None:
    """``--suite backcompat`` without a version runs the two 2025-03-26 scenarios (no PRM; AS
    metadata at the server's root, or default endpoints). The entry point enables the explicit
    ``legacy_2025_03_26`` setting for them only; by default the client refuses such servers."""
    run = await run_client(conformance_cli, tmp_path, "--suite", "backcompat")
    assert_all_pass(run, BACKCOMPAT)


@pytest.mark.parametrize(
    "scenario", ["auth/client-credentials-basic", "auth/client-credentials-jwt"]
)
@pytest.mark.parametrize("version", [None, "2026-07-28"])
async def test_conformance_client_credentials_extension(
    conformance_cli: str, tmp_path: Path, scenario: str, version: str | None
) -> None:
    """The client-credentials extension (SEP-1046): client_secret_basic, and private_key_jwt with
    an ES256 assertion whose ``aud`` is the AS issuer (RFC 7523 §3). Extension scenarios are
    skipped at an explicit spec version unless forced."""
    args = ["--scenario", scenario, "--force"]
    if version:
        args += ["--spec-version", version]
    run = await run_client(conformance_cli, tmp_path, *args)
    assert_all_pass(run, {scenario})


@pytest.mark.parametrize(
    ("scenario", "checks"),
    [
        (
            "auth/dpop",
            {
                "sep-1932-client-token-request-proof",
                "sep-1932-client-dpop-auth-scheme",
                "sep-1932-client-fresh-proof",
            },
        ),
        (
            "auth/dpop-nonce",
            {
                "sep-1932-client-token-request-proof",
                "sep-1932-client-dpop-auth-scheme",
                "sep-1932-client-fresh-proof",
                "sep-1932-client-as-nonce",
                "sep-1932-client-rs-nonce",
            },
        ),
        (
            "auth/enterprise-managed-authorization",
            {"complete-flow-token-exchange", "complete-flow-jwt-bearer"},
        ),
        ("auth/wif-jwt-bearer", {"wif-assertion-verified"}),
    ],
)
async def test_rfc9449_id_jag_rfc7523_conformance_extensions(
    conformance_cli: str, tmp_path: Path, scenario: str, checks: set[str]
) -> None:
    """The extension scenarios of the pinned suite: DPoP without and with server nonces
    (RFC 9449 §5, §7.1, §8, §9: a proof at the token request, ``DPoP`` scheme, a fresh proof on
    each MCP request, one retry with the AS's and the MCP server's nonce), enterprise-managed
    authorization (RFC 8693 exchange at the IdP for an ID-JAG, then RFC 7523 jwt-bearer with
    client_secret_basic) and workload identity (jwt-bearer with the workload JWT, no retry, no
    grant fallback: the suite's wif-no-retry and wif-grant-fallback would be WARNINGs)."""
    run = await run_client(conformance_cli, tmp_path, "--scenario", scenario, "--force")
    assert_all_pass(run, {scenario})
    for check in checks:
        assert statuses(run, check) == {"SUCCESS"}, check
