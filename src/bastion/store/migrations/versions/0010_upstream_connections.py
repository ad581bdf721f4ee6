"""the token vault: each person's tokens at upstreams with their own OAuth

- ``upstream_connections``: one row per (person, upstream), the access and refresh tokens
  encrypted under the secret key, the upstream's issuer and bastion's client id there, and a
  refresh lease so that one process at a time refreshes.
- ``upstream_clients``: bastion's RFC 7591 registration at an upstream's authorization server.
- ``upstream_connect_requests``: the URL elicitations the gateway sent, bound to a person.
- ``upstream_connect_states``: upstream sign-ins in progress, until their callback.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 18:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _user_id(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "user_id",
        sa.String(length=64),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "upstream_connections",
        _user_id(primary_key=True),
        sa.Column("upstream", sa.String(length=64), primary_key=True),
        sa.Column("issuer", sa.String(length=1024), nullable=False),
        sa.Column("client_id", sa.String(length=2048), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("refreshed_at", sa.BigInteger(), nullable=True),
        sa.Column("refresh_lease_until", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "upstream", name="pk_upstream_connections"),
    )
    op.create_table(
        "upstream_clients",
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=1024), nullable=False),
        sa.Column("client_id", sa.String(length=2048), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=True),
        sa.Column("token_endpoint_auth_method", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("registration_client_uri", sa.String(length=2048), nullable=True),
        sa.Column("registration_access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("upstream", "issuer", name="pk_upstream_clients"),
    )
    op.create_table(
        "upstream_connect_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        _user_id(),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=2048), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_upstream_connect_requests"),
    )
    op.create_index(
        "ix_upstream_connect_requests_user_id", "upstream_connect_requests", ["user_id"]
    )
    op.create_table(
        "upstream_connect_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        _user_id(),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("issuer", sa.String(length=1024), nullable=False),
        sa.Column("client_id", sa.String(length=2048), nullable=False),
        sa.Column("verifier_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name="pk_upstream_connect_states"),
    )


def downgrade() -> None:
    op.drop_table("upstream_connect_states")
    op.drop_index("ix_upstream_connect_requests_user_id", table_name="upstream_connect_requests")
    op.drop_table("upstream_connect_requests")
    op.drop_table("upstream_clients")
    op.drop_table("upstream_connections")
