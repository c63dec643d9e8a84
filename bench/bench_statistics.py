"""Statistics advisor bench: on the demo app and TPC-H, how many misestimates the statistics
advisor finds, how many ``CREATE STATISTICS`` / ``SET STATISTICS`` candidates it proposes, how
many of them the planner proves, and the estimated gain of the proven ones.

    python bench/bench_statistics.py --dsn "host=/tmp/pg port=5432 dbname=app" [--sf 0.01] [--keep]

1. loads TPC-H (tpch_data.py's loader, schema ``tpch``) and the demo app (``public``) if absent;
2. resets pg_stat_statements, runs the demo app's workload (``sample.run_workload``) and the 22
   TPC-H queries, so that pg_stat_statements holds both workloads with their rows per call;
3. ``arch.advise_statistics()`` with ``prove_statistics_in_transaction`` as it is (off by
   default: candidates stay unproven), then again with it on: each candidate is proven in a
   rolled-back subtransaction (proven / unproven / rejected, estimated gain);
4. with the setting still on, ``arch.analyze_query()`` on each statement of the workload: the
   statistics recommendations the audit itself would make (rows of kind ``statistics``).

The setting is restored at the end.  Nothing is stored; ``tpch`` is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg
import psycopg.sql

from bench_audit import AuditSettings, BenchError, check_arch, connect, log, print_table, reset_pgss
from pg_architect import sample
from tpch_data import SCHEMA, duckdb_tpch, ensure_tpch, run_queries, tpch_queries


def _workload_of(query: str) -> str:
    return "tpch" if f"{SCHEMA}." in query else "demo"


def _advise(conn, max_statements: int) -> list[dict]:
    doc = conn.execute("SELECT arch.advise_statistics(1, %s)", [max_statements]).fetchone()[0]
    return json.loads(doc) if isinstance(doc, str) else doc


def summarize(items: list[dict]) -> dict[str, Counter]:
    """Per workload: statements examined / skipped, misestimates, candidates by status, and
    the sum of the proven candidates' estimated gains (pure: used on advise_statistics' JSON)."""
    out: dict[str, Counter] = {}
    for it in items:
        c = out.setdefault(_workload_of(it.get("query") or ""), Counter())
        if isinstance(it.get("skipped"), str):
            c["skipped"] += 1
            continue
        c["groups not proposed"] += len(it.get("skipped") or [])
        c["examined"] += 1
        mis = it.get("misestimates") or []
        c["misestimates"] += len(mis)
        c["misestimated statements"] += 1 if mis else 0
        for cand in it.get("candidates") or []:
            c["candidates"] += 1
            c[cand.get("status") or "unproven"] += 1
            if cand.get("status") == "proven" and cand.get("est_gain_pct") is not None:
                c["gains"] += 1
                c["gain_sum"] += float(cand["est_gain_pct"])
                c["gain_max"] = max(c["gain_max"], float(cand["est_gain_pct"]))
    return out


def _analyze(conn, query: str) -> tuple[list[tuple], str | None]:
    try:
        with conn.transaction():
            rows = conn.execute(
                "SELECT kind, table_name, index_kind, est_gain_pct, confidence, ddl FROM arch.analyze_query(%s)",
                [query]).fetchall()
        return rows, None
    except psycopg.Error as e:
        return [], str(e).strip().splitlines()[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--sf", type=float, default=0.01, help="TPC-H scale factor (default 0.01)")
    ap.add_argument("--rounds", type=int, default=3, help="demo workload rounds (default 3)")
    ap.add_argument("--max-statements", type=int, default=60, help="advise_statistics' max_statements (default 60)")
    ap.add_argument("--timeout-s", type=float, default=120, help="statement_timeout (default 120)")
    ap.add_argument("--keep", action="store_true", help=f"keep schema {SCHEMA}")
    args = ap.parse_args(argv)
    try:
        with connect(args.dsn) as conn:
            check_arch(conn)
            con = duckdb_tpch()
            queries = tpch_queries(con)
            ensure_tpch(conn, con, args.sf, False, log)
            con.close()
            if not sample.sample_app_loaded(conn):
                log("loading the demo app (public.users, orders, behavior_log) ...")
                sample.load_sample_app(conn, events=200_000, users=10_000, orders=60_000)
            t0 = time.perf_counter()
            reset_pgss(conn)
            log(f"demo workload, {args.rounds} rounds ...")
            calls = sample.run_workload(conn, rounds=args.rounds)
            log(f"  {sum(calls.values())} calls of {len(calls)} statements")
            log("TPC-H queries ...")
            run_queries(conn, queries, 1, args.timeout_s, log)
            conn.execute(psycopg.sql.SQL("SET statement_timeout = {}").format(
                psycopg.sql.Literal(int(args.timeout_s * 1000))))
            t1 = time.perf_counter()
            log("arch.advise_statistics(), setting as it is ...")
            off = _advise(conn, args.max_statements)
            t2 = time.perf_counter()
            with AuditSettings(conn, prove_statistics_in_transaction=True):
                log("arch.advise_statistics(), prove_statistics_in_transaction = on ...")
                on = _advise(conn, args.max_statements)
                t3 = time.perf_counter()
                log("arch.analyze_query() on each statement ...")
                audit_rows, audit_err = [], Counter()
                for it in on:
                    rows, err = _analyze(conn, it["query"])
                    wl = _workload_of(it["query"])
                    if err:
                        audit_err[wl] += 1
                    for r in rows:
                        audit_rows.append((wl, it["query"], r))
                t4 = time.perf_counter()
            restored = conn.execute("SELECT prove_statistics_in_transaction FROM arch.settings").fetchone()[0]

            s_off, s_on = summarize(off), summarize(on)
            table = []
            for wl in ("demo", "tpch"):
                a, b = s_off.get(wl, Counter()), s_on.get(wl, Counter())
                stats = [(k, r) for k, _q, r in audit_rows if k == wl and r[0] == "statistics"]
                gains = [r[3] for _k, r in stats if r[3] is not None]
                table.append([
                    wl, b["examined"], b["skipped"], b["misestimated statements"], b["misestimates"],
                    a["candidates"], b["candidates"], b["proven"], b["unproven"], b["rejected"],
                    f"{b['gain_sum'] / b['gains']:.1f} / {b['gain_max']:.1f}" if b["gains"] else "-",
                    len(stats), f"{sum(gains) / len(gains):.1f}" if gains else "-", audit_err[wl],
                    b["groups not proposed"]])
            print_table(["workload", "statements examined", "skipped", "misestimated stmts", "misestimates",
                         "candidates (setting off)", "candidates (on)", "proven", "unproven", "rejected",
                         "gain % mean / max (proven)", "analyze_query statistics recs", "their mean gain %",
                         "analyze_query errors", "column groups not proposed"], table)
            detail = []
            for it in on:
                for cand in it.get("candidates") or []:
                    detail.append([_workload_of(it["query"]), cand["kind"], cand["table_name"],
                                   ",".join(cand["columns"]), cand["status"],
                                   "" if cand.get("est_gain_pct") is None else f"{cand['est_gain_pct']:.1f}",
                                   f"{cand.get('error_before') or 0:.1f}x -> {cand.get('error_after') or 0:.1f}x",
                                   (cand.get("note") or "")[:60]])
            if detail:
                print()
                print_table(["workload", "kind", "table", "columns", "status", "gain %", "estimate error", "note"],
                            detail)
            distinct = {(d[1], d[2], d[3]) for d in detail}
            print(f"\n{len(distinct)} distinct candidate(s) over {len(detail)} proposals")
            why = Counter(it["skipped"].split(":")[0] for it in on if isinstance(it.get("skipped"), str))
            print(f"\nstatements skipped, by reason: {dict(why)}")
            for it in on:
                if isinstance(it.get("skipped"), str):
                    print(f"  {_workload_of(it['query'])}: {it['skipped'][:150]}")
            others = Counter(r[0] for _k, _q, r in audit_rows if r[0] != "statistics")
            print(f"\nworkload {t1 - t0:.1f}s; advise_statistics off {t2 - t1:.1f}s, on {t3 - t2:.1f}s;"
                  f" analyze_query x{len(on)} {t4 - t3:.1f}s; other kinds from analyze_query: {dict(others)};"
                  f" prove_statistics_in_transaction restored to {restored}")
            if not args.keep:
                conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(SCHEMA)))
            return 0
    except BenchError as e:
        log(f"bench_statistics: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
