"""Rows as records: each repository returns frozen dataclasses whose fields are columns of its
table, built here by field name (columns a record leaves out are not read)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Record = TypeVar("Record", bound="DataclassInstance")


def record(kind: type[Record], row: sa.Row[tuple[object, ...]]) -> Record:
    """``row`` as a ``kind``."""
    return kind(**{field.name: row._mapping[field.name] for field in fields(kind)})


def first(kind: type[Record], result: sa.Result[tuple[object, ...]]) -> Record | None:
    """The first row of ``result`` as a ``kind``, or None."""
    row = result.first()
    return record(kind, row) if row is not None else None


def every(kind: type[Record], result: sa.Result[tuple[object, ...]]) -> list[Record]:
    """Every row of ``result`` as a ``kind``."""
    return [record(kind, row) for row in result]


__all__ = ["Record", "every", "first", "record"]
