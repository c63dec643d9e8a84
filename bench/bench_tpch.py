#!/usr/bin/env python3
"""Estimated TPC-H workload cost before and after the audit's recommendations.

    python bench/bench_tpch.py --dsn "host=/tmp/pg port=5432 dbname=app" [--sf 0.1] [--keep]

Steps:
  1. generates TPC-H at scale factor --sf with DuckDB's tpch extension (PyPI packages
     ``duckdb==1.5.5`` and ``duckdb-extension-tpch==1.5.5``; the extension file shipped in the
     wheel is LOADed by path, nothing is downloaded) and copies it to schema ``tpch``
     (primary keys only).  Existing ``tpch`` data of the same scale factor is reused;
  2. takes the 22 queries from DuckDB's ``tpch_queries()``, qualifies the tables with
     ``tpch.`` and transpiles them to PostgreSQL with sqlglot;
  3. lowers the audit thresholds in ``arch.settings`` (restored afterwards), resets
     ``pg_stat_statements`` and executes every query --runs times (once when the first run
     takes over 5 s; ``statement_timeout`` --timeout-s each; a query that fails or times out
     is reported and left out);
  4. runs ``SELECT arch.run_audit()``;
  5. for every query, the planner's total cost (``EXPLAIN (FORMAT JSON)``) without, then with
     all proposed index recommendations on ``tpch`` created as hypothetical indexes (hypopg),
     and prints per-query before / after / gain and the workload total.

Note: this resets pg_stat_statements of the whole cluster -- run it on a test database.
``tpch`` is dropped at the end unless --keep.  --no-audit only loads and runs the queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg

from bench_audit import (
    BENCH_SETTINGS,
    AuditSettings,
    BenchError,
    check_arch,
    connect,
    log,
    pgss_max,
    print_table,
    reset_pgss,
    timed_audit,
)
from tpch_data import (
    SCHEMA,
    duckdb_tpch,
    ensure_tpch,
    plan_cost,
    run_queries,
    tpch_queries,
)

# ---------------------------------------------------------------------------------------
# the audit's recommendations
# ---------------------------------------------------------------------------------------

def hypothetical_recommendations(conn) -> tuple[list[dict], list[dict]]:
    """Create every proposed index recommendation on tpch as a hypothetical index."""
    rows = conn.execute(
        """SELECT id, kind, table_name, ddl, hypo_ddl, est_gain_pct, confidence
           FROM arch.recommendation
           WHERE status = 'proposed' AND schema_name = %s
           ORDER BY id""",
        (SCHEMA,),
    ).fetchall()
    created, other = [], []
    for rid, kind, table, ddl, hypo_ddl, gain, conf in rows:
        r = {"id": rid, "kind": kind, "table": table, "ddl": ddl, "est_gain_pct": gain,
             "confidence": conf}
        if not hypo_ddl:
            other.append(r)
            continue
        try:
            conn.execute("SELECT * FROM hypopg_create_index(%s)", (hypo_ddl,))
            created.append(r)
        except psycopg.Error as e:
            r["error"] = str(e).strip().splitlines()[0]
            other.append(r)
    return created, other


def _fmt(v, nd=1):
    return "" if v is None else f"{v:,.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1)")
    ap.add_argument("--runs", type=int, default=2, help="executions per query (default 2)")
    ap.add_argument("--timeout-s", type=float, default=60, help="statement_timeout per query (default 60)")
    ap.add_argument("--keep", action="store_true", help=f"keep schema {SCHEMA} for the next run")
    ap.add_argument("--reload", action="store_true", help=f"regenerate {SCHEMA} even if present")
    ap.add_argument("--no-audit", action="store_true",
                    help="only load and run the queries and print their plan costs")
    ap.add_argument("--queries", type=int, nargs="+", help="only these query numbers")
    ap.add_argument("--audit-timeout-ms", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)

    try:
        with connect(args.dsn) as conn:
            if not args.no_audit:
                check_arch(conn)
                if not conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'hypopg')"
                ).fetchone()[0]:
                    raise BenchError("extension hypopg is not installed in this database")
                mx = pgss_max(conn)
                if mx is not None and mx < 200:
                    log(f"WARNING: pg_stat_statements.max = {mx} is low: queries may be evicted")
            con = duckdb_tpch()
            queries = tpch_queries(con)
            if args.queries:
                queries = {k: v for k, v in queries.items() if k in set(args.queries)}
            ensure_tpch(conn, con, args.sf, args.reload, log)
            con.close()

            audit = None
            if args.no_audit:
                log(f"running {len(queries)} queries x {args.runs} ...")
                runs = run_queries(conn, queries, args.runs, args.timeout_s, log)
            else:
                with AuditSettings(conn, **BENCH_SETTINGS, max_statements=100):
                    reset_pgss(conn)
                    log(f"running {len(queries)} queries x {args.runs} ...")
                    runs = run_queries(conn, queries, args.runs, args.timeout_s, log)
                    log("running arch.run_audit() ...")
                    audit = timed_audit(args.dsn, args.audit_timeout_ms)
                    log(f"audit: {json.dumps(audit.summary)} in {audit.wall_s:.1f}s")

            before = {nr: plan_cost(conn, q) for nr, q in queries.items()}
            after: dict[int, float | None] = {}
            created, other = [], []
            if not args.no_audit:
                # hypopg's hypothetical indexes live in this backend only, across transactions
                conn.execute("SELECT hypopg_reset()")
                try:
                    created, other = hypothetical_recommendations(conn)
                    after = {nr: plan_cost(conn, q) for nr, q in queries.items()}
                finally:
                    conn.execute("SELECT hypopg_reset()")

            if not args.keep:
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    except BenchError as e:
        print(f"bench_tpch: {e}", file=sys.stderr)
        return 2

    rows, tb, ta, eb, ea = [], 0.0, 0.0, 0.0, 0.0
    for nr in queries:
        b, a = before.get(nr), after.get(nr)
        gain = (b - a) / b * 100 if (b and a is not None) else None
        r = runs[nr]
        rows.append([f"q{nr:02d}", r["status"] + (f" ({r['error']})" if r["error"] else ""),
                     r["calls"], _fmt(r["mean_ms"], 0), _fmt(b), _fmt(a), _fmt(gain)])
        if b is not None:
            tb += b
            ta += a if a is not None else b
            if r["status"] == "ok":
                eb += b
                ea += a if a is not None else b
    headers = ["query", "executed", "calls", "mean ms", "cost before", "cost after", "gain %"]
    rows.append(["total", f"{sum(r['status'] == 'ok' for r in runs.values())}/{len(runs)} ok", "", "",
                 _fmt(tb), _fmt(ta) if after else "", _fmt((tb - ta) / tb * 100) if after and tb else ""])
    if eb != tb:  # the audit only saw the queries that ran to completion
        rows.append(["executed", "", "", "", _fmt(eb), _fmt(ea) if after else "",
                     _fmt((eb - ea) / eb * 100) if after and eb else ""])
    print(f"TPC-H sf={args.sf:g}: planner total cost per query"
          + (" before / with the audit's proposed indexes (hypothetical)" if after else ""))
    print_table(headers, rows)
    if audit:
        s = audit.summary
        print(f"\naudit: {s.get('statements_selected')} selected, {s.get('statements_analyzed')} analysed, "
              f"{s.get('recommendations_new')} new + {s.get('recommendations_updated')} updated "
              f"recommendations, {audit.wall_s:.1f}s"
              + (f", peak backend RSS {audit.peak_rss_kb / 1024:.0f} MB" if audit.peak_rss_kb else ""))
        print(f"{len(created)} proposed index recommendation(s) on {SCHEMA} costed as hypothetical indexes:")
        for r in created:
            print(f"  #{r['id']} {r['ddl']}  (est. gain {_fmt(r['est_gain_pct'])} %, "
                  f"confidence {r['confidence']})")
        for r in other:
            print(f"  #{r['id']} not costed ({r.get('error') or r['kind']}): {r['ddl']}")
    if args.json:
        print(json.dumps({
            "sf": args.sf,
            "queries": {nr: {**runs[nr], "cost_before": before.get(nr), "cost_after": after.get(nr)}
                        for nr in queries},
            "total_before": tb, "total_after": ta if after else None,
            "executed_before": eb, "executed_after": ea if after else None,
            "audit": audit.summary if audit else None,
            "recommendations": created + other,
        }, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
