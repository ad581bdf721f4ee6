"""access policy: access rules, revocations, registration tokens, operator-approved clients,
refresh-token successors for the reuse window

Existing pre-registered clients were made by an operator: they are marked operator_approved, and
each one that has the client_credentials grant keeps what it could do before, as a rule on every
resource ("*") with the scopes it was registered for (or every scope when it named none), and may
introspect every resource's tokens as before. An operator narrows them with `bastion access` and
`bastion clients update --introspect`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 12:00:00.000000
"""

import json
import secrets
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_rules",
        sa.Column("resource", sa.String(length=2048), nullable=False),
        sa.Column("who", sa.String(length=512), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("resource", "who", name=op.f("pk_access_rules")),
    )
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocations_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "registration_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("machine_rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("uses_left", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_registration_tokens")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("successor_encrypted", sa.Text(), nullable=True))
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("operator_approved", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("grant_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("introspects", sa.JSON(), nullable=True))

    connection = op.get_bind()
    clients = sa.table(
        "clients",
        sa.column("client_id", sa.String),
        sa.column("origin", sa.String),
        sa.column("metadata", sa.JSON),
        sa.column("operator_approved", sa.Boolean),
        sa.column("grant_id", sa.String),
        sa.column("introspects", sa.JSON),
    )
    rules = sa.table(
        "access_rules",
        sa.column("resource", sa.String),
        sa.column("who", sa.String),
        sa.column("scopes", sa.JSON),
        sa.column("created_at", sa.BigInteger),
    )
    connection.execute(
        sa.update(clients).where(clients.c.origin == "preregistered").values(operator_approved=True)
    )
    now = int(time.time())
    found = list(connection.execute(sa.select(clients.c.client_id, clients.c.origin)))
    for client_id, _origin in found:
        connection.execute(
            sa.update(clients)
            .where(clients.c.client_id == client_id)
            .values(grant_id=secrets.token_hex(16))
        )
    found = list(
        connection.execute(
            sa.select(clients.c.client_id, clients.c.metadata).where(
                clients.c.origin == "preregistered"
            )
        )
    )
    for client_id, metadata in found:
        meta = json.loads(metadata) if isinstance(metadata, str) else (metadata or {})
        if "client_credentials" not in (meta.get("grant_types") or []):
            continue
        scopes = (meta.get("scope") or "").split() or ["*"]
        connection.execute(
            sa.update(clients).where(clients.c.client_id == client_id).values(introspects=["*"])
        )
        connection.execute(
            sa.insert(rules).values(
                resource="*", who=f"client:{client_id}", scopes=scopes, created_at=now
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("successor_encrypted")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("introspects")
        batch_op.drop_column("grant_id")
        batch_op.drop_column("operator_approved")
    op.drop_table("registration_tokens")
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_expires_at"))
    op.drop_table("revocations")
    op.drop_table("access_rules")
