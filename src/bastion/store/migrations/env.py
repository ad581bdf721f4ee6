"""Alembic environment: runs on the connection bastion passes in (see Database.upgrade)."""

from __future__ import annotations

from alembic import context

from bastion.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `bastion db upgrade`, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
