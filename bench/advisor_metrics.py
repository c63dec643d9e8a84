"""Pure helpers of bench_advisors.py (no database): workload weights, weighted ratios, run-time
noise, index DDL normalisation and classification, and the naive "one index per predicate column"
advisor.  Unit-tested in tests/unit/test_bench_advisors.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import median

# ---------------------------------------------------------------------------------------
# weights and ratios
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One statement text the bench runs (literal values), ``executions`` times in the capture run."""

    key: str
    sql: str
    executions: int = 1
    queryid: int | None = None


def item_weights(items: list[Item], calls_by_queryid: dict[int, int]) -> dict[str, float]:
    """Weight of each item = the calls pg_stat_statements captured for its query id, shared among the
    items of that query id in proportion to their executions.  An item whose statement is not in
    the capture (it failed, timed out, or was evicted) weighs 0."""
    per_q: dict[int, int] = {}
    for it in items:
        if it.queryid is not None:
            per_q[it.queryid] = per_q.get(it.queryid, 0) + max(it.executions, 0)
    out = {}
    for it in items:
        calls = calls_by_queryid.get(it.queryid, 0) if it.queryid is not None else 0
        total = per_q.get(it.queryid, 0)
        out[it.key] = float(calls) * it.executions / total if calls and total else 0.0
    return out


def weighted_ratio(before: dict[str, float | None], after: dict[str, float | None],
                   weights: dict[str, float]) -> tuple[float | None, int]:
    """``sum(w * after) / sum(w * before)`` over the keys with a weight and both values.

    Returns (ratio, number of keys used); ratio is None when nothing could be compared.
    """
    num = den = 0.0
    used = 0
    for k, w in weights.items():
        b, a = before.get(k), after.get(k)
        if not w or b is None or a is None:
            continue
        num += w * a
        den += w * b
        used += 1
    if not used or den <= 0:
        return None, used
    return num / den, used


def relative_spread(samples: list[float]) -> float | None:
    """(max - min) / median of repeated timings: the noise of one statement's runs."""
    if len(samples) < 2:
        return None
    m = median(samples)
    return (max(samples) - min(samples)) / m if m > 0 else None


def median_or_none(samples: list[float]) -> float | None:
    return median(samples) if samples else None


# ---------------------------------------------------------------------------------------
# index DDL
# ---------------------------------------------------------------------------------------

_CREATE_RE = re.compile(
    r"^\s*CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:(?!ON\s)(?P<name>\S+)\s+)?ON\s+(?:ONLY\s+)?(?P<table>(?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)"
    r"\s*(?P<rest>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


def canonical_index_ddl(ddl: str, schema: str) -> str:
    """``CREATE [UNIQUE] INDEX ON schema.table ...`` without name, CONCURRENTLY or IF NOT EXISTS
    (the bench builds each index under a name of PostgreSQL's choosing, in one plain statement);
    an unqualified table is qualified with ``schema``.  Raises ValueError for anything else."""
    m = _CREATE_RE.match(ddl)
    if not m:
        raise ValueError(f"not a CREATE INDEX statement: {ddl[:120]!r}")
    table = m["table"]
    if not re.match(r'^(?:"[^"]+"|[\w$]+)\.', table):
        table = f"{schema}.{table}"
    rest = re.sub(r"\s+", " ", m["rest"].strip())
    if not rest.upper().startswith("USING"):
        rest = "USING btree " + rest
    return f"CREATE {'UNIQUE ' if m['unique'] else ''}INDEX ON {table} {rest}"


def ddl_key(canonical: str) -> str:
    """Comparison key of a canonical DDL: case, spaces and the table's quoting do not matter."""
    s = canonical.lower().replace('"', "")
    s = re.sub(r"\s+", "", s)
    return s


def dedupe_ddl(ddls: list[str], schema: str) -> tuple[list[str], list[str]]:
    """Canonical DDLs in first-seen order without repeats; and the statements that are not
    CREATE INDEX (reported, not built)."""
    seen, out, bad = set(), [], []
    for d in ddls:
        try:
            c = canonical_index_ddl(d, schema)
        except ValueError:
            bad.append(d)
            continue
        k = ddl_key(c)
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out, bad


def _split_top(s: str) -> list[str]:
    parts, depth, cur, quote = [], 0, [], None
    for ch in s:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


_PLAIN_KEY = re.compile(r'^(?:"[^"]+"|[\w$]+)(?:\s+(?:ASC|DESC|NULLS\s+(?:FIRST|LAST)|[\w.]+_ops))*$',
                        re.IGNORECASE)


def index_shape(ddl: str) -> dict:
    """What kind of index a CREATE INDEX statement makes: its key list, whether one key is an
    expression, whether it is partial (WHERE) and whether it has INCLUDE columns."""
    m = _CREATE_RE.match(ddl)
    if not m:
        raise ValueError(f"not a CREATE INDEX statement: {ddl[:120]!r}")
    rest = m["rest"]
    i = rest.find("(")
    if i < 0:
        raise ValueError(f"no key list in {ddl[:120]!r}")
    depth, j = 0, i
    for j in range(i, len(rest)):
        if rest[j] == "(":
            depth += 1
        elif rest[j] == ")":
            depth -= 1
            if depth == 0:
                break
    keys = _split_top(rest[i + 1:j])
    tail = rest[j + 1:]
    return {
        "keys": keys,
        "expression": any(not _PLAIN_KEY.match(k) for k in keys),
        "partial": re.search(r"\bWHERE\b", tail, re.IGNORECASE) is not None,
        "include": re.search(r"\bINCLUDE\b", tail, re.IGNORECASE) is not None,
    }


# ---------------------------------------------------------------------------------------
# the naive advisor: one index per predicate column
# ---------------------------------------------------------------------------------------

def predicate_columns(sql: str, columns_by_table: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(schema.table, column) of every column used in a WHERE, JOIN ... ON or HAVING predicate of
    ``sql`` (any nesting level), resolved through the statement's aliases or, for an unqualified
    column, the one table of the statement that has it.  ``columns_by_table`` maps
    ``schema.table`` to its column names (only those tables are considered).  Raises ValueError
    when sqlglot cannot parse the statement."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError as e:
        raise ValueError(str(e).splitlines()[0]) from e
    by_name: dict[str, list[str]] = {}
    for qual in columns_by_table:
        by_name.setdefault(qual.split(".")[-1], []).append(qual)
    alias_map: dict[str, str] = {}
    in_stmt: set[str] = set()
    for t in tree.find_all(exp.Table):
        cands = [q for q in by_name.get(t.name, []) if not t.db or q.split(".")[0] == t.db]
        if len(cands) != 1:
            continue
        in_stmt.add(cands[0])
        alias_map[(t.alias or t.name)] = cands[0]
        alias_map.setdefault(t.name, cands[0])
    preds = list(tree.find_all(exp.Where, exp.Having))
    preds += [j.args["on"] for j in tree.find_all(exp.Join) if j.args.get("on") is not None]
    out: set[tuple[str, str]] = set()
    for p in preds:
        for c in p.find_all(exp.Column):
            name = c.name
            if not name:
                continue
            if c.table:
                qual = alias_map.get(c.table)
                if qual and name in columns_by_table[qual]:
                    out.add((qual, name))
                continue
            owners = [q for q in in_stmt if name in columns_by_table[q]]
            if len(owners) == 1:
                out.add((owners[0], name))
    return out


def naive_indexes(statements: list[str], columns_by_table: dict[str, set[str]],
                  leading: set[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """One single-column b-tree per predicate column of the workload, except the columns that
    already lead an index (``leading``).  Returns (DDLs, statements that could not be parsed)."""
    cols: set[tuple[str, str]] = set()
    bad = []
    for s in statements:
        try:
            cols |= predicate_columns(s, columns_by_table)
        except ValueError:
            bad.append(s)
    ddl = [f"CREATE INDEX ON {t} USING btree ({c})" for t, c in sorted(cols - leading)]
    return ddl, bad
