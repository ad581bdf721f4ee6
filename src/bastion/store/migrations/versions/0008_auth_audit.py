"""auth audit: the authorization server's audit trail (sign-ins, consents, grants,
registrations and operators' changes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("client_id", sa.String(length=2048), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("target_kind", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=2048), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_audit")),
    )
    for column in ("at", "subject", "client_id"):
        op.create_index(op.f(f"ix_auth_audit_{column}"), "auth_audit", [column], unique=False)
    op.create_index(
        "ix_auth_audit_target_id",
        "auth_audit",
        ["target_id"],
        unique=False,
        postgresql_where=sa.text("target_id IS NOT NULL"),
        sqlite_where=sa.text("target_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_auth_audit_target_id", table_name="auth_audit")
    for column in ("at", "subject", "client_id"):
        op.drop_index(op.f(f"ix_auth_audit_{column}"), table_name="auth_audit")
    op.drop_table("auth_audit")
