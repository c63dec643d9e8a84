"""Advisors ``materialized_view`` and ``cache``: frequent, expensive reads over tables written
rarely relative to how often they are read.

Both read this database's ``pg_stat_statements`` (through :func:`partition.read_workload`: texts
parsed with PostgreSQL's parser and sqlglot).  **Writes** to a table are the calls of the
statements that write it (INSERT / UPDATE / DELETE / MERGE / COPY FROM, same window as the reads);
``pg_stat_user_tables``' rows written (``n_tup_ins + n_tup_upd + n_tup_del``) are reported
beside them.  Counting statements rather than rows keeps a bulk load (one statement, a million
rows) from looking like a million writes.  The mean write interval of a table is
``window / write calls`` (the whole window when nothing wrote it).

**Materialized view** (kind ``materialized_view``) — a SELECT with GROUP BY (plain columns) and
aggregates, no volatile function, called at least ``matview_min_calls`` times with a mean of at
least ``matview_min_mean_time_ms``, whose tables are read ``matview_min_reads_per_write`` times
(statement calls / write calls) or more.  Its parameters may only appear as ``group_column = $n``
conditions of the top-level WHERE (they become the rewritten statement's filter) or in
LIMIT / OFFSET; a statement with any other parameter is reported as not rewritable, with the
reason.  Proposal: ``CREATE MATERIALIZED VIEW`` of the statement without those conditions (the
GROUP BY columns added to its output), a unique index on the GROUP BY columns (so it can be
refreshed ``CONCURRENTLY``), a pg_cron refresh schedule and the statement rewritten to read it.

* refresh interval ``T = min(matview_max_staleness, max(1 min, mean write interval))``, rounded
  down to a step pg_cron expresses (1, 2, 5, 10, 15, 30 min, 1, 2, 3, 4, 6, 12 h, 1 day): no more
  often than the tables change on average, never staler than the tolerated staleness;
* refresh cost ``R = mean_ms × cost(view query) / cost(statement)`` (planner costs, both planned
  as the statement's role), read cost after ``r = mean_ms × cost(reading the view's rows) /
  cost(statement)`` with reading ``G`` rows costing ``1 + G × 0.0125`` (one page, cpu_tuple_cost +
  cpu_operator_cost per row; ``G`` = the view's rows ÷ the groups a call selects);
* benefit per interval ``B = calls_per_s × T × (mean_ms − r) − R``; advice only when ``B > 0``.

**Cache** (kind ``cache``, no DDL) — a SELECT called at least ``cache_min_calls`` times,
returning at most ``cache_max_rows_per_call`` rows per call, whose tables are read
``cache_min_reads_per_write`` times or more: cache the result in the application keyed by its
parameters, with ``TTL = min(cache_max_staleness, mean write interval)``.  Expected hit rate
(uniform keys): with ``K`` distinct keys (product of ``pg_stats`` n_distinct of the columns the
parameters are compared with, at most the table's rows; 1 without parameters) and
``n = calls_per_s × TTL`` requests per TTL, ``hit = 1 − K × (1 − (1 − 1/K)^n) / n``.  Time saved
per second ``= calls_per_s × hit × mean_ms``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass

from ..analyze import SkipStatement
from ..db import QUERY_CANCELED, Db, DbError, UserError
from ..security import PlanAs
from ..sqltext import quote_ident
from . import partition

KIND_MV = "materialized_view"
KIND_CACHE = "cache"
CRON_STEPS = [(60, "*/1 * * * *"), (120, "*/2 * * * *"), (300, "*/5 * * * *"), (600, "*/10 * * * *"),
              (900, "*/15 * * * *"), (1800, "*/30 * * * *"), (3600, "0 * * * *"), (7200, "0 */2 * * *"),
              (10800, "0 */3 * * *"), (14400, "0 */4 * * *"), (21600, "0 */6 * * *"), (43200, "0 */12 * * *"),
              (86400, "0 0 * * *")]
ROW_READ_COST = 0.0125
# Statements that may write (read to count the writes of every table, whatever their calls).
_WRITE = re.compile(r"^(?:\s|--[^\n]*\n|/\*.*?\*/|\()*(?:insert|update|delete|merge|copy|with)\b", re.I | re.S)


@dataclass
class Settings:
    matview_max_staleness_s: float
    matview_min_calls: int
    matview_min_mean_time_ms: float
    matview_min_reads_per_write: float
    cache_max_staleness_s: float
    cache_min_calls: int
    cache_max_rows_per_call: float
    cache_min_reads_per_write: float


def load_settings(db: Db) -> Settings:
    row = db.one("SELECT extract(epoch FROM matview_max_staleness)::float8 AS matview_max_staleness_s,"
                 " matview_min_calls, matview_min_mean_time_ms::float8 AS matview_min_mean_time_ms,"
                 " matview_min_reads_per_write::float8 AS matview_min_reads_per_write,"
                 " extract(epoch FROM cache_max_staleness)::float8 AS cache_max_staleness_s,"
                 " cache_min_calls, cache_max_rows_per_call::float8 AS cache_max_rows_per_call,"
                 " cache_min_reads_per_write::float8 AS cache_min_reads_per_write FROM arch.settings WHERE id")
    if row is None:
        raise UserError("arch.settings has no row", hint="Re-run pg-architect install.")
    return Settings(**row)


# --------------------------------------------------------------------------- write activity
def write_activity(db: Db, stmts: list[partition.Stmt], window: float, tables) -> dict:
    """Per table: write calls (pg_stat_statements), rows written (pg_stat_user_tables), mean interval."""
    out = {}
    for t in tables:
        calls = sum(s.calls for s in stmts if t in s.writes)
        rows = db.scalar("SELECT (n_tup_ins + n_tup_upd + n_tup_del)::bigint FROM pg_stat_user_tables"
                         " WHERE schemaname = $1 AND relname = $2", list(t)) or 0
        out[t] = {"write_calls": calls, "rows_written": int(rows),
                  "mean_write_interval_s": window / calls if calls else math.inf}
    return out


def _fmt_s(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s"


def _written(interval: float) -> str:
    return ("tables not written in the window" if math.isinf(interval)
            else f"tables written every {_fmt_s(interval)} on average")


def refresh_step(staleness_s: float, write_interval_s: float) -> tuple[int, str]:
    """(seconds, cron expression) of the refresh (see the module docstring)."""
    target = min(staleness_s, max(60.0, write_interval_s))
    chosen = CRON_STEPS[0]
    for step in CRON_STEPS:
        if step[0] <= target:
            chosen = step
    return chosen


def hit_rate(keys: float, requests: float) -> float:
    """Expected cache hit rate of ``requests`` uniform requests over ``keys`` keys in one TTL."""
    k, n = max(keys, 1.0), max(requests, 0.0)
    if n <= 0:
        return 0.0
    misses = k * (1 - (1 - 1 / k) ** n) if k > 1 else 1.0
    return max(0.0, 1 - misses / n)


# --------------------------------------------------------------------------- planning (as the role)
class _Planner:
    """EXPLAIN as the statement's role (security.PlanAs), never as the auditor."""

    def __init__(self, db: Db):
        self.db = db
        self.plan_as = PlanAs(db)

    def cost(self, userid: int, sql: str, nparams: int) -> tuple[float, float]:
        """(total cost, rows) of ``sql``'s generic plan, planned as role ``userid``."""
        fn = self.plan_as.wrapper_for(userid)
        path = ", ".join(quote_ident(p, always=True) for p in partition.search_path_for(self.db, userid))
        saved = self.db.one("SELECT current_setting('search_path') AS p, current_setting('plan_cache_mode') AS m")
        assert saved is not None  # a SELECT without FROM returns its one row
        try:
            return self._cost(fn, path, sql, nparams)
        finally:  # the advisor's own catalog queries never run with the statement's search_path
            self.db.execute("SELECT set_config('search_path', $1, true), set_config('plan_cache_mode', $2, true)",
                            [saved["p"], saved["m"]])

    def _cost(self, fn: str, path: str, sql: str, nparams: int) -> tuple[float, float]:
        if self.db.scalar("SELECT count(*) FROM pg_prepared_statements WHERE name = 'pga_mv_stmt'"):
            self.db.execute("DEALLOCATE pga_mv_stmt")
        with self.db.subtransaction():
            self.db.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
            self.db.execute("SELECT set_config('search_path', $1, true)", [path or "pg_catalog"])
            # PREPARE (a utility statement: the server's parser refuses several statements before
            # the wrapper's EXECUTE would run them, without analysing the query as the auditor),
            # then EXPLAIN EXECUTE, both as the statement's role.
            prepare = "PREPARE pga_mv_stmt AS " + sql
            self.db.check_one_statement(prepare)
            try:
                self.db.query(f"SELECT w FROM {fn}($1, false) w", [prepare])
                args = f"({', '.join(['NULL'] * nparams)})" if nparams else ""
                row = self.db.query(f"SELECT w FROM {fn}($1, true) w",
                                    [f"EXPLAIN (FORMAT JSON) EXECUTE pga_mv_stmt{args}"])[0]
            finally:
                if self.db.scalar("SELECT count(*) FROM pg_prepared_statements WHERE name = 'pga_mv_stmt'"):
                    self.db.execute("DEALLOCATE pga_mv_stmt")
        doc = json.loads(row["w"])
        plan = doc["QUERY PLAN"][0]["Plan"] if isinstance(doc, dict) else doc[0]["Plan"]
        return float(plan["Total Cost"]), float(plan["Plan Rows"])

    def close(self) -> None:
        self.plan_as.close()


# --------------------------------------------------------------------------- the rewrite
class NotRewritable(Exception):
    pass


def rewrite(st: partition.Stmt, name: str) -> dict:
    """The materialized view's query, its unique-index columns and the rewritten statement."""
    _, exp = partition._sqlglot()
    tree = st.tree
    if not isinstance(tree, exp.Select):
        raise NotRewritable("not a plain SELECT (set operation or other)")
    group = tree.args.get("group")
    if not group or not group.expressions:
        raise NotRewritable("no GROUP BY")
    if any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets")):
        raise NotRewritable("ROLLUP / CUBE / GROUPING SETS: the GROUP BY columns do not identify a row")
    gcols = []
    for g in group.expressions:
        if not isinstance(g, exp.Column):
            raise NotRewritable(f"GROUP BY {g.sql(dialect='postgres')} is not a plain column")
        gcols.append(g)
    if tree.find(exp.Window):
        raise NotRewritable("window functions")
    for f in ("random", "now", "clock_timestamp", "current_timestamp", "current_date", "nextval"):
        for fn in tree.find_all(exp.Anonymous, exp.Func):
            if fn.sql_name().lower() == f or (isinstance(fn, exp.Anonymous) and str(fn.this).lower() == f):
                raise NotRewritable(f"calls {f}(): the result depends on the time of the call")
    if isinstance(tree.find(exp.CurrentTimestamp), exp.Expression) or tree.find(exp.CurrentDate):
        raise NotRewritable("reads the current time: the result depends on the time of the call")
    gnames = {g.name for g in gcols}
    # Parameters: only `group_col = $n` conjuncts of the top-level WHERE, and LIMIT/OFFSET.
    filters: list[tuple[str, str]] = []
    where = tree.args.get("where")
    kept = []
    if where is not None:
        conj = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
        for c in conj:
            params = list(c.find_all(exp.Parameter))
            if not params:
                kept.append(c)
                continue
            if isinstance(c, exp.EQ) and isinstance(c.this, exp.Column) and isinstance(c.expression, exp.Parameter) \
                    and c.this.name in gnames:
                filters.append((c.this.name, c.expression.sql(dialect="postgres")))
                continue
            raise NotRewritable(f"parameter in {c.sql(dialect='postgres')}: only group_column = $n filters can be "
                                "served by the view (other parameters change which rows are aggregated)")
    for part in ("having", "joins", "with"):
        node = tree.args.get(part)
        if node is not None and (node.find(exp.Parameter) if not isinstance(node, list)
                                 else any(n.find(exp.Parameter) for n in node)):
            raise NotRewritable(f"parameter in {part.upper()}")
    for e in tree.expressions:
        if e.find(exp.Parameter):
            raise NotRewritable("parameter in the select list")
    # The view: the select list with names, plus missing GROUP BY columns.
    mv = tree.copy()
    mv.set("order", None)
    mv.set("limit", None)
    mv.set("offset", None)
    mv.set("where", None)
    if kept:
        cond = kept[0]
        for c in kept[1:]:
            cond = exp.and_(cond, c)
        mv.set("where", exp.Where(this=cond.copy()))
    names, outs = [], []
    used = set()
    for i, e in enumerate(tree.expressions):
        if isinstance(e, exp.Star):
            raise NotRewritable("SELECT *")
        n = e.alias_or_name if (isinstance(e, (exp.Alias, exp.Column)) and e.alias_or_name) else f"col{i + 1}"
        if n in used:
            n = f"{n}_{i + 1}"
        used.add(n)
        names.append(n)
        outs.append(e.unalias().copy() if isinstance(e, exp.Alias) else e.copy())
    select_list = [exp.alias_(o, n, quoted=True) for o, n in zip(outs, names)]
    gout = {}
    for g in gcols:
        for o, n in zip(outs, names):
            if isinstance(o, exp.Column) and o.name == g.name and (not g.table or o.table == g.table):
                gout[g.name] = n
                break
        else:
            n = f"g_{g.name}"
            select_list.append(exp.alias_(g.copy(), n, quoted=True))
            gout[g.name] = n
    mv.set("expressions", select_list)
    for tb in mv.find_all(exp.Table):  # the view names its tables schema-qualified
        t = st.aliases.get(tb.alias_or_name)
        if t and not tb.db and t[1] == tb.name:
            tb.set("db", exp.to_identifier(t[0]))
    if mv.find(exp.Parameter):
        raise NotRewritable("a parameter outside the top-level WHERE (subquery, FROM, CTE): the view cannot hold it")
    view_sql = mv.sql(dialect="postgres")
    # The rewritten statement.
    sel = ", ".join(quote_ident(n, always=True) for n in names)
    sql = f"SELECT {sel} FROM {name}"
    if filters:
        sql += " WHERE " + " AND ".join(f"{quote_ident(gout[c], always=True)} = {p}" for c, p in filters)
    order = tree.args.get("order")
    if order is not None:
        items = []
        for o in order.expressions:
            target = o.this
            ref = None
            if isinstance(target, exp.Literal) and not target.is_string:
                ref = target.sql()
            else:
                for n, out in zip(names, outs):
                    if target.sql() == out.sql() or (isinstance(target, exp.Column) and not target.table
                                                     and target.name == n):
                        ref = quote_ident(n, always=True)
                        break
            if ref is None:
                raise NotRewritable(f"ORDER BY {target.sql(dialect='postgres')} is not in the select list")
            items.append(ref + (" DESC" if o.args.get("desc") else "") +
                         (" NULLS FIRST" if o.args.get("nulls_first") and not o.args.get("desc") else ""))
        sql += " ORDER BY " + ", ".join(items)
    if tree.args.get("limit") is not None:
        sql += " " + tree.args["limit"].sql(dialect="postgres")
    if tree.args.get("offset") is not None:
        sql += " " + tree.args["offset"].sql(dialect="postgres")
    return {"view_sql": view_sql, "unique_columns": [gout[g.name] for g in gcols], "rewritten": sql,
            "filters": [c for c, _ in filters], "group_columns": [g.name for g in gcols]}


def _n_distinct(db: Db, t: tuple[str, str], col: str) -> float | None:
    row = db.one("SELECT s.n_distinct::float8 AS d, greatest(c.reltuples, 0)::float8 AS n FROM pg_stats s"
                 " JOIN pg_namespace ns ON ns.nspname = s.schemaname JOIN pg_class c ON c.relnamespace = ns.oid"
                 " AND c.relname = s.tablename WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3",
                 [t[0], t[1], col])
    if not row or row["d"] is None:
        return None
    return row["d"] if row["d"] > 0 else -row["d"] * row["n"]


# --------------------------------------------------------------------------- advice
def advise(db: Db, settings: Settings | None = None, workload=None, on_error=None) -> list[dict]:
    """One dict per advice (``entry.advise_materialized_views`` gives them to SQL).  With ``on_error(what,
    exc)`` (the audit), each statement is advised in its own subtransaction and a failure on one
    is reported to it instead of raised (a cancel is always raised)."""
    settings = settings or load_settings(db)
    floor = min(settings.matview_min_calls, settings.cache_min_calls)
    stmts, window = workload or partition.read_workload(
        db, read=lambda r: r["calls"] >= floor or bool(_WRITE.match(r["query"] or "")),
        detail=lambda r: r["calls"] >= floor)
    selects = [s for s in stmts if s.kind == "select" and s.tables and not s.error]
    tables = {t for s in selects for t in s.tables}
    writes = write_activity(db, stmts, window, tables)
    out: list[dict] = []
    planner = _Planner(db)
    try:
        for s in selects:
            if on_error is None:
                out.extend(_statement(db, planner, s, settings, window, writes))
                continue
            try:
                with db.subtransaction():
                    out.extend(_statement(db, planner, s, settings, window, writes))
            except DbError as exc:
                if exc.sqlstate == QUERY_CANCELED:
                    raise
                on_error(f"materialized-view / cache advice for queryid {s.queryid}", exc)
            except Exception as exc:  # a bug on one statement: reported, the others go on
                on_error(f"materialized-view / cache advice for queryid {s.queryid}", exc)
    finally:
        planner.close()
    return out


def _statement(db: Db, planner: _Planner, s: partition.Stmt, settings: Settings, window: float,
               writes: dict) -> list[dict]:
    """The materialized-view and cache advice of one statement."""
    out: list[dict] = []
    ww = [writes[t] for t in s.tables]
    wcalls = sum(w["write_calls"] for w in ww)
    rpw = s.calls / max(wcalls, 1)
    interval = min(w["mean_write_interval_s"] for w in ww)
    base = {"queryid": s.queryid, "userid": s.userid, "calls": s.calls, "mean_ms": round(s.mean_ms, 3),
            "reads_per_write": round(rpw, 2), "write_calls": wcalls,
            "rows_written": sum(w["rows_written"] for w in ww),
            "mean_write_interval_s": round(interval, 1) if math.isfinite(interval) else None}
    if (s.aggregate and s.calls >= settings.matview_min_calls and s.mean_ms >= settings.matview_min_mean_time_ms
            and rpw >= settings.matview_min_reads_per_write):
        try:
            with db.subtransaction():
                item = _matview(db, planner, s, settings, window, interval, base)
        except SkipStatement as exc:
            item = _not_advised(s, KIND_MV, base, f"{exc.code}: {exc.reason}")
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            item = _not_advised(s, KIND_MV, base, f"cannot plan it: {str(exc).splitlines()[0]}")
        if item:
            out.append(item)
    rpc = s.rows / max(s.calls, 1)
    if s.calls >= settings.cache_min_calls and rpc <= settings.cache_max_rows_per_call \
            and rpw >= settings.cache_min_reads_per_write:
        out.append(_cache(db, s, settings, window, interval, base, rpc))
    return out


def _not_advised(s: partition.Stmt, kind: str, base: dict, reason: str) -> dict:
    t = s.tables[0]
    return {"kind": kind, "schema_name": t[0], "table_name": t[1], "advised": False, "ddl": None,
            "rollback_ddl": None, "rewritten_query": None, "schedule": None,
            "estimate": dict(base), "rationale": f"Not advised: {reason}.", "statements": [s.brief()]}


def _matview(db: Db, planner: _Planner, s: partition.Stmt, settings: Settings, window: float,
             interval: float, base: dict) -> dict | None:
    t = s.tables[0]
    digest = hashlib.sha256(s.query.encode()).hexdigest()[:8]
    mv_name = f"{t[1][:40]}_{digest}_mv"
    qmv = f"{partition._q(db, t[0])}.{partition._q(db, mv_name)}"
    try:
        rw = rewrite(s, qmv)
    except NotRewritable as exc:
        return _not_advised(s, KIND_MV, base, f"the statement cannot be served by a materialized view ({exc})")
    assert s.tree is not None  # rewrite() accepted it: a parsed SELECT
    nparams = max([int(p.this.this) for p in s.tree.find_all(partition._sqlglot()[1].Parameter)] or [0])
    cost_stmt, _ = planner.cost(s.userid, s.query, nparams)
    cost_mv, mv_rows = planner.cost(s.userid, rw["view_sql"], 0)
    groups = mv_rows
    for c in rw["filters"]:
        d = _n_distinct(db, t, c) or 1.0
        groups = groups / max(d, 1.0)
    groups = max(groups, 1.0)
    refresh_ms = s.mean_ms * cost_mv / max(cost_stmt, 1e-9)
    read_ms = min(s.mean_ms, s.mean_ms * (1 + groups * ROW_READ_COST) / max(cost_stmt, 1e-9))
    step_s, cron = refresh_step(settings.matview_max_staleness_s, interval)
    rate = s.calls / window
    benefit = rate * step_s * (s.mean_ms - read_ms) - refresh_ms
    est = dict(base, refresh_interval_s=step_s, refresh_ms=round(refresh_ms, 3), read_ms_after=round(read_ms, 4),
               calls_per_s=round(rate, 4), benefit_ms_per_refresh=round(benefit, 3), view_rows=round(mv_rows),
               cost_statement=round(cost_stmt, 2), cost_view_query=round(cost_mv, 2))
    if benefit <= 0:
        return _not_advised(s, KIND_MV, est, f"refreshing every {_fmt_s(step_s)} costs {refresh_ms:,.1f} ms, more "
                            f"than the {rate * step_s * (s.mean_ms - read_ms):,.1f} ms the view saves in that time")
    idx = partition._q(db, f"{mv_name[:55]}_key")
    ucols = ", ".join(quote_ident(c, always=True) for c in rw["unique_columns"])
    job = f"arch_refresh_{mv_name}"
    ddl = (f"CREATE MATERIALIZED VIEW {qmv} AS {rw['view_sql']};\n"
           f"CREATE UNIQUE INDEX {idx} ON {qmv} ({ucols});\n"
           f"SELECT cron.schedule('{job}', '{cron}', 'REFRESH MATERIALIZED VIEW CONCURRENTLY {qmv}');")
    rollback = (f"SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = '{job}';\n"
                f"DROP MATERIALIZED VIEW IF EXISTS {qmv};")
    why_filters = (f" The statement's parameters filter the GROUP BY column(s) {', '.join(rw['filters'])}: the "
                   f"rewrite reads one group of the view." if rw["filters"] else "")
    rationale = (f"Called {s.calls:,} times ({rate * 3600:,.1f}/h), {s.mean_ms:,.1f} ms each, over tables written by "
                 f"{base['write_calls']:,} statement call(s) in the window"
                 f" ({base['reads_per_write']:,.0f} reads per write; "
                 f"{base['rows_written']:,} rows written per pg_stat_user_tables). A materialized view refreshed every "
                 f"{_fmt_s(step_s)} (tolerated staleness {_fmt_s(settings.matview_max_staleness_s)}; "
                 f"{_written(interval)}) answers it in about {read_ms:,.2f} ms; a refresh costs about "
                 f"{refresh_ms:,.1f} ms: {benefit:,.0f} ms saved per refresh interval.{why_filters}")
    return {"kind": KIND_MV, "schema_name": t[0], "table_name": t[1], "advised": True, "ddl": ddl,
            "rollback_ddl": rollback, "rewritten_query": rw["rewritten"], "schedule": cron,
            "estimate": est, "rationale": rationale, "statements": [s.brief()],
            # the parts of the DDL (the sidecar checks the DDL is exactly these, put together)
            "view_name": mv_name, "view_sql": rw["view_sql"], "unique_columns": rw["unique_columns"],
            "refresh_job": job, "max_staleness_s": settings.matview_max_staleness_s}


def _cache(db: Db, s: partition.Stmt, settings: Settings, window: float, interval: float, base: dict,
           rpc: float) -> dict:
    t = s.tables[0]
    ttl = min(settings.cache_max_staleness_s, interval)
    keys_cols = [(p.table, p.column) for p in s.preds if p.params and p.op == "eq"]
    k = 1.0
    for tb, c in keys_cols:
        k *= _n_distinct(db, tb, c) or 1.0
    reltuples = db.scalar("SELECT greatest(reltuples, 1)::float8 FROM pg_class"
                          " WHERE oid = format('%I.%I', $1::text, $2::text)::regclass",
                          list(t)) or 1.0
    if keys_cols:
        k = min(k, reltuples)
    params = sorted({n for p in s.preds for n in p.params}) or []
    rate = s.calls / window
    h = hit_rate(k, rate * ttl)
    saved = rate * h * s.mean_ms
    est = dict(base, ttl_s=round(ttl, 1), keys=round(k), key_columns=[c for _, c in keys_cols],
               rows_per_call=round(rpc, 2), calls_per_s=round(rate, 4), hit_rate=round(h, 4),
               est_time_saved_ms_per_s=round(saved, 4))
    key_txt = ", ".join(f"${n}" for n in params) if params else "(none: one entry)"
    rationale = (f"Read {s.calls:,} times ({rate * 3600:,.1f}/h), {rpc:,.1f} rows per call, over tables written by "
                 f"{base['write_calls']:,} statement call(s) in the window ({_written(interval)}). "
                 f"Cache the result in the application keyed by {key_txt} with a TTL of {_fmt_s(ttl)}: about "
                 f"{k:,.0f} distinct key(s), expected hit rate {h * 100:.1f} %, {saved:,.2f} ms of database time "
                 f"saved per second.")
    return {"kind": KIND_CACHE, "schema_name": t[0], "table_name": t[1], "advised": True, "ddl": None,
            "rollback_ddl": None, "rewritten_query": None, "schedule": f"TTL {int(ttl)} s", "estimate": est,
            "rationale": rationale, "statements": [s.brief(cache_key=params)]}
