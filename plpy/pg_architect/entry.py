"""Entry points called by the PL/Python functions of the arch schema (one call per body).

The only module that talks to plpy's error functions: a :class:`~pg_architect.errors.UserError`
becomes ``plpy.error`` with DETAIL, HINT and SQLSTATE; a :class:`~pg_architect.errors.DbError`
(a statement we ran failed, e.g. statement_timeout) keeps its SQLSTATE.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .db import Db, PlpyDb
from .errors import DbError, UserError


def _raise(plpy: Any, err: UserError) -> None:
    kwargs = {k: v for k, v in (("detail", err.detail), ("hint", err.hint), ("sqlstate", err.sqlstate)) if v}
    plpy.error(err.message, **kwargs)


def _reraise(plpy: Any, err: DbError) -> None:
    """An error from a statement we ran (e.g. statement_timeout): keep its SQLSTATE."""
    kwargs = {k: v for k, v in (("detail", err.detail), ("sqlstate", err.sqlstate)) if v}
    plpy.error(str(err).splitlines()[0], **kwargs)


def call(plpy: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(PlpyDb(plpy), *args)`` with our errors turned into PostgreSQL errors."""
    try:
        return fn(PlpyDb(plpy), *args)
    except UserError as err:
        _raise(plpy, err)
    except DbError as err:
        _reraise(plpy, err)
    return None  # not reached: plpy.error raises


def run_audit(plpy: Any) -> str:
    from . import audit

    return json.dumps(call(plpy, audit.run_audit))


def run_audit_batched(plpy: Any, batch_size: int | None) -> None:
    from . import audit

    call(plpy, audit.run_audit_batched, batch_size)


def analyze_query(plpy: Any, query: str | None, search_path: str | None) -> list[dict]:
    from . import audit

    rows = call(plpy, audit.analyze_query, query, search_path)
    for r in rows:
        r["plan_changes"] = json.dumps(r["plan_changes"])
    return rows


def embed(plpy: Any, content: str) -> str:
    from . import knowledge

    return call(plpy, knowledge.embed_text, content)


def canonical_statement(plpy: Any, query: str | None) -> str:
    from . import knowledge

    return call(plpy, knowledge.canonical_statement, query)


def similar_optimizations(plpy: Any, sql: str | None, k: int | None) -> list[dict]:
    from . import knowledge

    return call(plpy, knowledge.similar_optimizations, sql, k)


def check_embedding_model(plpy: Any) -> str:
    from . import knowledge

    return json.dumps(call(plpy, knowledge.check_embedding_model))


def advise_statistics(plpy: Any, min_calls: int | None, max_statements: int | None) -> str:
    from .advisors import statistics

    return call(plpy, statistics.advise_statistics_json, min_calls, max_statements)


def snapshot_indexes(plpy: Any) -> int:
    from .advisors import drop_index

    return call(plpy, drop_index.snapshot_indexes)


def advise_index_housekeeping(plpy: Any) -> list[tuple]:
    from .advisors import drop_index

    return call(plpy, drop_index.advise_rows)


def design_indexes(plpy: Any, budget_mb: Any) -> list[dict]:
    from .advisors import index_set

    return call(plpy, lambda db: index_set.design(db, None if budget_mb is None else float(budget_mb))["rows"])


def advise_partitioning(plpy: Any) -> list[dict]:
    """arch._advise_partitioning(): one row per advice (JSON columns as text)."""
    from .advisors import partition

    rows = call(plpy, partition.advise)
    for r in rows:
        for k in ("steps", "estimate", "statements", "not_pruned"):
            r[k] = json.dumps(r[k], default=str)
    return rows


def advise_materialized_views(plpy: Any) -> list[dict]:
    """arch._advise_materialized_views(): one row per advice (JSON columns as text)."""
    from .advisors import matview

    rows = call(plpy, matview.advise)
    for r in rows:
        for k in ("estimate", "statements"):
            r[k] = json.dumps(r[k], default=str)
    return rows


def sample_queries(plpy: Any) -> str:
    from . import samples

    return json.dumps(call(plpy, samples.sample_queries))


def sampled_parameters(plpy: Any, queryid: int, min_samples: int | None) -> list[dict]:
    from . import samples

    return call(plpy, samples.sampled_parameters, queryid, min_samples)


def compare_plans(plpy: Any, queryid: int, max_values: int) -> list[dict]:
    from . import samples

    return call(plpy, samples.compare_plans, queryid, max_values)


__all__ = ["Db", "advise_index_housekeeping", "advise_materialized_views", "advise_partitioning",
           "advise_statistics", "analyze_query", "call", "canonical_statement", "check_embedding_model",
           "compare_plans", "design_indexes", "embed", "run_audit", "run_audit_batched", "sample_queries",
           "sampled_parameters",
           "similar_optimizations", "snapshot_indexes"]
