"""The client under test for the official MCP conformance suite's client scenarios.

    conformance client --command "python -m bastion.client.conformance" --suite auth

The suite appends the server URL as the last argument and describes the scenario in
``MCP_CONFORMANCE_SCENARIO``, ``MCP_CONFORMANCE_CONTEXT`` (JSON, e.g. pre-registered
credentials) and ``MCP_CONFORMANCE_PROTOCOL_VERSION``. Auth scenarios connect with the ``mcp``
SDK's client over :class:`~bastion.client.auth.BastionAuth`; the suite's mock authorization
server redirects at once, so a headless opener plays the browser. The process exits 0 when the
scenario's client side completed and 1 (with the reason on stderr) when it did not, which is the
expected outcome of the scenarios that test refusals (resource mismatch, iss checks...).

Extension scenarios: ``auth/dpop`` and ``auth/dpop-nonce`` need no setting (the ``dpop``
default ``auto`` follows the AS metadata); ``auth/enterprise-managed-authorization`` becomes a
pre-registered ``jwt-bearer`` client with ``enterprise`` settings from the context (the ID token
written to a 0600 file, as an SSO tool would leave it); ``auth/wif-jwt-bearer`` a ``jwt-bearer``
client whose ``assertion_file`` holds the context's ``valid_jwt`` (the other JWTs are for the
suite's deliberately broken example clients).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    Implementation,
    InputRequiredResult,
    InputResponses,
    ListRootsResult,
)
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bastion.client.auth import BastionAuth
from bastion.client.authorizer import Authorizer
from bastion.client.browser import headless_opener
from bastion.client.discovery import discover
from bastion.client.errors import ClientError
from bastion.client.mcp_sdk import http_client
from bastion.client.settings import ClientSettings, EnterpriseIdp, PreRegisteredClient
from bastion.client.storage import MemoryStorage

# The URL the suite expects as client_id when the AS supports CIMD (auth/basic-cimd); the suite
# never fetches it.
CIMD_URL = "https://conformance-test.local/client-metadata.json"
BACKCOMPAT = {
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
}
CLIENT_CREDENTIALS = {"auth/client-credentials-basic", "auth/client-credentials-jwt"}
ENTERPRISE = "auth/enterprise-managed-authorization"
WORKLOAD = "auth/wif-jwt-bearer"
PRE_REGISTERED = CLIENT_CREDENTIALS | {"auth/pre-registration", ENTERPRISE, WORKLOAD}
HANDSHAKE_VERSIONS = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}
CLIENT_INFO = Implementation(name="mcp-bastion-conformance", version="0.1.0")


class ConformanceEnvironment(BaseSettings):
    """What the suite passes in the environment (``MCP_CONFORMANCE_*``)."""

    model_config = SettingsConfigDict(env_prefix="MCP_CONFORMANCE_", extra="ignore")

    scenario: str = ""
    context: str | None = None
    protocol_version: str | None = None

    def context_json(self) -> dict[str, Any]:
        """The scenario context, or an empty object."""
        if not self.context:
            return {}
        data = json.loads(self.context)
        return data if isinstance(data, dict) else {}


def sdk_mode(protocol_version: str | None) -> str:
    """The SDK connect mode for the suite's protocol version: the initialize handshake through
    2025-11-25, the stateless lifecycle (pinned, no probe) from 2026-07-28."""
    if protocol_version is None:
        return "auto"
    return "legacy" if protocol_version in HANDSHAKE_VERSIONS else protocol_version


async def accept_with_defaults(
    context: ClientRequestContext, params: ElicitRequestParams
) -> ElicitResult | ErrorData:
    """Accept form elicitations with the schema's defaults (or ``confirmed: true``)."""
    content: dict[str, str | int | float | bool | list[str] | None] = {}
    schema = getattr(params, "requested_schema", None) or getattr(params, "requestedSchema", None)
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for name, spec in properties.items():
        if isinstance(spec, dict) and "default" in spec:
            content[name] = spec["default"]
        elif isinstance(spec, dict) and spec.get("type") == "boolean":
            content[name] = True
    if not properties:
        content["confirmed"] = True
    return ElicitResult(action="accept", content=content)


async def no_roots(context: ClientRequestContext) -> ListRootsResult | ErrorData:
    """This client exposes no filesystem roots."""
    return ListRootsResult(roots=[])


async def no_sampling(
    context: ClientRequestContext, params: CreateMessageRequestParams
) -> CreateMessageResult | ErrorData:
    """This client has no model to sample from."""
    return ErrorData(code=-32600, message="sampling is not available in this client")


def _client(http: httpx2.AsyncClient, url: str, mode: str) -> Client:
    return Client(
        streamable_http_client(url, http_client=http),
        mode=mode,
        client_info=CLIENT_INFO,
        elicitation_callback=accept_with_defaults,
        list_roots_callback=no_roots,
        sampling_callback=no_sampling,
    )


async def _exercise_auth(client: Client, scenario: str) -> None:
    tools = await client.list_tools()
    if scenario in CLIENT_CREDENTIALS:
        return
    if any(tool.name == "test-tool" for tool in tools.tools):
        await client.call_tool("test-tool", {})


async def settings_for(
    scenario: str,
    context: dict[str, Any],
    server_url: str,
    authorizer: Authorizer,
    workdir: Path | None = None,
) -> ClientSettings:
    """The client settings a scenario calls for: CIMD URL, legacy mode, or credentials from the
    context bound to the issuer (the context's, or the one the server names). ``workdir`` holds
    the files a jwt-bearer scenario's tokens are written to (default: a new temporary
    directory, left for the caller to remove)."""
    base = ClientSettings(
        client_name="mcp-bastion conformance client",
        client_metadata_url=CIMD_URL,
        legacy_2025_03_26=scenario in BACKCOMPAT,
        use_keyring=False,
    )
    client_id = context.get("client_id")
    if not isinstance(client_id, str) or scenario not in PRE_REGISTERED:
        return base
    issuer = context.get("issuer")
    if not isinstance(issuer, str):
        # The context names no issuer: bind the credentials to the one the server names, as an
        # operator configuring this client would after `bastion doctor`.
        found = await discover(authorizer.http, server_url, require_pkce=False)
        issuer = found.issuer
    secret = context.get("client_secret")
    key = context.get("private_key_pem")
    alg = context.get("signing_algorithm") or "ES256"
    extra: dict[str, Any] = {}
    if scenario in (ENTERPRISE, WORKLOAD):
        folder = workdir or Path(tempfile.mkdtemp(prefix="bastion-conformance-"))
        if scenario == WORKLOAD:
            extra["assertion_file"] = _private_file(folder / "workload.jwt", context["valid_jwt"])
        else:
            extra["enterprise"] = EnterpriseIdp(
                idp_token_endpoint=context.get("idp_token_endpoint"),
                idp_client_id=context["idp_client_id"],
                id_token_file=_private_file(folder / "id-token.jwt", context["idp_id_token"]),
            )
    grant = (
        "client_credentials"
        if scenario in CLIENT_CREDENTIALS
        else "jwt-bearer"
        if extra
        else "authorization_code"
    )
    pre = PreRegisteredClient(
        issuer=issuer,
        client_id=client_id,
        client_secret=SecretStr(secret) if isinstance(secret, str) else None,
        private_key_pem=SecretStr(key) if isinstance(key, str) else None,
        signing_alg=alg,
        grant_type=grant,
        **extra,
    )
    return base.model_copy(update={"pre_registered": [pre]})


def _private_file(path: Path, text: str) -> Path:
    """Write ``text`` to a new file readable by its owner only."""
    path.touch(mode=0o600, exist_ok=False)
    path.write_text(text)
    return path


async def run_auth(server_url: str, env: ConformanceEnvironment) -> None:
    """An auth scenario: connect over BastionAuth, list tools, call ``test-tool``."""
    context = env.context_json()
    with tempfile.TemporaryDirectory(prefix="bastion-conformance-") as workdir:
        probe = Authorizer(ClientSettings(use_keyring=False), storage=MemoryStorage())
        try:
            settings = await settings_for(env.scenario, context, server_url, probe, Path(workdir))
        finally:
            await probe.aclose()
        auth = BastionAuth(settings, storage=MemoryStorage(), open_url=headless_opener())
        try:
            async with (
                http_client(auth) as http,
                _client(http, server_url, sdk_mode(env.protocol_version)) as client,
            ):
                await _exercise_auth(client, env.scenario)
        finally:
            await auth.aclose()


async def run_plain(server_url: str, env: ConformanceEnvironment) -> None:
    """A non-auth scenario: what each one expects the client to do, through the SDK."""
    scenario = env.scenario
    mode = sdk_mode(env.protocol_version)
    if scenario == "request-metadata":
        mode = "auto"  # the scenario refuses the first version to see the client negotiate
    calls = env.context_json().get("toolCalls")
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http,
        _client(http, server_url, mode) as client,
    ):
        tools = (await client.list_tools()).tools
        if scenario in ("json-schema-ref-no-deref", "request-metadata"):
            return
        if isinstance(calls, list):
            for call in calls:
                await client.call_tool(call["name"], call.get("arguments") or {})
            return
        if scenario == "json-schema-2020-12-preservation":
            focal = next(t for t in tools if t.name == "json_schema_2020_12_tool")
            await client.call_tool("json_schema_echo", {"schema": focal.input_schema})
            return
        if scenario == "sep-2322-client-request-state":
            await _request_state(client)
            return
        if scenario == "http-standard-headers":
            await _exercise_everything(client)
            return
        for tool in tools:
            await client.call_tool(tool.name, _arguments(tool.input_schema))


async def _request_state(client: Client) -> None:
    """SEP-2322: answer an input_required result, calling an unrelated tool before the retry
    (which must carry neither the other flow's responses nor its state)."""
    first = await client.session.call_tool("test_mrtr_echo_state", {}, allow_input_required=True)
    if isinstance(first, InputRequiredResult):
        responses: InputResponses = {
            key: ElicitResult(action="accept", content={"confirmed": True})
            for key in (first.input_requests or {})
        }
        await client.call_tool("test_mrtr_unrelated", {})
        await client.session.call_tool(
            "test_mrtr_echo_state",
            {},
            input_responses=responses,
            request_state=first.request_state,
        )
    await client.call_tool("test_mrtr_no_state", {})
    try:
        await client.call_tool("test_mrtr_no_result_type", {})
    except ValidationError as exc:
        # mcp 2.3.0 requires resultType on 2026-07-28 results, where SEP-2322 says an absent
        # resultType means "complete"; the call was made once and not retried, as required.
        print(
            f"mcp SDK rejected a result without resultType: {exc.error_count()} errors",
            file=sys.stderr,
        )


def _arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Plausible arguments for a tool's input schema."""
    out: dict[str, Any] = {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for name, spec in (properties or {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        out[name] = 2 if kind in ("number", "integer") else True if kind == "boolean" else "test"
    return out


async def _exercise_everything(client: Client) -> None:
    tools = (await client.list_tools()).tools
    if tools:
        await client.call_tool(tools[0].name, _arguments(tools[0].input_schema))
    resources = (await client.list_resources()).resources
    if resources:
        await client.read_resource(resources[0].uri)
    prompts = (await client.list_prompts()).prompts
    if prompts:
        await client.get_prompt(prompts[0].name, {})


async def run(server_url: str, env: ConformanceEnvironment) -> None:
    """Run the scenario named by the environment against ``server_url``."""
    if env.scenario.startswith("auth/"):
        await run_auth(server_url, env)
    else:
        await run_plain(server_url, env)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m bastion.client.conformance <server-url>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m bastion.client.conformance <server-url>", file=sys.stderr)
        return 2
    env = ConformanceEnvironment()
    try:
        asyncio.run(run(args[-1], env))
    except Exception as exc:
        for leaf in _leaves(exc):
            if isinstance(leaf, ClientError):
                print(f"bastion client refused: {type(leaf).__name__}: {leaf}", file=sys.stderr)
                if leaf.trace is not None:
                    print("\n".join(leaf.trace.lines()), file=sys.stderr)
            else:
                print(
                    f"scenario {env.scenario} failed: {type(leaf).__name__}: {leaf}",
                    file=sys.stderr,
                )
        return 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as anyio task groups raise them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


__all__ = ["ConformanceEnvironment", "main", "run", "sdk_mode", "settings_for"]


if __name__ == "__main__":
    sys.exit(main())
