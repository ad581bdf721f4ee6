"""registry mirrors: a row per mirror (high-water mark, pass under way, lease) and the
provenance of mirrored versions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_mirrors",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("high_water", sa.BigInteger(), nullable=True),
        sa.Column("pass_cursor", sa.String(length=1024), nullable=True),
        sa.Column("pass_since", sa.BigInteger(), nullable=True),
        sa.Column("pass_high", sa.BigInteger(), nullable=True),
        sa.Column("filters", sa.String(length=64), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("last_run_at", sa.BigInteger(), nullable=True),
        sa.Column("last_success_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registry_mirrors")),
    )
    op.create_table(
        "registry_mirrored",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("mirror", sa.String(length=63), nullable=False),
        sa.Column("upstream_updated_at", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["name", "version"],
            ["registry_entries.name", "registry_entries.version"],
            name=op.f("fk_registry_mirrored_name_registry_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_registry_mirrored")),
    )
    op.create_index(
        op.f("ix_registry_mirrored_mirror"), "registry_mirrored", ["mirror"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_registry_mirrored_mirror"), table_name="registry_mirrored")
    op.drop_table("registry_mirrored")
    op.drop_table("registry_mirrors")
