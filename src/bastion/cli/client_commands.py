"""``bastion login | logout | token | whoami | tools | call``: bastion as an MCP client
(docs/client.md).

Each command parses its arguments, calls the client library (:mod:`bastion.client`) and prints:
results on standard output, everything else (authorization URLs, messages, errors) on standard
error, so ``$(bastion token URL)`` captures the token only. A
:class:`~bastion.client.errors.ClientError` prints its message and discovery trace and exits with
code 1; bad command-line input exits with code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypedDict, TypeVar

import httpx
import typer
from joserfc.errors import JoseError
from joserfc.jws import extract_compact
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.cli.client_context import (
    ClientConfigOption,
    NoBrowserOption,
    authorizer,
    client_errors,
    err,
    load_client_settings,
    step_up_notice,
)
from bastion.cli.common import checked_url
from bastion.cli.display import duration, print_table, timestamp
from bastion.client import ClientError, ClientSettings, TokenSet
from bastion.client.authorizer import Logout

if TYPE_CHECKING:  # the mcp SDK is imported by the commands that use it (it is slow to import)
    import httpx2
    from mcp.client import Client
    from mcp_types import CallToolResult, Tool

T = TypeVar("T")
console = Console(soft_wrap=True)

UrlArgument = Annotated[
    str,
    typer.Argument(
        metavar="URL", help="The MCP server's streamable HTTP endpoint.", callback=checked_url
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on standard output.")]
# Claims of a JWT access token worth showing (RFC 9068 §2.2, RFC 7643 groups).
SHOWN_CLAIMS = ("iss", "sub", "aud", "scope", "client_id", "exp", "groups")
MAX_TOOL_PAGES = 100
# scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3)
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
RegistryOption = Annotated[
    bool,
    typer.Option("--registry", help="URL is an MCP registry (probed with GET /v0.1/servers)."),
]


def login(
    url: UrlArgument,
    registry: RegistryOption = False,
    no_browser: NoBrowserOption = False,
    client_config: ClientConfigOption = None,
) -> None:
    """Authorize for an MCP server or registry now (in the browser) and store the tokens."""
    settings = load_client_settings(client_config)

    async def go() -> TokenSet:
        async with authorizer(settings, no_browser=no_browser) as auth:
            if auth.static_header(url) is not None:
                raise ClientError(
                    f"a static Authorization header is configured for {url} (static_headers in "
                    "the client configuration): OAuth is disabled there; remove it to log in"
                )
            return await auth.login(url, registry=registry)

    tokens = _run(go())
    console.print(f"logged in to {escape(tokens.server_url)}")
    _print_facts(token_facts(tokens, time.time()))


def logout(
    url: UrlArgument,
    revoke: Annotated[
        bool,
        typer.Option(
            "--revoke/--no-revoke",
            help="Also revoke the grant at the authorization server (RFC 7009).",
        ),
    ] = True,
    client_config: ClientConfigOption = None,
) -> None:
    """Forget the stored tokens of a server and revoke them at its authorization server.

    The refresh token is revoked (ending the whole grant), else the access token, when the
    authorization server's metadata lists a revocation_endpoint (RFC 7009).
    """
    settings = load_client_settings(client_config)

    async def go() -> Logout:
        async with authorizer(settings, no_browser=True) as auth:
            return await auth.logout(url, revoke=revoke)

    done = _run(go())
    if done.forgotten is None:
        console.print(f"no tokens were stored for {escape(url)}")
        return
    console.print(f"forgot the tokens for {escape(done.forgotten.server_url)}")
    if done.revoked is not None:
        console.print(f"revoked: {escape(done.detail)}")
    elif revoke:
        err.print(f"[yellow]not revoked:[/yellow] {escape(done.detail)}")


def token(
    url: UrlArgument,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="A scope the token must have (repeat). A stored token without it leads to a new "
            "authorization for these and the scopes asked for before.",
        ),
    ] = None,
    registry: RegistryOption = False,
    no_browser: NoBrowserOption = False,
    client_config: ClientConfigOption = None,
) -> None:
    """Print a valid access token for URL, and nothing else, on standard output.

    The stored token, refreshed when it is about to expire, or one from a new log-in. With
    --scope, a token with at least those scopes (e.g. a registry's write scope for scripts that
    publish); an authorization server that grants fewer is an error, not a narrower token. For
    scripts: curl -H "Authorization: Bearer $(bastion token URL)" URL
    """
    wanted = _scopes(scope or [])
    settings = load_client_settings(client_config)

    async def go() -> tuple[str, bool]:
        async with authorizer(settings, no_browser=no_browser) as auth:
            if wanted:
                found = await auth.token_with_scopes(url, wanted, registry=registry)
                return found.access_token, found.dpop_bound
            value = await auth.access_token(url, registry=registry)
            stored = await auth.stored_tokens(url)
            return value, stored is not None and stored.dpop_bound

    value, bound = _run(go())
    if bound:
        err.print(
            "note: this token is DPoP-bound (RFC 9449): it is useless without a proof signed "
            "by bastion's key, so `Authorization: Bearer` will be refused; use `bastion call`, "
            'or set dpop = "never" in the client configuration for tokens scripts can send',
            markup=False,
            highlight=False,
        )
    typer.echo(value)


def whoami(
    url: UrlArgument,
    as_json: JsonOption = False,
    client_config: ClientConfigOption = None,
) -> None:
    """Show the stored tokens of a server: issuer, client, scopes, expiry, claims.

    Reads the token store only: no network request, no refresh (an expired token is shown as
    expired; the next command that uses it refreshes it). The access token's claims are shown
    unverified: the client does not check them.
    """
    settings = load_client_settings(client_config)

    async def go() -> tuple[bool, TokenSet | None]:
        async with authorizer(settings, no_browser=True) as auth:
            return auth.static_header(url) is not None, await auth.stored_tokens(url)

    static, tokens = _run(go())
    if static:
        if as_json:
            typer.echo(json.dumps({"server": url, "static_header": True}, indent=2))
        else:
            console.print(
                f"a static Authorization header is configured for {escape(url)}: "
                "OAuth is disabled there"
            )
        return
    if tokens is None:
        err.print(
            f"[red]error:[/red] no tokens stored for {escape(url)}; "
            f"log in with `bastion login {escape(url)}`"
        )
        raise typer.Exit(1)
    facts = token_facts(tokens, time.time())
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
    else:
        _print_facts(facts)


def tools(
    url: UrlArgument,
    as_json: JsonOption = False,
    no_browser: NoBrowserOption = False,
    client_config: ClientConfigOption = None,
) -> None:
    """List the MCP server's tools: name, description, required arguments."""
    settings = load_client_settings(client_config)

    async def go() -> list[Tool]:
        found: list[Tool] = []
        async with mcp_client(url, settings, no_browser=no_browser) as client:
            cursor: str | None = None
            for _ in range(MAX_TOOL_PAGES):
                page = await client.list_tools(cursor=cursor)
                found.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        return found

    listed = _run(go())
    if as_json:
        dumped = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed]
        typer.echo(json.dumps(dumped, indent=2))
        return
    table = Table("name", "description", "required arguments")
    for tool in listed:
        required = tool.input_schema.get("required") or []
        summary = (tool.description or "").strip().split("\n", 1)[0]
        table.add_row(escape(tool.name), escape(summary), escape(", ".join(map(str, required))))
    print_table(console, table)


def call(
    url: UrlArgument,
    tool: Annotated[
        str, typer.Argument(metavar="TOOL", help="The tool's name (see `bastion tools URL`).")
    ],
    arguments: Annotated[
        str, typer.Argument(metavar="JSON", help="The tool's arguments as a JSON object.")
    ] = "{}",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the structured result as JSON.")
    ] = False,
    no_browser: NoBrowserOption = False,
    client_config: ClientConfigOption = None,
) -> None:
    """Call a tool with JSON object arguments and print its result.

    Exit code 1 when the tool reports an error (isError). A 403 insufficient_scope leads to one
    more authorization for the added scopes (step-up), then the call is retried.
    """
    parsed = _json_object(arguments)
    settings = load_client_settings(client_config)

    async def go() -> CallToolResult:
        async with mcp_client(
            url,
            settings,
            no_browser=no_browser,
            doing=f"to call {tool}",
            client_config=client_config,
        ) as client:
            return await client.call_tool(tool, parsed)

    result = _run(go())
    if as_json:
        shown = (
            result.structured_content
            if result.structured_content is not None
            else result.model_dump(mode="json", by_alias=True, exclude_none=True)
        )
        typer.echo(json.dumps(shown, indent=2))
    else:
        for item in result.content:
            typer.echo(_content_text(item), err=bool(result.is_error))
    if result.is_error:
        err.print(f"[red]error:[/red] the tool {escape(tool)} reported an error")
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------- helpers
def register(app: typer.Typer) -> None:
    """Add the client commands to the ``bastion`` application."""
    for command in (login, logout, token, whoami, tools, call):
        app.command()(command)


@asynccontextmanager
async def mcp_client(
    url: str,
    settings: ClientSettings,
    *,
    no_browser: bool,
    doing: str | None = None,
    client_config: Path | None = None,
) -> AsyncIterator[Client]:
    """An ``mcp.Client`` for ``url`` over bastion's authorization, as
    :func:`bastion.client.mcp_sdk.connect` makes it, that also says which HTTP error the server
    answered: the SDK reports any HTTP error as a bare "Server returned an error response"."""
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
    from mcp_types import INTERNAL_ERROR

    from bastion.client.mcp_sdk import http_client

    refused: list[str] = []

    async def remember(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            challenge = response.headers.get("www-authenticate")
            refused.append(
                f"HTTP {response.status_code} to {response.request.method} {response.request.url}"
                + (f" with WWW-Authenticate: {challenge}" if challenge else "")
                + await _oauth_error(response)
            )

    async with authorizer(settings, no_browser=no_browser) as auth, http_client(auth) as http:
        http.event_hooks["response"].append(remember)
        if doing is not None:  # a step-up is said in the terminal, not only seen in the browser
            http.event_hooks["response"].append(
                step_up_notice(
                    url,
                    doing=doing,
                    again="run the command again",
                    no_browser=no_browser,
                    client_config=client_config,
                )
            )
        try:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                yield client
        except Exception as exc:
            leaf = _leaf(exc) if isinstance(exc, BaseExceptionGroup) else exc
            if isinstance(leaf, MCPError) and leaf.code == INTERNAL_ERROR and refused:
                raise ClientError(f"the server refused the request: {refused[-1]}") from None
            raise


async def _oauth_error(response: httpx2.Response) -> str:
    """``: <error>: <error_description>`` of an error answer's JSON body (RFC 6750 §3.1 names
    the fields; the gateway sends them), or nothing."""
    import httpx2

    if "json" not in response.headers.get("content-type", ""):
        return ""
    try:
        body = json.loads(await response.aread())
    except (httpx2.HTTPError, ValueError):
        return ""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    description = body.get("error_description")
    text = f"{body['error']}: {description}" if isinstance(description, str) else body["error"]
    return f": {text[:500]}"


def unverified_claims(access_token: str) -> dict[str, object] | None:
    """The payload of a JWT access token, NOT verified (the client cannot and need not check
    it: the token is for the resource server), or None when the token is not a JWT."""
    try:
        payload = json.loads(extract_compact(access_token.encode()).payload)
    except (JoseError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


class TokenFacts(TypedDict):
    """What ``whoami`` shows (and ``--json`` prints, in this order) of stored tokens."""

    server: str
    resource: str
    issuer: str
    client_id: str
    grant_type: str
    token_type: str
    dpop_jkt: str | None
    scopes: list[str]
    scopes_confirmed: bool
    expires_at: str | None
    expires_in: int | None
    expired: bool
    refresh_token: bool
    unverified_claims: dict[str, object] | None


def token_facts(tokens: TokenSet, now: float) -> TokenFacts:
    """What ``whoami`` shows (and ``--json`` prints) of stored tokens."""
    claims = unverified_claims(tokens.access_token)
    expires_at = tokens.expires_at
    return {
        "server": tokens.server_url,
        "resource": tokens.resource,
        "issuer": tokens.issuer,
        "client_id": tokens.client_id,
        "grant_type": tokens.grant_type,
        "token_type": tokens.token_type,
        "dpop_jkt": tokens.dpop_jkt,
        "scopes": list(tokens.effective_scopes),
        "scopes_confirmed": tokens.granted_scopes is not None,
        "expires_at": None if expires_at is None else timestamp(expires_at),
        "expires_in": None if expires_at is None else round(expires_at - now),
        "expired": tokens.expired(now),
        "refresh_token": tokens.refresh_token is not None,
        "unverified_claims": None
        if claims is None
        else {name: claims[name] for name in SHOWN_CLAIMS if name in claims},
    }


def _print_facts(facts: TokenFacts) -> None:
    """``whoami``'s (and ``login``'s) lines: a label column, then the value, never wrapped."""
    scopes = " ".join(facts["scopes"]) or "(none)"
    if not facts["scopes_confirmed"]:
        scopes += "  (as requested: the token response did not list scopes)"
    rows: list[tuple[str, str]] = [
        ("server", facts["server"]),
        ("resource", facts["resource"]),
        ("issuer", facts["issuer"]),
        ("client_id", facts["client_id"]),
        ("grant type", facts["grant_type"]),
        ("token type", _token_type(facts)),
        ("scopes", scopes),
        ("expires", _expiry(facts["expires_in"], facts["expires_at"])),
        ("refresh token", "held" if facts["refresh_token"] else "none"),
    ]
    claims = facts["unverified_claims"]
    for name, value in (claims or {}).items():
        shown = timestamp(value) if name == "exp" and isinstance(value, int | float) else value
        rows.append((f"  {name}", shown if isinstance(shown, str) else json.dumps(shown)))
    if claims is not None:
        rows.insert(9, ("access token", "a JWT; its claims, unverified (not checked here):"))
    else:
        rows.append(("access token", "opaque (not a JWT)"))
    for label, value in rows:
        console.print(f"[bold]{label:<15}[/bold]{escape(value)}", highlight=False)


def _token_type(facts: TokenFacts) -> str:
    if facts["token_type"] == "DPoP":
        return f"DPoP, bound to key {facts['dpop_jkt']} (RFC 9449)"
    return facts["token_type"]


def _expiry(expires_in: int | None, expires_at: str | None) -> str:
    if expires_in is None or expires_at is None:
        return "no expiry given"
    if expires_in <= 0:
        return f"expired {duration(-expires_in)} ago ({expires_at})"
    return f"in {duration(expires_in)} ({expires_at})"


def _scopes(values: list[str]) -> list[str]:
    """``--scope`` values as scope tokens (RFC 6749 §3.3); bad ones exit with code 2."""
    found: list[str] = []
    for value in values:
        for item in value.split():
            if not SCOPE_TOKEN.fullmatch(item):
                err.print(
                    f"[red]error:[/red] --scope {escape(item)!r} is not a scope token "
                    "(RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)"
                )
                raise typer.Exit(2)
            found.append(item)
    if values and not found:
        err.print("[red]error:[/red] --scope is empty; name a scope such as mcp:tools")
        raise typer.Exit(2)
    return list(dict.fromkeys(found))


def _json_object(text: str) -> dict[str, object]:
    """The tool arguments: a JSON object, or a clear message and exit code 2."""
    example = 'e.g. \'{"text": "hello"}\''
    try:
        value = json.loads(text)
    except ValueError as exc:
        err.print(
            f"[red]error:[/red] the tool arguments are not valid JSON ({escape(str(exc))}): "
            f"{escape(repr(text))}; pass one JSON object, {escape(example)}"
        )
        raise typer.Exit(2) from None
    if not isinstance(value, dict):
        err.print(
            f"[red]error:[/red] the tool arguments must be a JSON object, not a JSON "
            f"{_json_type(value)}: {escape(repr(text))}; {escape(example)}"
        )
        raise typer.Exit(2)
    return value


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _content_text(item: object) -> str:
    """A content block of a tool result as text (MCP "Tool Result" content types)."""
    from mcp_types import EmbeddedResource, TextContent

    if isinstance(item, TextContent):
        return item.text
    if isinstance(item, EmbeddedResource):
        text = getattr(item.resource, "text", None)
        return text if isinstance(text, str) else f"[resource {item.resource.uri}]"
    kind = getattr(item, "type", "content")
    detail = getattr(item, "uri", None) or getattr(item, "mime_type", None) or ""
    return f"[{kind} {detail}]".replace(" ]", "]")


def _run(coro: Coroutine[object, None, T]) -> T:
    """Run a command's coroutine; client errors (also inside the MCP SDK's task groups), MCP
    errors and transport failures print a message and exit with code 1."""
    with client_errors():
        try:
            try:
                return asyncio.run(coro)
            except BaseExceptionGroup as group:
                raise _leaf(group) from None
        except ClientError:
            raise
        except Exception as exc:
            problem = _problem(exc)
            if problem is None:
                raise
            err.print(f"[red]error:[/red] {escape(problem)}")
            raise typer.Exit(1) from None


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that matters in a task group's group: the first that is not a
    cancellation, searched depth first."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = list(current.exceptions)
        else:
            leaves.append(current)
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0] if leaves else group


def _problem(exc: Exception) -> str | None:
    """What to tell the user about an MCP error or a failed request; None for anything else
    (a bug, which keeps its traceback)."""
    import httpx2
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, MCPError):
        return f"the MCP server answered with error {exc.code}: {exc.message}"
    if not isinstance(exc, httpx.HTTPError | httpx2.HTTPError | OSError):
        return None
    where = ""
    with contextlib.suppress(AttributeError, RuntimeError):  # no request attached
        where = f" {exc.request.method} {exc.request.url}"  # type: ignore[union-attr]
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx2.ConnectError | ConnectionError):
        return f"cannot reach the server{where}: {reason}; check the URL and that it is running"
    return f"the request{where} failed: {type(exc).__name__}: {reason}"


__all__ = [
    "TokenFacts",
    "call",
    "login",
    "logout",
    "mcp_client",
    "register",
    "token",
    "token_facts",
    "tools",
    "unverified_claims",
    "whoami",
]
