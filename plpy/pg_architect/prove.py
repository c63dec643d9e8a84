"""Pipeline step 5, prove: cost statements with the planner, with and without candidates.

Statements are PREPAREd and EXPLAINed with ``plan_cache_mode = force_generic_plan`` and NULL
arguments, which gives the generic plan of a ``$n`` statement on PostgreSQL 15 (no
``EXPLAIN (GENERIC_PLAN)`` before 16).  Candidate indexes exist only as hypopg hypothetical
indexes of this backend, and the statement is re-PREPAREd after every hypopg change (a cached
generic plan would not see it).  Nothing is executed: EXPLAIN without ANALYZE only.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .analyze import SkipStatement
from .db import INDETERMINATE_DATATYPE, QUERY_CANCELED, Db, DbError, extension_schema, local_setting
from .sqltext import quote_ident, several_statements

STMT = "pga_audit_stmt"
_PARAM_TYPE_RE = re.compile(r"parameter \$(\d+)")
# `now() - $1` where the application bound an interval: with an untyped $1 PostgreSQL picks
# timestamptz - timestamptz and the comparison then fails; declare such parameters interval.
_TIME_MINUS_PARAM = re.compile(
    r"\b(?:now\s*\(\s*\)|current_timestamp|current_date|localtimestamp|clock_timestamp\s*\(\s*\))"
    r"\s*[-+]\s*\$(\d+)\b(?!\s*::)", re.I)
# Types tried, in order, for parameters PostgreSQL cannot type from their context: constants
# pg_stat_statements normalised are mostly integers (`1200+11` → `$1+$2`), then decimals, text,
# intervals and timestamps.  bigint first keeps `bigint_column = $1 + $2` indexable (numeric
# would not); integer next for `$1::date + $2` and `int_array <@ ARRAY[$1, $2]`.
FREE_PARAM_TYPES = ("bigint", "integer", "numeric", "text", "interval", "timestamptz")
# Errors a wrong or missing parameter type causes: undefined or ambiguous function/operator,
# datatype mismatch, indeterminate datatype, invalid text representation of a constant.
_TYPING_SQLSTATES = {"42883", "42725", "42804", "42P18", "22P02"}

_SQLSTATE_SKIPS = {
    "42P01": ("unknown_table", "a table of the statement does not exist (dropped since?)"),
    "3F000": ("unknown_table", "a schema of the statement does not exist"),
    "42703": ("unknown_column", "a column of the statement does not exist (dropped or renamed since?)"),
    "42501": ("permission", "the audit role lacks a privilege the statement needs"),
    "42883": ("unknown_function", "a function or operator of the statement does not exist for these types"),
    "55P03": ("locked", "a table of the statement is locked by another session (lock_timeout)"),
}


def _quote_schema(name: str) -> str:
    return quote_ident(name, always=True)


@dataclass
class Plan:
    cost: float
    nodes: list[str]
    index_names: set[str]
    raw: dict = field(repr=False, default_factory=dict)


def _walk(node: dict, nodes: list[str], idx: set[str]) -> None:
    label = node.get("Node Type", "?")
    if node.get("Index Name"):
        idx.add(node["Index Name"])
        label += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        label += f" on {node.get('Schema', '') + '.' if node.get('Schema') else ''}{node['Relation Name']}"
    nodes.append(label)
    for child in node.get("Plans", []) or []:
        _walk(child, nodes, idx)


def parse_plan(value) -> Plan:
    doc = json.loads(value) if isinstance(value, str) else value
    top = doc[0]["Plan"]
    nodes: list[str] = []
    idx: set[str] = set()
    _walk(top, nodes, idx)
    return Plan(cost=float(top["Total Cost"]), nodes=nodes, index_names=idx, raw=top)


def plan_changes(before: Plan, after: Plan, rename: dict[str, str] | None = None) -> dict:
    """The plan nodes that disappeared and appeared (hypothetical index names made readable)."""
    rename = rename or {}

    def fix(s: str) -> str:
        for k, v in rename.items():
            s = s.replace(k, v)
        return s

    b, a = Counter(before.nodes), Counter(map(fix, after.nodes))
    return {"removed": sorted((b - a).elements()), "added": sorted((a - b).elements())}


class Prover:
    """Costs one statement at a time in this backend. Always call :meth:`close`."""

    def __init__(self, db: Db):
        self.db = db
        schema = extension_schema(db, "hypopg")
        if schema is None:
            raise SkipStatement("hypopg", "hypopg is not installed in this database")
        self.h = _quote_schema(schema)
        self.text: str | None = None
        self.types: list[str] = []
        # pg_temp SECURITY DEFINER wrapper of security.PlanAs: every planner call (PREPARE,
        # EXPLAIN, hypopg_create_index) runs through it, as the statement's role.
        self.run_as: str | None = None
        self.size_cache: dict = {}  # advisors.index_size: table statistics read once per prover
        self.reset()

    def _planner(self, sql: str, rows: bool = True, literal: str | None = None) -> list[dict]:
        """Run ``sql`` (which may contain one ``%L``, filled with ``literal``) as the planning role."""
        if self.run_as is None:
            if literal is not None:
                return self.db.query(sql.replace("%L", "$1"), [literal])
            res = self.db.execute_single(sql)
            return res if rows else []
        if not rows:
            # The wrapper's EXECUTE would run several statements: let the server's own parser
            # refuse them first (besides several_statements()).
            self.db.check_one_statement(sql)
        if literal is not None:
            out = self.db.query(f"SELECT w FROM {self.run_as}(pg_catalog.format($1, $2), $3) w",
                                [sql, literal, rows])
        else:
            out = self.db.query(f"SELECT w FROM {self.run_as}($1, $2) w", [sql, rows])
        return [json.loads(r["w"]) for r in out]

    # -- hypothetical indexes -------------------------------------------------------------
    def reset(self) -> None:
        try:
            with self.db.subtransaction():
                self.db.execute(f"SELECT {self.h}.hypopg_reset()")
        except DbError:
            pass

    def hypothetical_count(self) -> int:
        return int(self.db.scalar(f"SELECT count(*) FROM {self.h}.hypopg_list_indexes"))

    def create_hypothetical(self, sql: str) -> tuple[int, str]:
        with self.db.subtransaction():
            row = self._planner(f"SELECT indexrelid::bigint AS oid, indexname::text AS name"
                                f" FROM {self.h}.hypopg_create_index(%L)", literal=sql)[0]
        return int(row["oid"]), row["name"]

    def hypothetical_size(self, oid: int) -> int | None:
        try:
            with self.db.subtransaction():
                return int(self.db.scalar(f"SELECT {self.h}.hypopg_relation_size($1::bigint::oid)", [oid]))
        except DbError:
            return None

    def predicate_rows(self, schema: str, table: str, where: str) -> float | None:
        """Rows of ``schema.table`` the planner expects to satisfy ``where`` (a partial index's
        predicate), planned as the planning role; None when it cannot be planned."""
        sql = (f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {quote_ident(schema, always=True)}."
               f"{quote_ident(table, always=True)} WHERE {where}")
        if several_statements(sql):
            return None
        try:
            with self.db.subtransaction():
                row = self._planner(sql)[0]
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            return None
        return float(parse_plan(next(iter(row.values()))).raw.get("Plan Rows") or 0.0)

    def drop_hypothetical(self, oid: int) -> None:
        with self.db.subtransaction():
            self.db.execute(f"SELECT {self.h}.hypopg_drop_index($1::bigint::oid)", [oid])

    # -- statements -----------------------------------------------------------------------
    def deallocate(self) -> None:
        if self.db.scalar("SELECT count(*) FROM pg_prepared_statements WHERE name = $1", [STMT]):
            with self.db.subtransaction():
                self.db.execute_single(f"DEALLOCATE {STMT}")

    def _prepare(self) -> None:
        self.deallocate()
        types = f"({', '.join(self.types)})" if self.types else ""
        with self.db.subtransaction():
            self._planner(f"PREPARE {STMT}{types} AS {self.text}", rows=False)

    def load(self, text: str, param_count: int, free_params: list[int] | tuple = ()) -> Plan:
        """PREPARE the statement (inferring parameter types) and return its generic plan.

        PostgreSQL types most parameters from their context.  When PREPARE fails because it
        could not, the parameters nothing around them types (``free_params``, from
        :mod:`pg_architect.pgparse`: ``$1+$2``, ``generate_series($1, $2)``, ``SELECT $1`` in a
        recursive CTE) are declared as each of :data:`FREE_PARAM_TYPES` in turn, the others left
        ``unknown``; ``$1 IS NULL`` (no type at all) is declared text.  A statement no typing
        makes plannable is skipped with PostgreSQL's first error and what was tried.
        """
        if several_statements(text):
            raise SkipStatement("multi_statement", "the text holds more than one statement")
        self.text = text
        n_max = max([param_count, *free_params]) if (param_count or free_params) else 0
        interval_params = [int(x) for x in _TIME_MINUS_PARAM.findall(text)]
        plans: list[dict[int, str]] = [{}]
        if interval_params:
            plans.append({n: "interval" for n in interval_params})
        for t in FREE_PARAM_TYPES if free_params else ():
            plans.append({n: t for n in free_params})
        first_error: DbError | None = None
        for plan in plans:
            try:
                self._prepare_typed(plan, n_max)
                return self.explain()
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                if first_error is None:
                    first_error = exc
                if exc.sqlstate not in _TYPING_SQLSTATES:
                    break
        err = first_error
        assert err is not None
        tried = ""
        if free_params and err.sqlstate in _TYPING_SQLSTATES:
            names = ", ".join(f"${n}" for n in free_params)
            tried = (f" (PostgreSQL cannot infer the type of {names}; tried "
                     f"{', '.join(FREE_PARAM_TYPES)} without success)")
            raise SkipStatement("parameter_type", f"{str(err).splitlines()[0]}{tried}") from None
        code, reason = _SQLSTATE_SKIPS.get(err.sqlstate or "", ("plan_error", "PostgreSQL cannot plan it"))
        raise SkipStatement(code, f"{reason}: {str(err).splitlines()[0]}") from None

    def _prepare_typed(self, plan: dict[int, str], n_max: int) -> None:
        """PREPARE with the parameter types of ``plan`` ($n → type, others unknown); a parameter
        PostgreSQL still cannot type at all (`$1 IS NULL`) is declared text."""
        self.types = []
        if plan:
            self.types = ["unknown"] * max(n_max, max(plan))
            for n, t in plan.items():
                self.types[n - 1] = t
        for _ in range(max(n_max, 1) + 1):
            try:
                self._prepare()
                return
            except DbError as exc:
                m = _PARAM_TYPE_RE.search(str(exc))
                if exc.sqlstate != INDETERMINATE_DATATYPE or not m:
                    raise
                n = int(m.group(1))
                if not self.types:
                    self.types = ["unknown"] * max(n_max, n)
                while len(self.types) < n:
                    self.types.append("unknown")
                if self.types[n - 1] == "text":
                    raise
                self.types[n - 1] = "text"
        self._prepare()

    def explain(self, reprepare: bool = False) -> Plan:
        if reprepare:
            self._prepare()
        nparams = len(self.types) or self._param_count()
        args = f"({', '.join(['NULL'] * nparams)})" if nparams else ""
        return self._explain_execute(args, "EXPLAIN failed")

    def _explain_execute(self, args: str, failed: str) -> Plan:
        """EXPLAIN EXECUTE of the prepared statement with ``args`` in a subtransaction; a planner
        error is a SkipStatement (its reason starts with ``failed`` unless the SQLSTATE says more)."""
        try:
            with self.db.subtransaction():
                row = self._planner(f"EXPLAIN (FORMAT JSON) EXECUTE {STMT}{args}")[0]
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            code, reason = _SQLSTATE_SKIPS.get(exc.sqlstate or "", ("plan_error", failed))
            raise SkipStatement(code, f"{reason}: {str(exc).splitlines()[0]}") from None
        return parse_plan(next(iter(row.values())))

    def explain_values(self, values: list, reprepare: bool = False) -> Plan:
        """The custom plan of the prepared statement for ``values`` (one text per parameter, None
        = NULL): ``plan_cache_mode = force_custom_plan`` for this EXPLAIN only, the values quoted
        by the server (``quote_nullable``), planned as :attr:`run_as` like every other call."""
        if reprepare:
            self._prepare()
        n = len(self.types) or self._param_count()
        vals = [None if v is None else str(v) for v in list(values)[:n]]
        vals += [None] * (n - len(vals))
        args = ""
        if n:
            args = "(" + str(self.db.scalar(
                "SELECT pg_catalog.string_agg(pg_catalog.quote_nullable(u.v #>> '{}'), ', ' ORDER BY u.o)"
                " FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY AS u(v, o)", [vals])) + ")"
        with local_setting(self.db, "plan_cache_mode", "force_custom_plan"):
            return self._explain_execute(args, "EXPLAIN with sampled values failed")

    def _param_count(self) -> int:
        n = self.db.scalar("SELECT coalesce(array_length(parameter_types, 1), 0)"
                           " FROM pg_prepared_statements WHERE name = $1", [STMT])
        return int(n or 0)

    def close(self) -> None:
        try:
            self.deallocate()
        except DbError:
            pass
        self.reset()


def confidence(gain: float, share: float | None, write_ratio: float, size_ratio: float) -> tuple[float, dict]:
    """Confidence in [0, 1] that the index is worth having.

    confidence = sqrt(gain) * (0.6 + 0.4 * min(1, share / 0.05))
                            * (1 - 0.5 * write_ratio) * (1 - 0.25 * min(1, size_ratio))

    gain        estimated cost reduction of the statement, 0..1 (planner, hypothetical index)
    share       the statement's share of the window's total execution time (statements with
                5 % or more get full weight; unknown for analyze_query: full weight)
    write_ratio rows written / (written + read) on the table (pg_stat_user_tables): every
                write also maintains the index
    size_ratio  estimated index size / table size
    """
    g = min(max(gain, 0.0), 1.0)
    s = 1.0 if share is None else min(1.0, max(share, 0.0) / 0.05)
    w = min(max(write_ratio, 0.0), 1.0)
    z = min(max(size_ratio, 0.0), 1.0)
    f_gain, f_share, f_write, f_size = math.sqrt(g), 0.6 + 0.4 * s, 1 - 0.5 * w, 1 - 0.25 * z
    value = max(0.0, min(1.0, f_gain * f_share * f_write * f_size))
    return value, {"gain": round(f_gain, 4), "share": round(f_share, 4), "writes": round(f_write, 4),
                   "size": round(f_size, 4), "write_ratio": round(w, 4), "size_ratio": round(z, 4),
                   "time_share": None if share is None else round(share, 4)}
