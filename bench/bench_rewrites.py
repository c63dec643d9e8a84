"""Rewrite rules bench: which rules apply to TPC-H and to typical anti-patterns on the demo app,
what the planner says they gain, and whether both forms return the same rows.

    python bench/bench_rewrites.py --dsn "host=/tmp/pg port=5432 dbname=app" [--sf 0.01] [--keep]

1. loads TPC-H (bench_tpch.py's loader, schema ``tpch``) and the demo app (``public``) if absent;
2. runs every rule on the 22 TPC-H queries and on a list of demo-app statements written the way
   slow queries often are (``date_trunc`` on a column, ``::text`` casts, NOT IN, counts used as
   existence, OFFSET pages, long IN lists, DISTINCT over a join, correlated scalar subqueries);
3. proves each rewrite (generic plans, ``--min-gain``) and, for the demo statements, again with
   a hypothetical index (hypopg) on the column the rewrite frees: a sargable rewrite pays only
   with an index, an index on the bare column helps only after the rewrite;
4. executes both forms (TPC-H as is, demo statements with sample parameters) and compares the
   results as multisets.

Nothing is changed but the two schemas; ``tpch`` is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg

from bench_audit import BenchError, connect, log, print_table
from bench_tpch import SCHEMA, duckdb_tpch, ensure_tpch, tpch_queries
from pg_architect import sample
from pg_architect.advisors.rewrite_proof import propose, prove_rewrite
from pg_architect.advisors.rewrite_rules import Options
from pg_architect.db import PsycopgDb

# (name, statement, sample parameters for the original, the rewrite's parameters from them,
#  hypothetical index that the rewrite can use)
DEMO = [
    ("events_of_a_day",
     "SELECT id, user_id, event_type FROM behavior_log WHERE date_trunc('day', created_at) = $1",
     [("2026-11-20",), ("2026-11-20 12:00",), (None,)], None, "behavior_log (created_at)"),
    ("order_by_text_id",
     "SELECT id, status, total FROM orders WHERE id::text = $1",
     [("42",), ("042",), ("abc",)], None, None),
    ("orders_plus_one",
     "SELECT id FROM orders WHERE user_id + 1 = $1",
     [(43,), (1,)], None, "orders (user_id)"),
    ("users_without_orders",
     "SELECT id, email FROM users WHERE id NOT IN (SELECT user_id FROM orders)",
     [()], None, None),
    ("has_orders",
     "SELECT count(*) > 0 FROM orders WHERE user_id = $1",
     [(42,), (999999,)], None, "orders (user_id)"),
    ("users_with_no_events",
     "SELECT id FROM users u WHERE u.id <= 50"
     " AND (SELECT count(*) FROM behavior_log b WHERE b.user_id = u.id) = 0",
     [()], None, "behavior_log (user_id)"),
    ("orders_page",
     "SELECT id, user_id, total FROM orders ORDER BY id LIMIT $1 OFFSET $2",
     [(50, 40000)], lambda p: (p[0], 40000), None),
    ("events_in_list",
     "SELECT id FROM behavior_log WHERE user_id IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
     [tuple(range(1, 13))], lambda p: (list(p),), "behavior_log (user_id)"),
    ("buyers",
     "SELECT DISTINCT u.id, u.email FROM users u JOIN orders o ON o.user_id = u.id WHERE o.status = $1",
     [("shipped",), ("nope",)], None, None),
    ("latest_orders_of_user_or_status",
     "SELECT id, user_id, status FROM orders WHERE user_id = $1 OR status = $2 ORDER BY id DESC LIMIT 20",
     [(42, "pending"), (42, "nope"), (None, "pending")], None, "orders (user_id)"),
    ("orders_with_email",
     "SELECT o.id, o.total, (SELECT u.email FROM users u WHERE u.id = o.user_id) FROM orders o"
     " WHERE o.created_at > now() - interval '1 day'",
     [()], None, None),
]


def _rows(conn, sql, params=()):
    cur = psycopg.RawCursor(conn)
    cur.execute(sql, params)
    return cur.fetchall()


def _same(conn, a, b, params_a, params_b) -> str:
    try:
        ra, rb = _rows(conn, a, params_a), _rows(conn, b, params_b)
    except psycopg.Error as e:
        return f"error: {str(e).splitlines()[0]}"
    return f"yes ({len(ra)} rows)" if Counter(ra) == Counter(rb) else f"NO ({len(ra)} vs {len(rb)} rows)"


def _hypothetical_gain(db, original, rewritten, index, min_gain):
    db.execute("SELECT hypopg_reset()")
    db.scalar("SELECT indexrelid FROM hypopg_create_index($1)", [f"CREATE INDEX ON {index}"])
    try:
        return prove_rewrite(db, original, rewritten, min_gain)
    finally:
        db.execute("SELECT hypopg_reset()")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--sf", type=float, default=0.01, help="TPC-H scale factor (default 0.01)")
    ap.add_argument("--min-gain", type=float, default=10.0, help="min_gain_pct (default 10)")
    ap.add_argument("--timeout-s", type=float, default=120, help="statement_timeout (default 120)")
    ap.add_argument("--keep", action="store_true", help=f"keep schema {SCHEMA}")
    args = ap.parse_args(argv)
    try:
        with connect(args.dsn) as conn:
            conn.execute(f"SET statement_timeout = '{int(args.timeout_s * 1000)}ms'")
            con = duckdb_tpch()
            queries = tpch_queries(con)
            ensure_tpch(conn, con, args.sf, False, log)
            con.close()
            if not sample.sample_app_loaded(conn):
                log("loading the demo app (public.users, orders, behavior_log) ...")
                sample.load_sample_app(conn, events=200_000, users=10_000, orders=60_000)
            dbconn = psycopg.connect(args.dsn)
            dbconn.execute(f"SET statement_timeout = '{int(args.timeout_s * 1000)}ms'")
            dbconn.commit()
            db = PsycopgDb(dbconn)
            options = Options(min_in_list=10)
            table, totals = [], Counter()
            t0 = time.perf_counter()
            for nr, q in queries.items():
                kept, dropped, refused = propose(db, q, args.min_gain, options)
                for r in refused:
                    table.append([f"tpch q{nr}", r.rule, "refused", "", "", "", r.reason[len("not rewritten: "):][:70]])
                    totals["refused"] += 1
                for p, what in [(p, "kept") for p in kept] + [(p, "dropped") for p in dropped]:
                    same = _same(conn, q, p.rewrite.sql, (), ())
                    table.append([f"tpch q{nr}", p.rewrite.rule, what, f"{p.proof.cost_before:.0f}",
                                  f"{p.proof.cost_after:.0f}", f"{p.proof.gain_pct:+.1f}", same])
                    totals[what] += 1
                    totals["same" if same.startswith("yes") else "differs"] += 1
            for name, sql, params, remap, index in DEMO:
                kept, dropped, refused = propose(db, sql, args.min_gain, options)
                for r in refused:
                    table.append([name, r.rule, "refused", "", "", "", r.reason[len("not rewritten: "):][:70]])
                    totals["refused"] += 1
                for p, what in [(p, "kept") for p in kept] + [(p, "dropped") for p in dropped]:
                    sames = [_same(conn, sql, p.rewrite.sql, ps, remap(ps) if remap else ps) for ps in params]
                    same = "yes" if all(s.startswith("yes") for s in sames) else "; ".join(sames)
                    table.append([name, p.rewrite.rule, what, f"{p.proof.cost_before:.0f}",
                                  f"{p.proof.cost_after:.0f}", f"{p.proof.gain_pct:+.1f}", same])
                    totals[what] += 1
                    totals["same" if same == "yes" else "differs"] += 1
                    if index:
                        h = _hypothetical_gain(db, sql, p.rewrite.sql, index, args.min_gain)
                        table.append([f"  + index {index}", p.rewrite.rule, "kept" if h.kept else "dropped",
                                      f"{h.cost_before:.0f}", f"{h.cost_after:.0f}", f"{h.gain_pct:+.1f}", ""])
            dbconn.rollback()
            dbconn.close()
            print_table(["statement", "rule", "outcome", "cost before", "cost after", "gain %", "same rows / reason"],
                        table)
            print(f"\n{totals['kept']} kept, {totals['dropped']} dropped by the proof, {totals['refused']} refused;"
                  f" results equal for {totals['same']} of {totals['same'] + totals['differs']} rewrites"
                  f" ({time.perf_counter() - t0:.1f}s)")
            if not args.keep:
                conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
            return 1 if totals["differs"] else 0
    except BenchError as e:
        log(f"bench_rewrites: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
