"""console sign-in states: a sign-in through an upstream identity provider may continue to a
console page instead of a pending authorization request

``federation_states`` remembers each sign-in sent to a provider until its callback. Until now
every one continued a pending authorization request (``request_id``, NOT NULL). A sign-in to
the console (``/signin``) has no authorization request: it goes back to a console page. So

- ``request_id`` becomes nullable, and NULL for a console sign-in. (Storing '' instead would
  keep the column NOT NULL but make an empty string mean "no request", a value every reader
  would have to know about; NULL says it, and the foreign flow can never match a request by
  accident.)
- ``return_to`` (nullable, the console path to go back to, checked again at the callback) is
  set for a console sign-in, NULL for an authorization request's: exactly one of the two is set.
- ``reauthenticate`` (false by default): the person was asked to sign in again at the provider
  before a destructive console action (prompt=login, max_age=0), so the callback checks the ID
  token's ``auth_time``.

Downgrading deletes the pending console sign-ins (they live ten minutes) before making
``request_id`` NOT NULL again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("federation_states") as batch:
        batch.alter_column("request_id", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("return_to", sa.String(length=1024), nullable=True))
        batch.add_column(
            sa.Column("reauthenticate", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    states = sa.table("federation_states", sa.column("request_id", sa.String(64)))
    op.execute(sa.delete(states).where(states.c.request_id.is_(None)))
    with op.batch_alter_table("federation_states") as batch:
        batch.drop_column("reauthenticate")
        batch.drop_column("return_to")
        batch.alter_column("request_id", existing_type=sa.String(length=64), nullable=False)
