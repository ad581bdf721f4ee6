"""quotas: events counted in a window, the requester of pending authorization requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("requester", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("quota_events", schema=None) as batch_op:
        batch_op.create_index("ix_quota_events_kind_at", ["kind", "at"], unique=False)
        batch_op.create_index(
            "ix_quota_events_kind_requester_at", ["kind", "requester", "at"], unique=False
        )
    with op.batch_alter_table("authorization_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requester", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_authorization_requests_requester"), ["requester"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_authorization_requests_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("authorization_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_requests_expires_at"))
        batch_op.drop_index(batch_op.f("ix_authorization_requests_requester"))
        batch_op.drop_column("requester")
    with op.batch_alter_table("quota_events", schema=None) as batch_op:
        batch_op.drop_index("ix_quota_events_kind_requester_at")
        batch_op.drop_index("ix_quota_events_kind_at")
    op.drop_table("quota_events")
