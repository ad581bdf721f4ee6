"""registry: a generation counter every change to the entries moves

``registry_generation`` holds one row; triggers on ``registry_entries`` and
``registry_entry_groups`` add one to it in the transaction of any insert, update or delete, so
a process that caches registry answers (:mod:`bastion.registry.read_cache`) learns of a change
made by any other process, or by SQL run by hand, by reading one row.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("registry_entries", "registry_entry_groups")
_EVENTS = ("INSERT", "UPDATE", "DELETE")
_BUMP = "UPDATE registry_generation SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "registry_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_generation")),
    )
    op.execute("INSERT INTO registry_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION registry_generation_bump() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION registry_generation_bump()"
            )
        return
    # SQLite has row triggers only: one bump per row written.
    for table in _TABLES:
        for event in _EVENTS:
            op.execute(
                f"CREATE TRIGGER {table}_generation_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f"DROP TRIGGER {table}_generation ON {table}")
        op.execute("DROP FUNCTION registry_generation_bump()")
    else:
        for table in _TABLES:
            for event in _EVENTS:
                op.execute(f"DROP TRIGGER {table}_generation_{event.lower()}")
    op.drop_table("registry_generation")
