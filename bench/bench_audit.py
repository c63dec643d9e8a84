#!/usr/bin/env python3
"""Audit wall time and peak backend memory for N distinct slow statements.

    python bench/bench_audit.py --dsn "host=/tmp/pg port=5432 dbname=app" --statements 100 1000
    python bench/bench_audit.py --dsn ... --workload inlist --tables 10 --statements 1000 5000 \
        --embedding both --index-set both --call batched

For each N (and each --embedding x --index-set combination, the workload run afresh each time):
  1. builds (or reuses) schema ``bench_gen``: --tables tables x 8 columns x --rows rows, primary
     keys only;
  2. lowers the audit thresholds in ``arch.settings`` so that every statement qualifies (the
     previous values are restored at the end, also on errors and Ctrl-C);
  3. resets ``pg_stat_statements`` and executes N *distinct* statements --calls times each:
     ``--workload shapes`` (default): N distinct shapes (table, columns, operators, select list,
     ORDER BY / LIMIT vary); ``--workload inlist`` (issue 10's scale workload): 70 % are IN lists
     of many lengths (2 to 36 values) over a few shapes per table (pg_stat_statements gives every
     length its own query id), 30 % distinct shapes;
  4. runs ``SELECT arch.run_audit()`` (or, ``--call batched``, ``CALL arch.run_audit_batched()``)
     on a fresh connection with ``embedding_model`` = hashing or the real model (``--embedding``)
     and ``audit_index_set`` off or on (``--index-set``), timing it and reading the peak
     resident set size of that backend (``VmHWM`` in ``/proc/<pid>/status``: the bench must run
     on the database host as root or as the server's OS user; otherwise memory shows ``n/a``).

Note: this resets pg_stat_statements of the whole cluster -- run it on a test database.
``bench_gen`` is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass

try:
    import psycopg
    import psycopg.sql
except ImportError:  # pragma: no cover
    sys.exit("bench_audit: needs psycopg 3 (python -m pip install 'psycopg[binary]')")

SCHEMA = "bench_gen"

#: Thresholds the benches set in arch.settings while they run (max_statements is added).
BENCH_SETTINGS = {"min_mean_time_ms": 0, "min_calls": 1, "min_gain_pct": 1}


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------
# helpers shared with bench_tpch.py
# ---------------------------------------------------------------------------------------

def log(msg: str) -> None:
    """Progress for the person running the bench (stderr; the numbers go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def connect(dsn: str):
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as e:
        raise BenchError(f"cannot connect to {dsn!r}: {e}") from e


def check_arch(conn) -> None:
    """Fail with a clear message when pg_architect or its prerequisites are missing."""
    row = conn.execute(
        """SELECT to_regprocedure('arch.run_audit()') IS NOT NULL,
                  to_regclass('arch.settings') IS NOT NULL,
                  to_regclass('arch.recommendation') IS NOT NULL"""
    ).fetchone()
    if not all(row):
        raise BenchError(
            "pg_architect is not installed in this database (arch.run_audit(), arch.settings or "
            "arch.recommendation is missing): install it first, e.g. `pg-architect install --dsn ...`"
        )
    if not conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')"
    ).fetchone()[0]:
        raise BenchError("extension pg_stat_statements is not installed in this database")


def pgss_max(conn) -> int | None:
    v = conn.execute("SELECT current_setting('pg_stat_statements.max', true)").fetchone()[0]
    return int(v) if v else None


def reset_pgss(conn) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")


class AuditSettings:
    """Context manager: set arch.settings columns, restore the previous values on exit."""

    def __init__(self, conn, **values):
        self.conn = conn
        self.values = values
        self.saved: dict | None = None

    def __enter__(self):
        cols = list(self.values)
        cur = self.conn.execute(
            psycopg.sql.SQL("SELECT {} FROM arch.settings").format(
                psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, cols))
            )
        )
        rows = cur.fetchall()
        if len(rows) != 1:
            raise BenchError(f"arch.settings should have exactly one row, has {len(rows)}")
        self.saved = dict(zip(cols, rows[0]))
        self._update(self.values)
        return self

    def _update(self, values: dict) -> None:
        q = psycopg.sql.SQL("UPDATE arch.settings SET {}").format(
            psycopg.sql.SQL(", ").join(
                psycopg.sql.SQL("{} = {}").format(psycopg.sql.Identifier(k), psycopg.sql.Literal(v))
                for k, v in values.items()
            )
        )
        self.conn.execute(q)

    def __exit__(self, *exc):
        if self.saved is not None:
            self._update(self.saved)
        return False


def read_proc_status(pid: int) -> dict[str, int] | None:
    """VmHWM / VmRSS / RssAnon (kB) of a local process, or None when not readable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            out = {}
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "RssAnon", "RssShmem"):
                    out[k] = int(v.split()[0])
            return out
    except OSError:
        return None


@dataclass
class AuditResult:
    summary: dict
    wall_s: float
    peak_rss_kb: int | None
    baseline_rss_kb: int | None
    rss_anon_after_kb: int | None


def timed_audit(dsn: str, timeout_ms: int = 0, batched: bool = False) -> AuditResult:
    """Run arch.run_audit() (or CALL arch.run_audit_batched()) on a fresh backend; time it and
    read that backend's peak RSS."""
    with connect(dsn) as conn:
        conn.execute(psycopg.sql.SQL("SET statement_timeout = {}").format(psycopg.sql.Literal(timeout_ms)))
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        before = read_proc_status(pid)
        t0 = time.perf_counter()
        if batched:
            conn.execute("CALL arch.run_audit_batched()")
            summary = conn.execute(
                "SELECT jsonb_build_object('run_id', id, 'statements_selected', statements_selected,"
                " 'statements_analyzed', statements_analyzed, 'skipped', statements_skipped,"
                " 'statements_grouped', statements_grouped, 'batches', batches,"
                " 'recommendations_new', recommendations_new, 'recommendations_updated', recommendations_updated)"
                " FROM arch.audit_run ORDER BY id DESC LIMIT 1").fetchone()[0]
        else:
            summary = conn.execute("SELECT arch.run_audit()").fetchone()[0]
        wall = time.perf_counter() - t0
        after = read_proc_status(pid)
        if isinstance(summary, str):
            summary = json.loads(summary)
        run = conn.execute("SELECT timings, statements_reused FROM arch.audit_run WHERE id = %s",
                           (summary.get("run_id"),)).fetchone()
        if run:
            summary["timings"] = run[0]
            summary["statements_reused"] = run[1]
    if isinstance(summary, str):
        summary = json.loads(summary)
    return AuditResult(
        summary=summary or {},
        wall_s=wall,
        peak_rss_kb=after.get("VmHWM") if after else None,
        baseline_rss_kb=before.get("VmHWM") if before else None,
        rss_anon_after_kb=after.get("RssAnon") if after else None,
    )


def print_table(headers: list[str], rows: list[list], out=sys.stdout) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


# ---------------------------------------------------------------------------------------
# bench_gen schema
# ---------------------------------------------------------------------------------------

COLUMNS = {
    # name: (type, generator expression over i)
    "c1": ("integer", "1 + floor(random() * {rows})::int"),
    "c2": ("integer", "floor(random() * 100)::int"),
    "c3": ("bigint", "floor(random() * 1000000)::bigint"),
    "c4": ("text", "substr(md5(i::text || '{t}'), 1, 12)"),
    "c5": ("timestamptz", "now() - random() * interval '365 days'"),
    "c6": ("numeric(10,2)", "round((random() * 1000)::numeric, 2)"),
    "c7": ("text", "'cat' || floor(20 * random() ^ 2)::int"),
    "c8": ("boolean", "random() < 0.1"),
}


def _marker(tables: int, rows: int) -> str:
    return f"bench_gen tables={tables} rows={rows} cols={len(COLUMNS)}"


def ensure_schema(conn, tables: int, rows: int, log=print) -> None:
    marker = _marker(tables, rows)
    have = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
    ).fetchone()
    if have and have[0] == marker:
        log(f"reusing schema {SCHEMA} ({tables} tables x {rows} rows)")
        return
    t0 = time.perf_counter()
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    conn.execute("SELECT setseed(0.17)")
    for t in range(tables):
        name = f"{SCHEMA}.t_{t:02d}"
        cols = ", ".join(f"{c} {typ}" for c, (typ, _) in COLUMNS.items())
        conn.execute(f"CREATE TABLE {name} (id bigint NOT NULL, {cols})")
        exprs = ", ".join(e.format(rows=rows, t=t) for _, e in COLUMNS.values())
        conn.execute(
            f"INSERT INTO {name} (id, {', '.join(COLUMNS)}) "
            f"SELECT i, {exprs} FROM generate_series(1, {rows}) AS i"
        )
        conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
    for t in range(tables):
        conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.t_{t:02d}")
    conn.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{marker}'")
    log(f"created schema {SCHEMA}: {tables} tables x {rows} rows in {time.perf_counter() - t0:.1f}s")


# ---------------------------------------------------------------------------------------
# statement generator
# ---------------------------------------------------------------------------------------

def _ts(rng: random.Random) -> str:
    return f"now() - interval '{rng.randint(1, 360)} days'"


#: Predicate forms per column: (form id, factory(rng, rows) -> SQL with literals).
PREDICATES = {
    "c1": [
        ("eq", lambda r, n: f"c1 = {r.randint(1, n)}"),
        ("between", lambda r, n: (lambda a: f"c1 BETWEEN {a} AND {a + r.randint(10, 200)}")(r.randint(1, n))),
        ("in", lambda r, n: f"c1 IN ({', '.join(str(r.randint(1, n)) for _ in range(3))})"),
    ],
    "c2": [
        ("eq", lambda r, n: f"c2 = {r.randint(0, 99)}"),
        ("lt", lambda r, n: f"c2 < {r.randint(1, 5)}"),
    ],
    "c3": [
        ("eq", lambda r, n: f"c3 = {r.randint(0, 999999)}"),
        ("between", lambda r, n: (lambda a: f"c3 BETWEEN {a} AND {a + 2000}")(r.randint(0, 990000))),
    ],
    "c4": [
        ("eq", lambda r, n: f"c4 = '{r.getrandbits(48):012x}'"),
        ("lower", lambda r, n: f"lower(c4) = '{r.getrandbits(48):012x}'"),
    ],
    "c5": [
        ("ge", lambda r, n: f"c5 >= now() - interval '{r.randint(1, 48)} hours'"),
        ("between", lambda r, n: (lambda d: f"c5 BETWEEN now() - interval '{d + 1} days'"
                                            f" AND now() - interval '{d} days'")(r.randint(1, 360))),
    ],
    "c6": [
        ("gt", lambda r, n: f"c6 > {r.randint(990, 999)}.{r.randint(0, 99):02d}"),
        ("between", lambda r, n: (lambda a: f"c6 BETWEEN {a} AND {a + 1}")(r.randint(0, 998))),
    ],
    "c7": [
        ("eq", lambda r, n: f"c7 = 'cat{r.randint(10, 19)}'"),
        ("in", lambda r, n: f"c7 IN ('cat{r.randint(12, 19)}', 'cat{r.randint(12, 19)}')"),
    ],
    "c8": [
        ("true", lambda r, n: "c8"),
        ("false", lambda r, n: "NOT c8"),
    ],
}

SELECTS = [
    ("star", "*", False),
    ("id", "id", False),
    ("id_c", "id, {c}", False),
    ("count", "count(*)", True),
    ("sum", "sum(c6) AS total, max(c5) AS latest", True),
    ("group", "{g}, count(*) AS n", True),
]

ORDER_COLUMNS = ["id", "c1", "c3", "c5", "c6"]


@dataclass(frozen=True)
class GenStatement:
    key: tuple
    build: object  # callable(rng) -> SQL text with literals


def generate_statements(n: int, tables: int, rows: int, seed: int = 7) -> list[GenStatement]:
    """N structurally distinct statements (distinct after pg_stat_statements normalisation)."""
    rng = random.Random(seed)
    seen: set[tuple] = set()
    out: list[GenStatement] = []
    cols = list(PREDICATES)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > n * 200:
            raise BenchError(f"cannot generate {n} distinct statements over {tables} tables")
        t = rng.randrange(tables)
        k = rng.choices((1, 2, 3), weights=(5, 4, 2))[0]
        pcols = sorted(rng.sample(cols, k))
        forms = tuple((c, rng.randrange(len(PREDICATES[c]))) for c in pcols)
        sel = rng.randrange(len(SELECTS))
        sel_name, sel_tpl, is_agg = SELECTS[sel]
        extra_col = rng.choice(["c1", "c2", "c3", "c5", "c6", "c7"])
        if is_agg:
            order = None
            limit = sel_name == "group" and rng.random() < 0.5
        else:
            order = rng.choice([None, None] + [(c, d) for c in ORDER_COLUMNS for d in ("", " DESC")])
            limit = (order is not None and rng.random() < 0.8) or rng.random() < 0.2
        key = (t, sel_name, extra_col if "{" in sel_tpl else None, forms, order, limit)
        if key in seen:
            continue
        seen.add(key)

        def build(r: random.Random, t=t, forms=forms, sel_tpl=sel_tpl, sel_name=sel_name,
                  extra_col=extra_col, order=order, limit=limit) -> str:
            where = " AND ".join(PREDICATES[c][f][1](r, rows) for c, f in forms)
            sel = sel_tpl.format(c=extra_col, g=extra_col)
            sql = f"SELECT {sel} FROM {SCHEMA}.t_{t:02d} WHERE {where}"
            if sel_name == "group":
                sql += f" GROUP BY {extra_col}"
                if limit:
                    sql += f" ORDER BY n DESC LIMIT {r.choice((5, 10, 20))}"
                return sql
            if order:
                sql += f" ORDER BY {order[0]}{order[1]}"
            if limit:
                sql += f" LIMIT {r.choice((1, 10, 20, 50, 100))}"
            return sql

        out.append(GenStatement(key=key, build=build))
    return out


#: IN-list lengths of the inlist workload: every length is its own pg_stat_statements entry.
IN_LENGTHS = tuple(range(2, 37))
IN_COLUMNS = ("c1", "c3")


def generate_inlist(n: int, tables: int, rows: int, seed: int = 7) -> list[GenStatement]:
    """Issue 10's scale workload: 70 % IN lists of many lengths (shape x column x length, each
    length a distinct statement for pg_stat_statements), 30 % distinct shapes."""
    n_in = int(n * 0.7)
    n_shapes = max(1, -(-n_in // len(IN_LENGTHS)))
    bases = generate_statements(n_shapes + (n - n_in), tables, rows, seed)
    out: list[GenStatement] = []
    for b, base in enumerate(bases[:n_shapes]):
        col = IN_COLUMNS[b % len(IN_COLUMNS)]
        for length in IN_LENGTHS:
            if len(out) >= n_in:
                break

            def build(r: random.Random, base=base, col=col, length=length) -> str:
                sql = base.build(r)
                hi = rows if col == "c1" else 999999
                values = ", ".join(str(r.randint(1, hi)) for _ in range(length))
                return sql.replace(" WHERE ", f" WHERE {col} IN ({values}) AND ", 1)

            out.append(GenStatement(key=("in", base.key, col, length), build=build))
    out.extend(bases[n_shapes:n_shapes + (n - len(out))])
    return out


def run_statements(conn, stmts: list[GenStatement], calls: int, seed: int = 11, progress=None) -> float:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    total = len(stmts) * calls
    done = 0
    with conn.cursor() as cur:
        for s in stmts:
            for _ in range(calls):
                cur.execute(s.build(rng))
                cur.fetchall()
                done += 1
                if progress:
                    progress(done, total)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--statements", type=int, nargs="+", default=[100, 1000],
                    help="numbers of distinct statements to audit (default: 100 1000)")
    ap.add_argument("--tables", type=int, default=40)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--calls", type=int, default=2, help="executions per statement (default 2)")
    ap.add_argument("--audit-timeout-ms", type=int, default=0,
                    help="statement_timeout for the audit call (default 0: none)")
    ap.add_argument("--keep", action="store_true", help=f"keep schema {SCHEMA}")
    ap.add_argument("--workload", choices=("shapes", "inlist"), default="shapes",
                    help="shapes: N distinct shapes; inlist: issue 10's IN lists of many lengths (default shapes)")
    ap.add_argument("--embedding", choices=("model", "hashing", "both"), default="model",
                    help="embedding_model during the audit: the real all-MiniLM-L6-v2, hashing, or both")
    ap.add_argument("--index-set", choices=("off", "on", "both"), default="off",
                    help="arch.settings.audit_index_set during the audit (default off)")
    ap.add_argument("--call", choices=("select", "batched"), default="select",
                    help="SELECT arch.run_audit() or CALL arch.run_audit_batched() (default select)")
    ap.add_argument("--reuse", action="store_true",
                    help="after each audit, run the workload again and audit again with reuse_analyses on "
                         "(nothing changed: the statements reuse the first audit's analyses)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None

    embeddings = {"model": ["all-MiniLM-L6-v2"], "hashing": ["hashing"],
                  "both": ["hashing", "all-MiniLM-L6-v2"]}[args.embedding]
    index_sets = {"off": [False], "on": [True], "both": [False, True]}[args.index_set]
    gen = generate_inlist if args.workload == "inlist" else generate_statements
    results = []
    try:
        with connect(args.dsn) as conn:
            check_arch(conn)
            mx = pgss_max(conn)
            need = max(args.statements) + 50
            if mx is not None and mx < need:
                log(f"WARNING: pg_stat_statements.max = {mx} < {need}: statements will be evicted "
                    f"and the audit will see fewer than asked (set pg_stat_statements.max >= {need})")
            ensure_schema(conn, args.tables, args.rows, log)
            for n in args.statements:
                stmts = gen(n, args.tables, args.rows)
                runs = [(model, iset, again) for model in embeddings for iset in index_sets
                        for again in ((False, True) if args.reuse else (False,))]
                for model, iset, again in runs:
                    # a first audit: no earlier analysis to reuse (arch.statement_analysis emptied); with
                    # --reuse, a second audit of the same workload that reuses the first one's
                    with AuditSettings(conn, **BENCH_SETTINGS, max_statements=n + 100, embedding_model=model,
                                       audit_index_set=iset, reuse_analyses=True):
                        if not again:
                            conn.execute("DELETE FROM arch.statement_analysis")
                        reset_pgss(conn)
                        bar = tqdm(total=n * args.calls, desc=f"{n} statements", unit="stmt",
                                   file=sys.stderr, leave=False,
                                   disable=not sys.stderr.isatty()) if tqdm else None
                        run_s = run_statements(
                            conn, stmts, args.calls,
                            progress=(lambda d, t, bar=bar: bar.update(d - bar.n)) if bar else None)
                        if bar:
                            bar.close()
                        in_pgss = conn.execute(
                            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s",
                            (f"%{SCHEMA}.t\\_%",),
                        ).fetchone()[0]
                        on_off = "on" if iset else "off"
                        log(f"{n} statements x {args.calls} executed in {run_s:.1f}s; {in_pgss} entries in "
                            f"pg_stat_statements; audit ({args.call}, {model}, index set {on_off})")
                        res = timed_audit(args.dsn, args.audit_timeout_ms, batched=args.call == "batched")
                    s = res.summary
                    analysed = s.get("statements_analyzed")
                    tm = s.get("timings") or {}
                    results.append({
                        "statements": n,
                        "embedding": "hashing" if model == "hashing" else "model",
                        "index_set": "on" if iset else "off",
                        "audit": "second (reuse)" if again else "first",
                        "reused": s.get("statements_reused"),
                        "in_pg_stat_statements": in_pgss,
                        "selected": s.get("statements_selected"),
                        "analysed": analysed,
                        "grouped": s.get("statements_grouped"),
                        "recommendations": (s.get("recommendations_new") or 0)
                        + (s.get("recommendations_updated") or 0),
                        "skipped": s.get("skipped"),
                        "batches": s.get("batches"),
                        "wall_s": round(res.wall_s, 2),
                        "analyze_s": round(tm.get("analyze_ms", 0) / 1000, 1),
                        "index_set_s": round(tm.get("index_set_ms", 0) / 1000, 1),
                        "peak_rss_mb": round(res.peak_rss_kb / 1024, 1) if res.peak_rss_kb else None,
                        "baseline_rss_mb": round(res.baseline_rss_kb / 1024, 1) if res.baseline_rss_kb else None,
                        "statements_per_s": round((s.get("statements_selected") or 0) / res.wall_s, 1)
                        if res.wall_s else None,
                        "summary": s,
                    })
                    log(f"  -> {results[-1]['wall_s']} s, peak {results[-1]['peak_rss_mb']} MB")
            if not args.keep:
                conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    except BenchError as e:
        print(f"bench_audit: {e}", file=sys.stderr)
        return 2

    print_table(
        ["statements", "embedding", "index set", "audit", "in pgss", "selected", "analysed", "grouped", "reused",
         "recommendations", "skipped", "batches", "wall s", "analyse s", "set s", "peak RSS MB", "(start MB)",
         "statements/s"],
        [[r["statements"], r["embedding"], r["index_set"], r["audit"], r["in_pg_stat_statements"], r["selected"],
          r["analysed"], r["grouped"], r["reused"], r["recommendations"], _n(r["skipped"]), r["batches"], r["wall_s"],
          r["analyze_s"], r["index_set_s"], r["peak_rss_mb"] or "n/a", r["baseline_rss_mb"] or "n/a",
          r["statements_per_s"]] for r in results],
    )
    if any(r["peak_rss_mb"] is None for r in results):
        print("(peak RSS n/a: /proc/<backend pid>/status is not readable -- run on the database "
              "host as root or as the server's OS user)")
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


def _n(v):
    """skipped may be a count or a list/dict of reasons."""
    return len(v) if isinstance(v, (list, dict)) else v


if __name__ == "__main__":
    sys.exit(main())
