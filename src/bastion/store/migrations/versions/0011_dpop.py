"""DPoP (RFC 9449): the keys authorization codes and refresh-token families are bound to

- ``authorization_requests.dpop_jkt``, ``authorization_codes.dpop_jkt``: the ``dpop_jkt``
  authorization request parameter (§10); only a proof of that key redeems the code.
- ``token_families.dpop_jkt``: a public client's refresh tokens work only with proofs of that
  key (§5).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("authorization_requests", "authorization_codes", "token_families")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("dpop_jkt")
