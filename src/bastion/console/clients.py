"""``/admin/clients``: every client of this server, and what an administrator does to them.

Clients come three ways: added by an operator (here or ``bastion clients add``), registered by
themselves (RFC 7591), or known by their metadata document URL (CIMD, cached when fetched). Only
operator-made clients are edited here; the others manage their registration themselves, and a
self-registered one may be removed. A secret is shown once, on the answer to the form that made
it, and is stored only as a hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.access.rules import EVERY, AccessRule
from bastion.authserver import admin
from bastion.console.guard import Visit, console_page, quoted, refused
from bastion.console.times import when
from bastion.oauth.client_metadata import ClientMetadata
from bastion.oauth.errors import OAuthError
from bastion.store import access as rule_rows
from bastion.store import clients as client_rows
from bastion.store.clients import Client
from bastion.store.schema import token_families

NOTICES = {
    "updated": "The client was changed.",
    "updated_revoked": "The client was changed. The grants and tokens it held were revoked: "
    "people sign in again, a machine client obtains new tokens.",
    "unchanged": "Nothing was changed.",
    "removed": "The client was removed: its tokens no longer work.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}

ORIGINS = {
    "preregistered": "added by an operator",
    "dynamic": "registered itself (RFC 7591)",
    "metadata_document": "metadata document (CIMD)",
}

APP_GRANTS = ["authorization_code", "refresh_token"]
MACHINE_GRANTS = ["client_credentials"]
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


def kind_of(client: Client) -> str:
    """``machine`` (client_credentials), else ``web`` or ``native``."""
    if "client_credentials" in client.metadata.grant_types:
        return "machine"
    return client.metadata.application_type


@dataclass(frozen=True)
class Listed:
    """A client as a row of the list."""

    client: Client
    path: str
    stored: bool

    @property
    def kind(self) -> str:
        """Its kind (web, native, machine)."""
        return kind_of(self.client)

    @property
    def origin(self) -> str:
        """Where it came from, in words."""
        return ORIGINS.get(self.client.origin, self.client.origin)


def _path(client_id: str) -> str:
    return f"/admin/clients/{quoted(client_id)}"


def _cimd(doc: client_rows.CachedDocument) -> Client:
    """The client a cached metadata document describes (its name only, if it is unfit)."""
    try:
        meta = ClientMetadata.model_validate({"token_endpoint_auth_method": "none", **doc.document})
    except ValidationError:
        name = doc.document.get("client_name")
        meta = ClientMetadata(client_name=str(name)[:200] if name else None)
    return Client(doc.url, "metadata_document", meta, created_at=doc.fetched_at)


async def _every_client(visit: Visit) -> list[Listed]:
    async with visit.bastion.db.connect() as conn:
        stored = await client_rows.list_all(conn)
        documents = await client_rows.list_documents(conn)
    known = {c.client_id for c in stored}
    listed = [Listed(c, _path(c.client_id), True) for c in stored]
    listed += [Listed(_cimd(d), _path(d.url), False) for d in documents if d.url not in known]
    return listed


@console_page()
async def index(visit: Visit) -> Response:
    """GET /admin/clients: every client, searched by name or client id (``?q=``)."""
    q = visit.request.query_params.get("q", "").strip()[:200]
    listed = await _every_client(visit)
    if q:
        wanted = q.casefold()
        listed = [
            c
            for c in listed
            if wanted in c.client.client_id.casefold() or wanted in c.client.name.casefold()
        ]
    return visit.page(
        "clients.html",
        section="/admin/clients",
        clients=listed,
        q=q,
        when=when,
        notice=visit.notice(NOTICES),
    )


# -- adding ------------------------------------------------------------------------------------


class Refusal(Exception):
    """Form input that cannot be used: the message for the page and the status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _jwks(visit: Visit) -> tuple[dict[str, object] | None, str | None]:
    """The JWK Set (JSON) or jwks_uri the form gives, at most one of them."""
    text, uri = visit.field("jwks"), visit.field("jwks_uri")
    if text and uri:
        raise Refusal("Give the client's keys either as a JWK Set or as a jwks_uri, not both.")
    if not text:
        return None, uri or None
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise Refusal(f"The JWK Set is not JSON: {exc}.") from None
    if not isinstance(found, dict) or not isinstance(found.get("keys"), list):
        raise Refusal('The JWK Set must be a JSON object with a "keys" array.')
    return found, None


def _form_values(visit: Visit) -> dict[str, object]:
    """What was entered, to show the form again."""
    names = ("name", "client_id", "kind", "access", "auth", "redirect_uris", "scope")
    values: dict[str, object] = {n: visit.field(n) for n in names}
    values |= {"jwks": visit.field("jwks"), "jwks_uri": visit.field("jwks_uri")}
    values |= {"resources": visit.fields("resources"), "introspects": visit.fields("introspects")}
    return values


def _resource_choices(visit: Visit) -> list[tuple[str, str]]:
    """The configured resources as (URI, label) checkboxes, every one of them first."""
    choices = [(EVERY, "Every resource (*)")]
    return choices + [
        (r.uri, f"{r.name} ({r.uri})" if r.name else r.uri) for r in visit.settings.resources
    ]


def _new_form(visit: Visit, values: dict[str, object], error: str | None, status: int) -> Response:
    return visit.page(
        "clients_new.html",
        status=status,
        section="/admin/clients",
        values=values,
        error=error,
        choices=_resource_choices(visit),
    )


@console_page()
async def new(visit: Visit) -> Response:
    """GET /admin/clients/new: the form to add a client."""
    values: dict[str, object] = {"kind": "app", "access": "confidential", "auth": "secret"}
    return _new_form(visit, values, None, 200)


async def _add(visit: Visit) -> admin.NewClient:
    name = visit.field("name")
    if not name:
        raise Refusal("Give the client a name: people see it when they are asked to consent.")
    client_id = visit.field("client_id") or None
    if client_id == "new":  # /admin/clients/new is the page that adds clients
        raise Refusal("The client id new is kept for the console's own page: choose another.")
    if client_id is not None:
        async with visit.bastion.db.connect() as conn:
            if await client_rows.get(conn, client_id) is not None:
                raise Refusal(f"A client with id {client_id!r} already exists.", 409)
    machine = visit.field("kind") == "machine"
    redirect_uris = _lines(visit.field("redirect_uris"))
    resources = visit.fields("resources")
    if machine and redirect_uris:
        raise Refusal("A machine client signs no one in: leave its redirect URIs empty.")
    if not machine and not redirect_uris:
        raise Refusal(
            "An application a person signs in to needs at least one redirect URI (one a line)."
        )
    if not machine and resources:
        raise Refusal(
            "Resources are chosen for machine clients; an application reaches what the person "
            "who signs in may reach."
        )
    confidential = machine or visit.field("access") != "public"
    key_jwt = confidential and visit.field("auth") == "private_key_jwt"
    jwks, jwks_uri = _jwks(visit)
    if key_jwt and jwks is None and jwks_uri is None:
        raise Refusal("private_key_jwt needs the client's public keys: a JWK Set or a jwks_uri.")
    if not key_jwt and (jwks is not None or jwks_uri is not None):
        raise Refusal(
            "Keys (JWK Set, jwks_uri) are for private_key_jwt: choose it, or leave them empty."
        )
    method = "private_key_jwt" if key_jwt else ("client_secret_basic" if confidential else "none")
    return await admin.add_client(
        visit.settings,
        client_id=client_id,
        name=name,
        redirect_uris=redirect_uris,
        confidential=confidential,
        grant_types=MACHINE_GRANTS if machine else APP_GRANTS,
        scope=" ".join(visit.field("scope").split()) or None,
        auth_method=method,
        resources=resources,
        jwks=jwks,
        jwks_uri=jwks_uri,
        introspects=visit.fields("introspects"),
        db=visit.bastion.db,
    )


def _refusal(exc: Exception) -> Refusal:
    """The page's message for what a service function refused."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, OAuthError):
        return Refusal(exc.description)
    return Refusal(str(exc))


@console_page()
async def add(visit: Visit) -> Response:
    """POST /admin/clients: add a client; its secret is shown on this answer, once."""
    try:
        made = await _add(visit)
    except (Refusal, admin.AdminError, OAuthError) as exc:
        refusal = _refusal(exc)
        return _new_form(visit, _form_values(visit), refusal.message, refusal.status)
    return _secret_page(visit, made.client, made.secret, added=True)


def _secret_page(visit: Visit, client: Client, secret: str | None, *, added: bool) -> Response:
    return visit.page(
        "clients_secret.html",
        section="/admin/clients",
        client=client,
        kind=kind_of(client),
        secret=secret,
        added=added,
        path=_path(client.client_id),
        no_resources=added and kind_of(client) == "machine" and not visit.fields("resources"),
    )


# -- one client --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A client and what the server knows around it."""

    client: Client
    stored: bool
    rules: list[AccessRule]
    live_grants: int


async def _found(visit: Visit) -> Found | Response:
    client_id = visit.request.path_params["client_id"]
    now = visit.bastion.clock()
    async with visit.bastion.db.connect() as conn:
        client = await client_rows.get(conn, client_id)
        stored = client is not None
        if client is None:
            doc = await client_rows.get_document(conn, client_id)
            client = _cimd(doc) if doc is not None else None
        if client is None:
            return refused(
                visit.request,
                visit.bastion,
                "No such client",
                f"No client with id {client_id[:200]!r} is known here. See the list of clients.",
                404,
            )
        who = f"client:{client_id}"
        rules = [r for r in await rule_rows.list_rules(conn) if r.who == who]
        live = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(token_families)
            .where(
                token_families.c.client_id == client_id,
                token_families.c.revoked_at.is_(None),
                token_families.c.expires_at > now,
            )
        )
    return Found(client, stored, rules, int(live or 0))


def _keys(client: Client) -> list[dict[str, str]]:
    """The public keys of its JWK Set: kid, kty, alg, use."""
    keys = (client.metadata.jwks or {}).get("keys")
    if not isinstance(keys, list):
        return []
    return [
        {f: str(k.get(f, "—")) for f in ("kid", "kty", "alg", "use")}
        for k in keys
        if isinstance(k, dict)
    ]


def _detail(
    visit: Visit,
    found: Found,
    *,
    error: str | None = None,
    status: int = 200,
    values: dict[str, object] | None = None,
) -> Response:
    client = found.client
    meta = client.metadata
    current: dict[str, object] = {
        "name": meta.client_name or "",
        "redirect_uris": "\n".join(meta.redirect_uris),
        "scope": meta.scope or "",
        "resources": [r.resource for r in found.rules],
        "introspects": list(client.introspects),
        "jwks": "",
        "jwks_uri": "",
    }
    return visit.page(
        "clients_detail.html",
        status=status,
        section="/admin/clients",
        client=client,
        found=found,
        kind=kind_of(client),
        origin=ORIGINS.get(client.origin, client.origin),
        path=_path(client.client_id),
        public_keys=_keys(client),
        metadata=json.dumps(meta.public_dict(), indent=2, sort_keys=True),
        uses_secret=found.stored and meta.token_endpoint_auth_method in SECRET_METHODS,
        editable=found.stored and client.operator_approved,
        values=values or current,
        choices=_resource_choices(visit),
        when=when,
        error=error,
        notice=visit.notice(NOTICES),
    )


@console_page()
async def detail(visit: Visit) -> Response:
    """GET /admin/clients/{client_id}: everything known about one client."""
    found = await _found(visit)
    if isinstance(found, Response):
        return found
    return _detail(visit, found)


def _changes(visit: Visit, found: Found) -> dict[str, object]:
    """The update_client arguments for what the edit form changed (nothing else: an unchanged
    field must not revoke grants)."""
    client, meta = found.client, found.client.metadata
    changes: dict[str, object] = {}
    name = visit.field("name")
    if not name:
        raise Refusal("Give the client a name.")
    if name != (meta.client_name or ""):
        changes["name"] = name
    if "authorization_code" in meta.grant_types:
        uris = _lines(visit.field("redirect_uris"))
        if not uris:
            raise Refusal("An application a person signs in to needs at least one redirect URI.")
        if uris != meta.redirect_uris:
            changes["redirect_uris"] = uris
    scope = " ".join(visit.field("scope").split())
    if scope != (meta.scope or ""):
        changes["scope"] = scope
    if kind_of(client) == "machine":
        resources = visit.fields("resources")
        before = [r.resource for r in found.rules]
        if "scope" in changes or sorted(resources) != sorted(before):
            changes["resources"] = resources  # the rules carry the scopes
    if not meta.is_public:
        readers = visit.fields("introspects")
        if sorted(readers) != sorted(client.introspects):
            changes["introspects"] = readers
    if meta.token_endpoint_auth_method == "private_key_jwt":
        jwks, jwks_uri = _jwks(visit)
        if jwks is not None:
            changes["jwks"] = jwks
        elif jwks_uri is not None and jwks_uri != meta.jwks_uri:
            changes["jwks_uri"] = jwks_uri
    return changes


@console_page()
async def edit(visit: Visit) -> Response:
    """POST /admin/clients/{client_id}/edit: change an operator-made client."""
    found = await _found(visit)
    if isinstance(found, Response):
        return found
    path = _path(found.client.client_id)
    if not (found.stored and found.client.operator_approved):
        return _detail(
            visit,
            found,
            error="This client registered itself: it manages its registration itself "
            "(RFC 7592). It can only be removed here.",
            status=409,
        )
    try:
        changes = _changes(visit, found)
        if not changes:
            return visit.done(path, "unchanged")
        _, ended = await admin.update_client(
            visit.settings,
            found.client.client_id,
            db=visit.bastion.db,
            **changes,  # type: ignore[arg-type]
        )
    except (Refusal, admin.AdminError, OAuthError) as exc:
        refusal = _refusal(exc)
        values = _form_values(visit)
        return _detail(visit, found, error=refusal.message, status=refusal.status, values=values)
    revoking = {"scope", "resources", "jwks", "jwks_uri"}
    return visit.done(path, "updated_revoked" if ended or revoking & set(changes) else "updated")


@console_page(fresh=True)
async def rotate_secret(visit: Visit) -> Response:
    """POST /admin/clients/{client_id}/rotate-secret: a new secret, shown once; the old one
    and the tokens obtained with it stop working."""
    found = await _found(visit)
    if isinstance(found, Response):
        return found
    try:
        secret = await admin.rotate_client_secret(
            visit.settings, found.client.client_id, db=visit.bastion.db
        )
    except admin.AdminError:
        return _detail(
            visit, found, error="This client does not authenticate with a secret.", status=400
        )
    return _secret_page(visit, found.client, secret, added=False)


@console_page(fresh=True)
async def remove(visit: Visit) -> Response:
    """POST /admin/clients/{client_id}/remove: delete the client, its access rules and every
    grant it holds."""
    found = await _found(visit)
    if isinstance(found, Response):
        return found
    if not found.stored:
        return _detail(
            visit,
            found,
            error="A metadata-document client is not stored here: it cannot be removed. "
            "Its grants can be revoked on the Grants page.",
            status=409,
        )
    await admin.remove_client(visit.settings, found.client.client_id, db=visit.bastion.db)
    return visit.done("/admin/clients", "removed")


ROUTES: list[BaseRoute] = [
    Route("/admin/clients", index, methods=["GET"]),
    Route("/admin/clients", add, methods=["POST"]),
    Route("/admin/clients/new", new, methods=["GET"]),
    Route("/admin/clients/{client_id:path}/edit", edit, methods=["POST"]),
    Route("/admin/clients/{client_id:path}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/admin/clients/{client_id:path}/remove", remove, methods=["POST"]),
    Route("/admin/clients/{client_id:path}", detail, methods=["GET"]),
]

__all__ = [
    "NOTICES",
    "ORIGINS",
    "ROUTES",
    "Found",
    "Listed",
    "Refusal",
    "add",
    "detail",
    "edit",
    "index",
    "kind_of",
    "new",
    "remove",
    "rotate_secret",
]
