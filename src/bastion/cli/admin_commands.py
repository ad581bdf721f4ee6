"""Administration: ``bastion clients``, ``users``, ``access``, ``grants``, ``connections`` and
``registration-tokens``. Thin: parse, call one library function, print."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bastion.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    err,
    print_json,
    run,
    settings_or_exit,
)
from bastion.cli.display import print_table, when
from bastion.private_files import write_private

clients_app = typer.Typer(help="OAuth clients an operator registers.", no_args_is_help=True)
users_app = typer.Typer(
    help="Local users who sign in to the authorization server.", no_args_is_help=True
)
access_app = typer.Typer(
    help="Who may obtain tokens for which resource (access rules).", no_args_is_help=True
)
grants_app = typer.Typer(help="Live grants people gave to clients.", no_args_is_help=True)
connections_app = typer.Typer(
    help='People\'s connections to upstreams with their own OAuth (auth = "oauth"): the tokens '
    "bastion holds for them there (never shown).",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    help="Initial access tokens for dynamic client registration (RFC 7591).", no_args_is_help=True
)

Resources = Annotated[
    list[str] | None,
    typer.Option(
        "--resource",
        help="A resource a machine client may obtain tokens for: name, URI or * (repeat).",
    ),
]
Introspects = Annotated[
    list[str] | None,
    typer.Option(
        "--introspect",
        help="A resource whose tokens this resource server may introspect (RFC 7662): name, URI "
        "or * (repeat).",
    ),
]
Grants = Annotated[
    list[str] | None,
    typer.Option(
        "--grant",
        help="authorization_code, refresh_token, client_credentials, "
        "urn:ietf:params:oauth:grant-type:jwt-bearer (repeat).",
    ),
]

ClientIdArgument = Annotated[str, typer.Argument(help="The client's client_id.")]
UsernameArgument = Annotated[str, typer.Argument(help="The user's log-in name.")]
LabelArgument = Annotated[
    str, typer.Argument(help="The initial access token's label (see registration-tokens list).")
]


def register(app: typer.Typer) -> None:
    """Add the administration commands to ``app``."""
    app.add_typer(clients_app, name="clients")
    app.add_typer(users_app, name="users")
    app.add_typer(access_app, name="access")
    app.add_typer(grants_app, name="grants")
    app.add_typer(connections_app, name="connections")
    app.add_typer(tokens_app, name="registration-tokens")


# -- clients ----------------------------------------------------------------------------------


def _client_json(client: Any) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "origin": client.origin,
        "operator_approved": client.operator_approved,
        "introspects": list(client.introspects),
        **client.metadata.public_dict(),
    }


def _jwks(jwks_file: Path | None) -> dict[str, Any] | None:
    if jwks_file is None:
        return None
    try:
        found: dict[str, Any] = json.loads(jwks_file.read_text())
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] cannot read a JWK Set from {jwks_file}: {exc}")
        raise typer.Exit(1) from None
    return found


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Option(help="Name shown on the consent page.")],
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Allowed redirect URI (repeat).")
    ] = None,
    client_id: Annotated[str | None, typer.Option(help="Client id (default: random).")] = None,
    confidential: Annotated[
        bool, typer.Option("--confidential/--public", help="Issue a client secret.")
    ] = False,
    grant: Grants = None,
    scope: Annotated[
        str | None, typer.Option(help="Space-separated scopes it may ask for.")
    ] = None,
    resource: Resources = None,
    introspect: Introspects = None,
    auth_method: Annotated[
        str | None, typer.Option(help="Token endpoint auth method (default by kind).")
    ] = None,
    jwks_file: Annotated[
        Path | None,
        typer.Option(help="private_key_jwt: a file with the client's public JWK Set."),
    ] = None,
    jwks_uri: Annotated[
        str | None, typer.Option(help="private_key_jwt: where the client publishes its keys.")
    ] = None,
    dpop_bound: Annotated[
        bool,
        typer.Option(
            "--dpop-bound",
            help="The client always uses DPoP (RFC 9449 dpop_bound_access_tokens): token "
            "requests without a DPoP proof are refused.",
        ),
    ] = False,
    write_client_config: Annotated[
        Path | None,
        typer.Option(
            "--write-client-config",
            metavar="FILE",
            help="Also write FILE (0600): a client.toml with which bastion's own client is this "
            "machine client (bastion call --client-config FILE …, no browser).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Register a client. A secret is printed once and stored only as a hash.

    A machine client (client_credentials; the default for a confidential client without
    redirect URIs) gets tokens only for the --resource it is given, with --scope (default:
    every scope of those resources)."""
    from bastion.authserver.admin import add_client

    keyed = jwks_file is not None or jwks_uri is not None
    grants = grant or (
        ["client_credentials"]
        if (confidential or keyed) and not redirect_uri
        else ["authorization_code", "refresh_token"]
    )
    if write_client_config is not None:
        _can_write_client_config(write_client_config, confidential and not keyed, grants)
    settings = settings_or_exit(config)
    created = run(
        add_client(
            settings,
            client_id=client_id,
            name=name,
            redirect_uris=redirect_uri or [],
            confidential=confidential or keyed,
            grant_types=grants,
            scope=scope,
            auth_method=auth_method,
            resources=resource or [],
            jwks=_jwks(jwks_file),
            jwks_uri=jwks_uri,
            introspects=introspect or [],
            dpop_bound=dpop_bound,
        )
    )
    console.print(f"client_id      {created.client.client_id}")
    if created.secret:
        console.print(f"client_secret  {created.secret}")
        console.print("[yellow]Store the secret now: it is not shown again.[/yellow]")
    if "client_credentials" in grants and not resource:
        console.print(
            "[yellow]This machine client may not obtain tokens for any resource yet: give it "
            f"some with `bastion access allow RESOURCE client:{created.client.client_id}`, or "
            "add it again with --resource.[/yellow]"
        )
    if write_client_config is not None and created.secret:
        tokens = write_client_config.with_name(write_client_config.stem + "-tokens.json")
        write_private(
            write_client_config,
            machine_client_toml(
                name, settings.issuer, created.client.client_id, created.secret, tokens
            ),
        )
        console.print(
            f"wrote {write_client_config}: bastion's client is this machine client with "
            f"--client-config {write_client_config} (its tokens go to {tokens.name})"
        )


def _can_write_client_config(path: Path, secret: bool, grants: list[str]) -> None:
    """Refuse ``--write-client-config`` before anything is registered: it is for a machine
    client with a secret, and never replaces a file."""
    if not secret or "client_credentials" not in grants:
        err.print(
            "[red]error:[/red] --write-client-config is for a machine client with a secret: "
            "add --confidential, without --redirect-uri or --jwks-file/--jwks-uri"
        )
        raise typer.Exit(2)
    if path.exists():
        err.print(f"[red]error:[/red] {path} exists; give another file or remove it first")
        raise typer.Exit(2)


def machine_client_toml(name: str, issuer: str, client_id: str, secret: str, tokens: Path) -> str:
    """A client.toml for bastion's own client as one machine client (client_credentials), with
    a token file of its own, so that it never takes the place of a person's stored tokens."""
    lines = [
        f"# bastion's client as the machine client {json.dumps(name)} (client_credentials, no",
        "# browser), written by `bastion clients add`. It holds the client secret: keep it",
        "# private.",
        "use_keyring = false",
        f"storage_path = {json.dumps(str(tokens.resolve()))}",
        "",
        "[[pre_registered]]",
        f"issuer = {json.dumps(issuer)}",
        f"client_id = {json.dumps(client_id)}",
        f"client_secret = {json.dumps(secret)}",
        'grant_type = "client_credentials"',
    ]
    return "\n".join(lines) + "\n"


@clients_app.command("update")
def clients_update(
    client_id: ClientIdArgument,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--redirect-uri", help="Replace the redirect URIs (repeat)."),
    ] = None,
    grant: Grants = None,
    scope: Annotated[str | None, typer.Option(help='Replace the scopes ("" for none).')] = None,
    resource: Resources = None,
    introspect: Introspects = None,
    jwks_file: Annotated[
        Path | None,
        typer.Option(help="private_key_jwt: replace its keys by the JWK Set in this file."),
    ] = None,
    jwks_uri: Annotated[
        str | None, typer.Option(help="private_key_jwt: replace its keys by this jwks_uri.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Change a client an operator made. Changing its grants, scopes, resources or keys revokes
    every grant it holds, at every resource server."""
    from bastion.authserver.admin import update_client

    client, ended = run(
        update_client(
            settings_or_exit(config),
            client_id,
            name=name,
            redirect_uris=redirect_uri,
            grant_types=grant,
            scope=scope,
            resources=resource,
            introspects=introspect,
            jwks=_jwks(jwks_file),
            jwks_uri=jwks_uri,
        )
    )
    console.print(f"updated {client.client_id}")
    if ended:
        console.print(f"revoked {ended} grant(s) people had given it; they sign in again")


@clients_app.command("list")
def clients_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List registered clients."""
    from bastion.authserver.admin import list_clients

    found = run(list_clients(settings_or_exit(config)))
    if as_json:
        print_json([_client_json(c) for c in found])
        return
    table = Table("client_id", "name", "origin", "auth", "grants")
    for c in found:
        table.add_row(
            c.client_id,
            c.metadata.client_name or "",
            c.origin,
            c.metadata.token_endpoint_auth_method,
            " ".join(c.metadata.grant_types),
        )
    print_table(console, table)


@clients_app.command("show")
def clients_show(client_id: ClientIdArgument, config: ConfigOption = None) -> None:
    """Show one client's registration as JSON."""
    from bastion.authserver.admin import get_client

    c = run(get_client(settings_or_exit(config), client_id))
    console.print_json(json.dumps(_client_json(c)))


@clients_app.command("remove")
def clients_remove(client_id: ClientIdArgument, config: ConfigOption = None) -> None:
    """Delete a client, its access rules and every grant it holds."""
    from bastion.authserver.admin import remove_client

    run(remove_client(settings_or_exit(config), client_id))
    console.print(f"removed {client_id}")


@clients_app.command("rotate-secret")
def clients_rotate_secret(client_id: ClientIdArgument, config: ConfigOption = None) -> None:
    """Issue a new secret for a confidential client; the old one and every token it obtained
    stop working."""
    from bastion.authserver.admin import rotate_client_secret

    secret = run(rotate_client_secret(settings_or_exit(config), client_id))
    console.print(f"client_secret  {secret}")
    console.print("[yellow]Store the secret now: it is not shown again.[/yellow]")


# -- users ------------------------------------------------------------------------------------


async def _with_users(config: Path | None, work: Any) -> Any:
    from bastion.authserver.admin import database
    from bastion.identity.local import LocalUsers

    async with database(settings_or_exit(config)) as db:
        return await work(LocalUsers(db))


def _no_user(username: str) -> typer.Exit:
    err.print(f"[red]error:[/red] no user {username!r}; see `bastion users list`")
    return typer.Exit(1)


def _check_password(config: Path | None, password: str) -> None:
    """Refuse a password shorter than login.min_password_length (exit 2), before any change."""
    least = settings_or_exit(config).login.min_password_length
    if len(password) < least:
        err.print(
            f"[red]error:[/red] the password has {len(password)} characters; at least {least} "
            "are needed (login.min_password_length). A passphrase of a few words is easy to "
            "type; `bastion users add` generates one when the password is left empty."
        )
        raise typer.Exit(2)


def _confirm_password(password: str) -> None:
    """Ask for a typed password again; a different answer changes nothing (exit 2)."""
    if typer.prompt("Repeat the password", hide_input=True, default="", show_default=False) != (
        password
    ):
        err.print("[red]error:[/red] the two passwords differ; nothing was changed")
        raise typer.Exit(2)


@users_app.command("add")
def users_add(
    username: UsernameArgument,
    password: Annotated[
        str | None, typer.Option(help="Password (default: prompt; empty generates one).")
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="E-mail address (shown, never used to sign in).")
    ] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Group (repeat).")] = None,
    admin: Annotated[
        bool,
        typer.Option("--admin", help="An administrator of bastion itself (its web console)."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a local user."""
    from bastion.identity.passwords import generate_password

    generated = False
    if password is None:
        password = typer.prompt(
            "Password (empty to generate)", default="", hide_input=True, show_default=False
        )
        if password:
            _check_password(config, password)
            _confirm_password(password)
    elif password:
        _check_password(config, password)
    if not password:  # a generated one is random, not chosen: no length rule for it
        password, generated = generate_password(), True
    chosen = password
    run(
        _with_users(
            config,
            lambda users: users.add(username, chosen, email=email, groups=group, is_admin=admin),
        )
    )
    console.print(f"user {username} created")
    if generated:
        console.print(f"password  {password}  [yellow](shown once)[/yellow]")


@users_app.command("list")
def users_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List local users."""
    found = run(_with_users(config, lambda users: users.list()))
    if as_json:
        print_json(
            [
                {k: v for k, v in asdict(u).items() if k not in ("id", "password_hash")}
                | {"id": u.id, "has_password": u.password_hash is not None}
                for u in found
            ]
        )
        return
    table = Table("username", "email", "groups", "admin", "disabled")
    for u in found:
        table.add_row(
            u.username,
            u.email or "",
            " ".join(u.groups),
            "yes" if u.is_admin else "",
            "yes" if u.disabled else "",
        )
    print_table(console, table)


async def _remove_user(config: Path | None, username: str) -> Any:
    from bastion.authserver.admin import database
    from bastion.authserver.secret_key import cipher_for
    from bastion.identity.local import LocalUsers
    from bastion.vault.connections import remove_person

    settings = settings_or_exit(config)
    async with database(settings) as db:
        return await remove_person(settings, LocalUsers(db), cipher_for(settings), username)


@users_app.command("remove")
def users_remove(username: UsernameArgument, config: ConfigOption = None) -> None:
    """Delete a local user, their sessions, consents and upstream connections, and revoke every
    grant they gave (and their upstream tokens, where the upstream offers RFC 7009)."""
    removed = run(_remove_user(config, username))
    if removed is None:
        raise _no_user(username)
    console.print(f"removed {username}")
    for done in removed.connections:
        _print_disconnected(f"their connection to {done.upstream} was deleted", done)


@users_app.command("passwd")
def users_passwd(
    username: UsernameArgument,
    password: Annotated[str | None, typer.Option(help="New password (default: prompt).")] = None,
    config: ConfigOption = None,
) -> None:
    """Set a local user's password; their sessions end and every grant they gave is revoked."""
    if password is None:
        password = typer.prompt("New password", hide_input=True)
        _check_password(config, password)
        _confirm_password(password)
    else:
        _check_password(config, password)
    chosen = password
    if not run(_with_users(config, lambda users: users.set_password(username, chosen))):
        raise _no_user(username)
    console.print(f"password of {username} changed; their sessions and grants have ended")


@users_app.command("disable")
def users_disable(username: UsernameArgument, config: ConfigOption = None) -> None:
    """Stop a user from signing in; their sessions end and every grant they gave is revoked."""
    if run(_with_users(config, lambda users: users.set_disabled(username, True))) is None:
        raise _no_user(username)
    console.print(f"{username} is disabled; their sessions and grants have ended")


@users_app.command("enable")
def users_enable(username: UsernameArgument, config: ConfigOption = None) -> None:
    """Let a disabled user sign in again."""
    if run(_with_users(config, lambda users: users.set_disabled(username, False))) is None:
        raise _no_user(username)
    console.print(f"{username} is enabled")


@users_app.command("groups")
def users_groups(
    username: UsernameArgument,
    add: Annotated[list[str] | None, typer.Option("--add", help="Add a group (repeat).")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Remove a group (repeat).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Show a user's groups, or change them. Removing a group revokes the user's grants:
    tokens carry the groups they were issued with."""
    user = run(
        _with_users(
            config, lambda users: users.change_groups(username, add=add or [], remove=remove or [])
        )
    )
    if user is None:
        raise _no_user(username)
    console.print(f"{username}: {' '.join(user.groups) or '(no groups)'}")


# -- access rules -----------------------------------------------------------------------------


@access_app.command("list")
def access_list(
    resource: Annotated[str | None, typer.Argument(help="A resource's name or URI.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List the access rules (of one resource, rules on * included)."""
    from bastion.access.admin import list_rules

    settings = settings_or_exit(config)
    rules = run(list_rules(settings, resource))
    if as_json:
        print_json(
            [{"resource": r.resource, "who": r.who, "scopes": list(r.scopes)} for r in rules]
        )
        return
    table = Table("resource", "who", "scopes")
    for r in rules:
        table.add_row(r.resource, r.who, " ".join(r.scopes))
    print_table(console, table)
    restricted = {r.resource for r in rules if not r.is_machine}
    for r in settings.resources:
        if resource in (None, r.name, r.uri) and r.uri not in restricted and "*" not in restricted:
            console.print(
                f"{r.name or r.uri}: no rule about people, open to every signed-in person"
            )


@access_app.command("allow")
def access_allow(
    resource: Annotated[str, typer.Argument(help="A resource's name or URI, or * for all.")],
    who: Annotated[
        str,
        typer.Argument(
            help="*, user:NAME, group:NAME, domain:example.com, idp:PROVIDER or client:ID."
        ),
    ],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A scope it grants (repeat; default all).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Let WHO obtain tokens for RESOURCE (replacing the scopes of an existing rule). The first
    rule about people closes the resource to everyone it does not name."""
    from bastion.access.admin import allow

    rule, ended = run(allow(settings_or_exit(config), resource, who, scope or []))
    console.print(f"{rule.who} may obtain {' '.join(rule.scopes)} for {rule.resource}")
    if ended:
        console.print(f"revoked {ended} grant(s) the rules no longer allow")


@access_app.command("remove")
def access_remove(
    resource: Annotated[str, typer.Argument(help="A resource's name or URI, or *.")],
    who: Annotated[str, typer.Argument(help="The rule's who, as `bastion access list` shows.")],
    config: ConfigOption = None,
) -> None:
    """Delete a rule; grants it allowed are revoked at once."""
    from bastion.access.admin import remove

    ended = run(remove(settings_or_exit(config), resource, who))
    console.print(f"removed the rule for {who}")
    if ended:
        console.print(f"revoked {ended} grant(s) the rules no longer allow")


# -- grants -----------------------------------------------------------------------------------

UserOption = Annotated[str | None, typer.Option("--user", help="A user name.")]
ClientOption = Annotated[str | None, typer.Option("--client", help="A client id.")]


@grants_app.command("list")
def grants_list(
    user: UserOption = None,
    client: ClientOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List live grants (of a user, of a client, or all)."""
    from bastion.access.admin import list_grants

    found = run(list_grants(settings_or_exit(config), username=user, client_id=client))
    if as_json:
        print_json([asdict(g) for g in found])
        return
    table = Table("grant_id", "user", "client", "resource", "scope")
    for g in found:
        table.add_row(g.grant_id, g.username or g.subject, g.client_id, g.resource, g.scope)
    print_table(console, table)


@grants_app.command("revoke")
def grants_revoke(
    grant_id: Annotated[str | None, typer.Argument(help="One grant, as listed.")] = None,
    user: UserOption = None,
    client: ClientOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke one grant, or every grant of a user or of a client: their refresh and access
    tokens stop working at every resource server."""
    from bastion.access.admin import revoke_grants

    count = run(
        revoke_grants(settings_or_exit(config), grant_id=grant_id, username=user, client_id=client)
    )
    console.print(f"revoked {count} grant(s)")


# -- upstream connections (token vault) -------------------------------------------------------

UpstreamOption = Annotated[
    str | None, typer.Option("--upstream", help='An upstream\'s name (auth = "oauth").')
]


def _print_disconnected(what: str, done: Any) -> None:
    """A deleted connection, and what became of its tokens upstream (stderr when they are
    still valid there: the operator may have to revoke them at the upstream)."""
    if done.revoked_upstream:
        console.print(f"{what}; {done.message}")
    else:
        err.print(f"[yellow]warning:[/yellow] {what}, but {escape(done.message)}")


@connections_app.command("list")
def connections_list(
    user: UserOption = None,
    upstream: UpstreamOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List people's connections to upstreams (of a user, to an upstream, or all): who, where,
    the scope, since when, until when; never their tokens."""
    from bastion.vault.connections import connections_for_operator

    found = run(
        connections_for_operator(settings_or_exit(config), username=user, upstream=upstream)
    )
    if as_json:
        print_json([asdict(c) for c in found])
        return
    table = Table("user", "upstream", "issuer", "scope", "connected", "expires", "refreshed")
    for c in found:
        table.add_row(
            c.username or c.user_id,
            c.upstream,
            c.issuer,
            c.scope or "",
            when(c.created_at),
            when(c.expires_at, never="-"),
            when(c.refreshed_at, never="never"),
        )
    print_table(console, table)


@connections_app.command("revoke")
def connections_revoke(
    user: Annotated[str, typer.Option("--user", help="The person's user name.")],
    upstream: Annotated[str, typer.Option("--upstream", help="The upstream's name.")],
    config: ConfigOption = None,
) -> None:
    """Delete a person's connection to an upstream and revoke its tokens there (RFC 7009, where
    the upstream offers it). The connection is deleted even when the upstream cannot be reached
    (then said on stderr); the person connects again at their next call through the gateway."""
    from bastion.vault.connections import revoke_for_operator

    done = run(revoke_for_operator(settings_or_exit(config), user, upstream))
    _print_disconnected(f"deleted the connection of {user} to {upstream}", done)


# -- registration tokens ----------------------------------------------------------------------


def _machine_rule(value: str) -> tuple[str, list[str]]:
    resource, _, scopes = value.partition("=")
    return resource, [s for s in scopes.replace(",", " ").split() if s]


@tokens_app.command("add")
def tokens_add(
    label: Annotated[str, typer.Option(help="Who the token is for (to list and remove it).")],
    machine: Annotated[
        list[str] | None,
        typer.Option(
            "--machine",
            help="Let clients registered with it act alone (client_credentials) for "
            "RESOURCE[=SCOPE,SCOPE] (repeat); without it they can only ask people to sign in.",
        ),
    ] = None,
    ttl: Annotated[int | None, typer.Option(help="Seconds until it expires.")] = None,
    uses: Annotated[int | None, typer.Option(help="Registrations it allows.")] = None,
    config: ConfigOption = None,
) -> None:
    """Make an initial access token for dynamic client registration; printed once."""
    from bastion.authserver.admin import add_registration_token

    rules = [_machine_rule(m) for m in machine or []]
    token = run(
        add_registration_token(
            settings_or_exit(config), label=label, machine=rules, ttl=ttl, uses=uses
        )
    )
    console.print(f"token  {token}")
    console.print(
        "[yellow]Shown once. Clients send it as `Authorization: Bearer ...` to /register.[/yellow]"
    )


@tokens_app.command("list")
def tokens_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List the initial access tokens (never the tokens themselves)."""
    from bastion.authserver.admin import list_registration_tokens

    found = run(list_registration_tokens(settings_or_exit(config)))
    rows = [
        {
            "label": t.label,
            "machine": [{"resource": r, "scopes": list(s)} for r, s in t.machine_rules],
            "expires_at": t.expires_at,
            "uses_left": t.uses_left,
        }
        for t in found
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("label", "machine clients for", "expires_at", "uses_left")
    for row in rows:
        machine = ", ".join(f"{m['resource']} ({' '.join(m['scopes'])})" for m in row["machine"])
        table.add_row(
            row["label"],
            machine or "-",
            when(row["expires_at"], never="never"),
            str(row["uses_left"] if row["uses_left"] is not None else ""),
        )
    print_table(console, table)


@tokens_app.command("remove")
def tokens_remove(label: LabelArgument, config: ConfigOption = None) -> None:
    """Delete the initial access tokens with this label (clients made with them stay)."""
    from bastion.authserver.admin import remove_registration_token

    run(remove_registration_token(settings_or_exit(config), label))
    console.print(f"removed {label}")


__all__ = ["register"]
