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
from .db import INDETERMINATE_DATATYPE, QUERY_CANCELED, Db, DbError

STMT = "pga_audit_stmt"
_PARAM_TYPE_RE = re.compile(r"parameter \$(\d+)")
# `now() - $1` where the application bound an interval: with an untyped $1 PostgreSQL picks
# timestamptz - timestamptz and the comparison then fails; declare such parameters interval.
_TIME_MINUS_PARAM = re.compile(
    r"\b(?:now\s*\(\s*\)|current_timestamp|current_date|localtimestamp|clock_timestamp\s*\(\s*\))"
    r"\s*[-+]\s*\$(\d+)\b(?!\s*::)", re.I)
# Parameters PostgreSQL leaves as unknown and then resolves to text where a number was meant:
# arithmetic between two parameters (`$6 + $7`) and CASE results (`THEN $3 ELSE $4`, summed).
_NUMERIC_PARAM = re.compile(r"\$(\d+)\s*[-+*/%]\s*\$(\d+)|\b(?:THEN|ELSE)\s+\$(\d+)\b(?!\s*::)", re.I)

_SQLSTATE_SKIPS = {
    "42P01": ("unknown_table", "a table of the statement does not exist (dropped since?)"),
    "3F000": ("unknown_table", "a schema of the statement does not exist"),
    "42703": ("unknown_column", "a column of the statement does not exist (dropped or renamed since?)"),
    "42501": ("permission", "the audit role lacks a privilege the statement needs"),
    "42883": ("unknown_function", "a function or operator of the statement does not exist for these types"),
    "55P03": ("locked", "a table of the statement is locked by another session (lock_timeout)"),
}


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")


def several_statements(sql: str) -> bool:
    """True if ``sql`` has a ``;`` outside strings, quoted identifiers, dollar quotes and comments
    (PostgreSQL's lexical rules, standard_conforming_strings on), or an unterminated one of those.

    A second guard, independent of the SQL parser, before anything reaches PREPARE: inside the
    server a PL/Python plan may hold several statements, and all of them would run.
    """
    text = sql.rstrip().rstrip(";").rstrip()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "'":
            escape = i > 0 and text[i - 1] in "eE" and (i == 1 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i += 1
            while True:
                if i >= n:
                    return True
                if escape and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                return True
            i = j + 1
        elif c == "-" and nxt == "-":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while depth:
                if i >= n:
                    return True
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "$" and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")):
            m = _DOLLAR_TAG.match(text, i)
            if m:
                j = text.find(m.group(0), m.end())
                if j < 0:
                    return True
                i = j + len(m.group(0))
            else:
                i += 1
        elif c == ";":
            return True
        else:
            i += 1
    return False


def _quote_schema(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


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
        schema = db.scalar("SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n"
                           " ON n.oid = e.extnamespace WHERE e.extname = 'hypopg'")
        if schema is None:
            raise SkipStatement("hypopg", "hypopg is not installed in this database")
        self.h = _quote_schema(schema)
        self.text: str | None = None
        self.types: list[str] = []
        self.reset()

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
            row = self.db.one(f"SELECT indexrelid::bigint AS oid, indexname::text AS name"
                              f" FROM {self.h}.hypopg_create_index($1)", [sql])
        return int(row["oid"]), row["name"]

    def hypothetical_size(self, oid: int) -> int | None:
        try:
            with self.db.subtransaction():
                return int(self.db.scalar(f"SELECT {self.h}.hypopg_relation_size($1::bigint::oid)", [oid]))
        except DbError:
            return None

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
            self.db.execute_single(f"PREPARE {STMT}{types} AS {self.text}")

    def load(self, text: str, param_count: int) -> Plan:
        """PREPARE the statement (inferring parameter types) and return its generic plan."""
        if several_statements(text):
            raise SkipStatement("multi_statement", "the text holds more than one statement")
        self.text = text
        self.types = []
        attempts = 0
        while True:
            try:
                self._prepare()
                break
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                m = _PARAM_TYPE_RE.search(str(exc))
                if exc.sqlstate == INDETERMINATE_DATATYPE and m and attempts < max(param_count, 1) + 1:
                    # PostgreSQL cannot infer this parameter's type (`$1 IS NULL`): declare it
                    # text and leave the others `unknown`, which lets their context decide.
                    n = int(m.group(1))
                    if not self.types:
                        self.types = ["unknown"] * max(param_count, n)
                    while len(self.types) < n:
                        self.types.append("unknown")
                    self.types[n - 1] = "text"
                    attempts += 1
                    continue
                interval_params = [int(x) for x in _TIME_MINUS_PARAM.findall(self.text)]
                if exc.sqlstate == "42883" and interval_params and "interval" not in self.types:
                    n_max = max([param_count] + interval_params)
                    if not self.types:
                        self.types = ["unknown"] * n_max
                    while len(self.types) < n_max:
                        self.types.append("unknown")
                    for n in interval_params:
                        self.types[n - 1] = "interval"
                    attempts += 1
                    continue
                numeric_params = sorted({int(x) for grp in _NUMERIC_PARAM.findall(self.text) for x in grp if x})
                if exc.sqlstate in ("42883", "42725") and numeric_params and "numeric" not in self.types:
                    n_max = max([param_count] + numeric_params)
                    if not self.types:
                        self.types = ["unknown"] * n_max
                    while len(self.types) < n_max:
                        self.types.append("unknown")
                    for n in numeric_params:
                        if self.types[n - 1] == "unknown":
                            self.types[n - 1] = "numeric"
                    attempts += 1
                    continue
                code, reason = _SQLSTATE_SKIPS.get(exc.sqlstate or "", ("plan_error", "PostgreSQL cannot plan it"))
                raise SkipStatement(code, f"{reason}: {str(exc).splitlines()[0]}") from None
        return self.explain()

    def explain(self, reprepare: bool = False) -> Plan:
        if reprepare:
            self._prepare()
        nparams = len(self.types) or self._param_count()
        args = f"({', '.join(['NULL'] * nparams)})" if nparams else ""
        try:
            with self.db.subtransaction():
                row = self.db.execute_single(f"EXPLAIN (FORMAT JSON) EXECUTE {STMT}{args}")[0]
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            code, reason = _SQLSTATE_SKIPS.get(exc.sqlstate or "", ("plan_error", "EXPLAIN failed"))
            raise SkipStatement(code, f"{reason}: {str(exc).splitlines()[0]}") from None
        return parse_plan(next(iter(row.values())))

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
