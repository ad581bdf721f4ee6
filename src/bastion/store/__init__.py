"""Persistence: SQLAlchemy 2 Core tables, async repositories, Alembic migrations.

SQLite (WAL) by default, PostgreSQL by URL. Single-use items are consumed with one atomic
statement so racing requests can never both succeed.
"""
