"""request ids: the registry's audit records carry the request id (X-Request-Id, or the one
bastion made) that the same request's log lines carry

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_audit") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_audit") as batch:
        batch.drop_column("request_id")
