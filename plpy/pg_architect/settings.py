"""Typed reading of ``arch.settings`` (one row; the columns are the settings, see README).

:func:`load` reads the settings the audit pipeline uses in one query.  Writes go through SQL
(``UPDATE arch.settings``), checked by the table's named CHECK constraints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import UserError

if TYPE_CHECKING:
    from .db import Db

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """What the audit pipeline (steps 1, 4, 5 and 6) reads."""

    min_mean_time_ms: float
    min_calls: int
    confidence_threshold: float
    min_gain_pct: float
    max_statements: int
    statement_budget_ms: int
    max_candidates: int
    max_index_columns: int
    max_statement_length: int
    snapshot_retention: str
    audit_index_set: bool
    index_budget_mb: float | None
    max_indexes_per_table: int
    reuse_analyses: bool


def load_into(db: Db, cls: type[T]) -> T:
    """The arch.settings row as ``cls``, a dataclass naming settings columns (fields typed ``str``
    are read as text, so an interval arrives as '90 days')."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    cols = ", ".join(f"{f.name}::text AS {f.name}" if f.type in (str, "str") else f.name for f in fields)
    row = db.one(f"SELECT {cols} FROM arch.settings WHERE id")
    if row is None:
        raise UserError("arch.settings has no row", hint="Re-run pg-architect install.")
    return cls(**row)


def load(db: Db) -> Settings:
    return load_into(db, Settings)
