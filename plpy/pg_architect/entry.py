"""Entry points called by the PL/Python functions of the arch schema (one call per body)."""

from __future__ import annotations

import json

from . import audit
from .db import DbError, PlpyDb, UserError


def _raise(plpy, err: UserError):
    kwargs = {k: v for k, v in (("detail", err.detail), ("hint", err.hint), ("sqlstate", err.sqlstate)) if v}
    plpy.error(err.message, **kwargs)


def _reraise(plpy, err: DbError):
    """An error from a statement we ran (e.g. statement_timeout): keep its SQLSTATE."""
    kwargs = {k: v for k, v in (("detail", err.detail), ("sqlstate", err.sqlstate)) if v}
    plpy.error(str(err).splitlines()[0], **kwargs)


def run_audit(plpy) -> str:
    try:
        return json.dumps(audit.run_audit(PlpyDb(plpy)))
    except UserError as err:
        _raise(plpy, err)
    except DbError as err:
        _reraise(plpy, err)


def analyze_query(plpy, query, search_path):
    try:
        rows = audit.analyze_query(PlpyDb(plpy), query, search_path)
    except UserError as err:
        _raise(plpy, err)
    except DbError as err:
        _reraise(plpy, err)
    for r in rows:
        r["plan_changes"] = json.dumps(r["plan_changes"])
    return rows
