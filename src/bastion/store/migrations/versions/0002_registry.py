"""registry: servers, entries, entry groups, audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_servers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registry_servers")),
    )
    op.create_table(
        "registry_entries",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=100), nullable=False),
        sa.Column("server", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_message", sa.String(length=500), nullable=True),
        sa.Column("status_changed_at", sa.BigInteger(), nullable=False),
        sa.Column("published_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("owner_subject", sa.String(length=255), nullable=False),
        sa.Column("owner_client_id", sa.String(length=2048), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'deprecated', 'deleted')",
            name=op.f("ck_registry_entries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["name"],
            ["registry_servers.name"],
            name=op.f("fk_registry_entries_name_registry_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_registry_entries")),
    )
    op.create_index(
        op.f("ix_registry_entries_updated_at"), "registry_entries", ["updated_at"], unique=False
    )
    op.create_table(
        "registry_entry_groups",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["registry_entries.name", "registry_entries.version"],
            name=op.f("fk_registry_entry_groups_name_registry_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "name", "version", "group_name", name=op.f("pk_registry_entry_groups")
        ),
    )
    op.create_table(
        "registry_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("client_id", sa.String(length=2048), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("server_name", sa.String(length=200), nullable=True),
        sa.Column("version", sa.String(length=255), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_audit")),
    )
    op.create_index(op.f("ix_registry_audit_at"), "registry_audit", ["at"], unique=False)
    op.create_index(op.f("ix_registry_audit_subject"), "registry_audit", ["subject"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_registry_audit_subject"), table_name="registry_audit")
    op.drop_index(op.f("ix_registry_audit_at"), table_name="registry_audit")
    op.drop_table("registry_audit")
    op.drop_table("registry_entry_groups")
    op.drop_index(op.f("ix_registry_entries_updated_at"), table_name="registry_entries")
    op.drop_table("registry_entries")
    op.drop_table("registry_servers")
