"""The database tables (SQLAlchemy Core). Times are integer Unix seconds (UTC).

Secrets are never stored in the clear: client secrets, authorization codes, refresh tokens,
registration access tokens and session ids are stored as SHA-256 (high-entropy values) or argon2
(client secrets shown to people) hashes; signing keys are encrypted.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(255), primary_key=True),
    # preregistered | dynamic | unknown_loopback
    sa.Column("origin", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.String(255), nullable=True),
    sa.Column("secret_expires_at", sa.BigInteger, nullable=False, default=0),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("registration_token_hash", sa.String(64), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("first_used_at", sa.BigInteger, nullable=True),
    # Made by an operator (`bastion clients add`, or DCR with an initial access token that allows
    # machine clients): only such clients may use grants without a person (client_credentials).
    sa.Column("operator_approved", sa.Boolean, nullable=False, server_default=sa.false()),
    # The grant id of the client's own (client_credentials) tokens; replaced when the client or
    # its access changes, which revokes every token issued before.
    sa.Column("grant_id", sa.String(64), nullable=True),
    # The resources (URIs, or "*") whose access tokens the client may introspect (RFC 7662):
    # resource servers an operator registered. Others learn nothing about other clients' tokens.
    sa.Column("introspects", sa.JSON, nullable=True),
)

cimd_documents = sa.Table(
    "cimd_documents",
    metadata,
    sa.Column("url", sa.String(2048), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("fetched_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(255), nullable=True),
    sa.Column("last_modified", sa.String(64), nullable=True),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(255), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("groups", sa.JSON, nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE")),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# Failed log-ins per (client address, user name), to slow down password guessing.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.BigInteger, nullable=False),
    sa.Column("window_start", sa.BigInteger, nullable=False),
)

# A pending authorization request, between /authorize and the redirect back to the client. It
# lives in the database so that any process can continue the log-in and consent steps.
authorization_requests = sa.Table(
    "authorization_requests",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("redirect_uri", sa.String(2048), nullable=False),
    # Whether the client sent redirect_uri; if so the token request must repeat it (OAuth 2.1
    # §4.1.3).
    sa.Column("redirect_uri_sent", sa.Boolean, nullable=False),
    sa.Column("scope", sa.String(2048), nullable=False),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("state", sa.String(2048), nullable=True),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
    # Digest of the address group the request came from: pending requests per address are
    # limited (quotas.pending_authorizations_per_address).
    sa.Column("requester", sa.String(64), nullable=True, index=True),
    # RFC 9449 §10: the DPoP key thumbprint the code will be bound to (dpop_jkt), if sent.
    sa.Column("dpop_jkt", sa.String(64), nullable=True),
)

# Events counted against a quota in a sliding window (registrations per hour, metadata
# document fetches per minute): one row each, by kind and requester (a digest of the address).
quota_events = sa.Table(
    "quota_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("requester", sa.String(64), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Index("ix_quota_events_kind_at", "kind", "at"),
    sa.Index("ix_quota_events_kind_requester_at", "kind", "requester", "at"),
    sqlite_autoincrement=True,
)

authorization_codes = sa.Table(
    "authorization_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("redirect_uri", sa.String(2048), nullable=False),
    # Whether the client sent redirect_uri; if so the token request must repeat it (OAuth 2.1
    # §4.1.3).
    sa.Column("redirect_uri_sent", sa.Boolean, nullable=False),
    sa.Column("scope", sa.String(2048), nullable=False),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("family_id", sa.String(64), nullable=False),
    sa.Column("auth_time", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("consumed_at", sa.BigInteger, nullable=True),
    sa.Column("dpop_jkt", sa.String(64), nullable=True),
)

# A refresh family: every token issued from one authorization code. Reuse of a rotated refresh
# token, or a replayed code, revokes the whole family (RFC 9700 §4.14.2).
token_families = sa.Table(
    "token_families",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(2048), nullable=False, index=True),
    sa.Column("subject", sa.String(255), nullable=False, index=True),
    sa.Column("scope", sa.String(2048), nullable=False),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_reason", sa.String(64), nullable=True),
    # RFC 9449 §5: a public client's refresh tokens are bound to this DPoP key.
    sa.Column("dpop_jkt", sa.String(64), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "family_id",
        sa.String(64),
        sa.ForeignKey("token_families.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("issued_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
    # The token that replaced this one, encrypted, so that the same client presenting this one
    # again within tokens.refresh_reuse_window gets that same successor (an answer lost to a
    # crash or a dropped connection, two processes of one client refreshing together).
    sa.Column("successor_encrypted", sa.Text, nullable=True),
)

# The access tokens issued in a family, so that revoking the family (code replay, refresh reuse)
# also marks them revoked for introspection.
family_access_tokens = sa.Table(
    "family_access_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column(
        "family_id",
        sa.String(64),
        sa.ForeignKey("token_families.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# Access tokens are JWTs; revoking one (or its family) records its jti until it expires so that
# introspection answers active=false.
revoked_access_tokens = sa.Table(
    "revoked_access_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# Who may obtain tokens for which resource and scopes (bastion.access): a selector (``*``,
# ``user:``, ``group:``, ``domain:``, ``idp:``, ``client:``) and the scopes it grants; resource
# ``*`` applies to every resource.
access_rules = sa.Table(
    "access_rules",
    metadata,
    sa.Column("resource", sa.String(2048), primary_key=True),
    sa.Column("who", sa.String(512), primary_key=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Initial access tokens (RFC 7591 §3) an operator made with `bastion registration-tokens add`
# (by hash). One that lists machine rules lets a client register for client_credentials; the
# client then gets those rules (resources and scopes), whatever its metadata asks for.
registration_tokens = sa.Table(
    "registration_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("label", sa.String(200), nullable=False),
    # [{"resource": uri-or-*, "scopes": [...]}]; empty: people-only clients
    sa.Column("machine_rules", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("uses_left", sa.Integer, nullable=True),
)

# Revoked grants (refresh families, a machine client's grant id) and single access tokens
# (jti), kept until every access token they cover has expired. Every process loads them and
# follows new rows (PostgreSQL NOTIFY, polling on SQLite), so resource servers refuse revoked
# tokens without asking the authorization server (bastion.resource.revocation).
revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # grant | token
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
    sa.Column("reason", sa.String(255), nullable=True),
    # Ids are never reused (processes follow the table by id), even after old rows are purged.
    sqlite_autoincrement=True,
)

# jti values of private_key_jwt client assertions already accepted (RFC 7523 §3 replay check).
used_assertions = sa.Table(
    "used_assertions",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

consents = sa.Table(
    "consents",
    metadata,
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("client_id", sa.String(2048), primary_key=True),
    sa.Column("resource", sa.String(2048), primary_key=True),
    sa.Column("scope", sa.String(2048), nullable=False),
    sa.Column("granted_at", sa.BigInteger, nullable=False),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("public_jwk", sa.JSON, nullable=False),
    sa.Column("private_jwk_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # The key signs from activates_at until a newer key activates; it stays published in the JWKS
    # until retire_at, so verifiers that cached the JWKS never see a gap.
    sa.Column("activates_at", sa.BigInteger, nullable=False),
    sa.Column("retire_at", sa.BigInteger, nullable=True),
)

# -- MCP registry (bastion.registry) --------------------------------------------------------------
# Registry times are Unix *milliseconds* (UTC): clients synchronise with `updated_since`, an RFC
# 3339 time, and whole seconds would hide changes made within the second of the last sync.

# One row per server name: the row a publication locks (SELECT ... FOR UPDATE) so that concurrent
# publications of one server choose its latest version one after the other.
registry_servers = sa.Table(
    "registry_servers",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# One row per published version of a server (server.json as published, status, visibility).
registry_entries = sa.Table(
    "registry_entries",
    metadata,
    sa.Column(
        "name",
        sa.String(200),
        sa.ForeignKey("registry_servers.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("description", sa.String(100), nullable=False),
    sa.Column("server", sa.JSON, nullable=False),
    # active | deprecated | deleted
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_message", sa.String(500), nullable=True),
    sa.Column("status_changed_at", sa.BigInteger, nullable=False),
    sa.Column("published_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False, index=True),
    sa.Column("is_latest", sa.Boolean, nullable=False),
    sa.Column("owner_subject", sa.String(255), nullable=False),
    sa.Column("owner_client_id", sa.String(2048), nullable=True),
    # The groups (audiences) that may see the entry, also in registry_entry_groups for filtering;
    # empty: every reader.
    sa.Column("groups", sa.JSON, nullable=False),
    # Unapproved entries are seen only by their owner and registry admins.
    sa.Column("approved", sa.Boolean, nullable=False),
    sa.CheckConstraint("status IN ('active', 'deprecated', 'deleted')", name="status"),
)

registry_entry_groups = sa.Table(
    "registry_entry_groups",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("group_name", sa.String(255), primary_key=True),
    sa.ForeignKeyConstraint(
        ["name", "version"],
        ["registry_entries.name", "registry_entries.version"],
        ondelete="CASCADE",
    ),
)

# One row (id 1): a counter that triggers (migration 0012) move with every insert, update or
# delete of registry_entries or registry_entry_groups; caches of registry answers compare it.
registry_generation = sa.Table(
    "registry_generation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# Every registry request: who (sub, client_id), which entry, what, and how it went.
registry_audit = sa.Table(
    "registry_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False, index=True),
    sa.Column("subject", sa.String(255), nullable=True, index=True),
    sa.Column("client_id", sa.String(2048), nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("server_name", sa.String(200), nullable=True),
    sa.Column("version", sa.String(255), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("result", sa.String(64), nullable=False),
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
)

# One row per configured mirror (registry.mirrors): the high-water mark of its last complete
# pass (the upstream's largest updatedAt seen, Unix ms), the pass under way when a run stopped at
# its page limit, and the lease that lets one process at a time sync it.
registry_mirrors = sa.Table(
    "registry_mirrors",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("high_water", sa.BigInteger, nullable=True),
    sa.Column("pass_cursor", sa.String(1024), nullable=True),
    sa.Column("pass_since", sa.BigInteger, nullable=True),
    sa.Column("pass_high", sa.BigInteger, nullable=True),
    # A digest of the url and filters the mark was reached with: when they change, the next run
    # reads the whole listing again (servers newly allowed may be older than the mark).
    sa.Column("filters", sa.String(64), nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.BigInteger, nullable=True),
    sa.Column("last_run_at", sa.BigInteger, nullable=True),
    sa.Column("last_success_at", sa.BigInteger, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
)

# Provenance of a mirrored version: which mirror wrote it, the upstream updatedAt it came with,
# and a digest of what the mirror wrote (server.json, status, groups, approval, owner): a version
# whose digest no longer matches was changed locally and is left alone.
registry_mirrored = sa.Table(
    "registry_mirrored",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("mirror", sa.String(63), nullable=False, index=True),
    sa.Column("upstream_updated_at", sa.BigInteger, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.ForeignKeyConstraint(
        ["name", "version"],
        ["registry_entries.name", "registry_entries.version"],
        ondelete="CASCADE",
    ),
)

# An account at an upstream identity provider, linked to a local user by the provider's issuer
# and subject (never by e-mail). The upstream refresh token, when kept, is encrypted.
linked_accounts = sa.Table(
    "linked_accounts",
    metadata,
    sa.Column("issuer", sa.String(1024), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column(
        "user_id",
        sa.String(64),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("refresh_token_encrypted", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_login_at", sa.BigInteger, nullable=False),
)

# A sign-in sent to an upstream identity provider, until its callback: the state (by hash), the
# browser it is bound to (hash of a cookie), the pending authorization request it continues,
# the nonce and the encrypted PKCE verifier. Consumed once, by one atomic delete.
federation_states = sa.Table(
    "federation_states",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    # The pending authorization request the sign-in continues, or (a console sign-in) None
    # and the console page to go back to.
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("return_to", sa.String(1024), nullable=True),
    # A console sign-in again before a destructive action: the provider was asked to
    # authenticate the person anew, and the ID token's auth_time is checked.
    sa.Column("reauthenticate", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("nonce", sa.String(128), nullable=False),
    sa.Column("verifier_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

# The authorization server's audit trail (bastion.store.auth_audit): times in milliseconds; ids
# of users, clients and grants, never a token, code, secret or password. Few indexes: every
# index is written by the token endpoint's records (a type filter reads within the others).
auth_audit = sa.Table(
    "auth_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False, index=True),
    sa.Column("type", sa.String(48), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(255), nullable=True, index=True),
    sa.Column("client_id", sa.String(2048), nullable=True, index=True),
    sa.Column("method", sa.String(32), nullable=True),
    sa.Column("provider", sa.String(64), nullable=True),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("grant_id", sa.String(64), nullable=True),
    sa.Column("actor", sa.String(255), nullable=True),
    sa.Column("target_kind", sa.String(32), nullable=True),
    sa.Column("target_id", sa.String(2048), nullable=True),
    sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    # Only the records that have a target (operators' changes, registrations): the token
    # endpoint's records add no entry to it.
    sa.Index(
        "ix_auth_audit_target_id",
        "target_id",
        postgresql_where=sa.text("target_id IS NOT NULL"),
        sqlite_where=sa.text("target_id IS NOT NULL"),
    ),
)

# The token vault (bastion.vault): each person's tokens at upstreams with their own OAuth, one
# row per (person, upstream), both tokens encrypted (bastion.store.sealed). Removing the person
# removes them; bastion revokes them upstream first (bastion.vault.connections).
upstream_connections = sa.Table(
    "upstream_connections",
    metadata,
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("upstream", sa.String(64), primary_key=True),
    # The upstream's authorization server and bastion's client id there, when connected: a
    # connection made with another server or client is not used.
    sa.Column("issuer", sa.String(1024), nullable=False),
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("access_token_encrypted", sa.Text, nullable=False),
    sa.Column("refresh_token_encrypted", sa.Text, nullable=True),
    sa.Column("scope", sa.Text, nullable=True),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("refreshed_at", sa.BigInteger, nullable=True),
    # One refresh at a time across processes: a process takes the lease (until this time) in one
    # conditional update; the others wait for its result.
    sa.Column("refresh_lease_until", sa.BigInteger, nullable=True),
)

# bastion's own registration at an upstream's authorization server when it was made by RFC 7591
# (pre-registered and CIMD clients need no row): every gateway process uses the same one.
upstream_clients = sa.Table(
    "upstream_clients",
    metadata,
    sa.Column("upstream", sa.String(64), primary_key=True),
    sa.Column("issuer", sa.String(1024), primary_key=True),
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("client_secret_encrypted", sa.Text, nullable=True),
    sa.Column("token_endpoint_auth_method", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.String(2048), nullable=False),
    sa.Column("registration_client_uri", sa.String(2048), nullable=True),
    sa.Column("registration_access_token_encrypted", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# A URL elicitation the gateway sent (MCP 2025-11-25): the person and client whose call needed an
# upstream sign-in. The connect page accepts it only from that person's browser session.
upstream_connect_requests = sa.Table(
    "upstream_connect_requests",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "user_id",
        sa.String(64),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("upstream", sa.String(64), nullable=False),
    sa.Column("client_id", sa.String(2048), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("completed_at", sa.BigInteger, nullable=True),
)

# An upstream sign-in sent from the connect page, until its callback: the state (by hash), the
# person and browser (hash of a cookie) it is bound to, the encrypted PKCE verifier, and the
# server and client it was sent to. Consumed once, by one atomic delete.
upstream_connect_states = sa.Table(
    "upstream_connect_states",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("upstream", sa.String(64), nullable=False),
    sa.Column(
        "user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("issuer", sa.String(1024), nullable=False),
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("verifier_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)

__all__ = [
    "access_rules",
    "auth_audit",
    "authorization_codes",
    "authorization_requests",
    "cimd_documents",
    "clients",
    "consents",
    "family_access_tokens",
    "federation_states",
    "linked_accounts",
    "login_failures",
    "metadata",
    "quota_events",
    "refresh_tokens",
    "registration_tokens",
    "registry_audit",
    "registry_entries",
    "registry_entry_groups",
    "registry_generation",
    "registry_mirrored",
    "registry_mirrors",
    "registry_servers",
    "revocations",
    "revoked_access_tokens",
    "sessions",
    "signing_keys",
    "token_families",
    "upstream_clients",
    "upstream_connect_requests",
    "upstream_connect_states",
    "upstream_connections",
    "used_assertions",
    "users",
]
