"""TPC-H for the benches: load it with DuckDB's generator, get the 22 queries as PostgreSQL.

Shared by ``bench_tpch.py`` and ``bench_advisors.py``:

- ``duckdb_tpch()`` -- a DuckDB connection with the tpch extension (PyPI packages
  ``duckdb==1.5.5`` and ``duckdb-extension-tpch==1.5.5``; the extension file shipped in the wheel is
  LOADed by path, nothing is downloaded);
- ``tpch_queries(con)`` -- the 22 queries of DuckDB's ``tpch_queries()``, tables qualified with
  ``tpch.``, transpiled to PostgreSQL with sqlglot;
- ``ensure_tpch(conn, con, sf)`` -- schema ``tpch`` at scale factor ``sf`` (primary keys only), reused
  when the same scale factor is already loaded;
- ``run_queries`` / ``plan_cost`` -- execute the queries under a statement timeout, planner cost.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time

import psycopg
import psycopg.sql

from bench_audit import BenchError

SCHEMA = "tpch"

TABLES = ("region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem")

PRIMARY_KEYS = {
    "region": ("r_regionkey",),
    "nation": ("n_nationkey",),
    "part": ("p_partkey",),
    "supplier": ("s_suppkey",),
    "partsupp": ("ps_partkey", "ps_suppkey"),
    "customer": ("c_custkey",),
    "orders": ("o_orderkey",),
    "lineitem": ("l_orderkey", "l_linenumber"),
}


# ---------------------------------------------------------------------------------------
# DuckDB side
# ---------------------------------------------------------------------------------------

def duckdb_tpch():
    """A DuckDB connection with the tpch extension loaded, offline."""
    try:
        import duckdb
    except ImportError as e:
        raise BenchError("needs duckdb: python -m pip install duckdb==1.5.5 duckdb-extension-tpch==1.5.5") from e
    con = duckdb.connect()
    errors = []
    try:
        import duckdb_extension_tpch

        base = os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "extensions")
        paths = [os.path.join(base, f"v{duckdb.__version__}", "tpch.duckdb_extension")]
        paths += sorted(glob.glob(os.path.join(base, "*", "tpch.duckdb_extension")), reverse=True)
        for p in paths:
            if os.path.exists(p):
                try:
                    con.execute(f"LOAD '{p}'")
                    return con
                except duckdb.Error as e:
                    errors.append(f"{p}: {e}")
    except ImportError:
        errors.append("package duckdb-extension-tpch is not installed")
    try:  # already installed in DuckDB's own extension directory?
        con.execute("LOAD tpch")
        return con
    except duckdb.Error as e:
        errors.append(f"LOAD tpch: {e}")
    raise BenchError("cannot load DuckDB's tpch extension (python -m pip install "
                     "duckdb==1.5.5 duckdb-extension-tpch==1.5.5): " + "; ".join(errors))


_PG_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "VARCHAR": "text", "DATE": "date",
             "DOUBLE": "double precision", "BOOLEAN": "boolean", "SMALLINT": "smallint"}


def _pg_type(t: str) -> str:
    if t.startswith("DECIMAL"):
        return "numeric" + t[len("DECIMAL"):]
    return _PG_TYPES.get(t, "text")


def tpch_queries(con) -> dict[int, str]:
    """The 22 TPC-H queries as PostgreSQL, tables qualified with ``tpch.``."""
    try:
        import sqlglot
        from sqlglot import exp
    except ImportError as e:
        raise BenchError("needs sqlglot (a pg_architect dependency): python -m pip install sqlglot") from e
    out = {}
    for nr, q in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY query_nr").fetchall():
        tree = sqlglot.parse_one(q, read="duckdb")
        for t in tree.find_all(exp.Table):
            if t.name in TABLES and not t.db:
                t.set("db", exp.to_identifier(SCHEMA))
        out[int(nr)] = tree.sql(dialect="postgres", pretty=True)
    return out


# ---------------------------------------------------------------------------------------
# PostgreSQL side
# ---------------------------------------------------------------------------------------

def _marker(sf: float) -> str:
    return f"TPC-H sf={sf:g} (bench_tpch.py)"


def ensure_tpch(conn, con, sf: float, reload: bool, log=print) -> bool:
    """Load TPC-H into schema tpch unless the same scale factor is there. True if loaded now."""
    marker = _marker(sf)
    have = conn.execute(
        "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
    ).fetchone()
    if have and have[0] == marker and not reload:
        n = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r'", (SCHEMA, list(TABLES))
        ).fetchone()[0]
        if n == len(TABLES):
            log(f"reusing schema {SCHEMA} ({marker})")
            return False
    if have and not reload and have[0] and not have[0].startswith("TPC-H sf="):
        raise BenchError(f"schema {SCHEMA} exists and was not made by this bench: drop it or use another database")
    t0 = time.perf_counter()
    con.execute(f"CALL dbgen(sf={sf})")
    log(f"dbgen sf={sf:g}: {time.perf_counter() - t0:.1f}s")
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    with tempfile.TemporaryDirectory(prefix="bench_tpch_") as tmp:
        for t in TABLES:
            t1 = time.perf_counter()
            cols = con.execute(f"DESCRIBE {t}").fetchall()
            ddl = ", ".join(f"{c[0]} {_pg_type(c[1])} NOT NULL" for c in cols)
            conn.execute(f"CREATE TABLE {SCHEMA}.{t} ({ddl})")
            path = os.path.join(tmp, f"{t}.csv")
            con.execute(f"COPY {t} TO '{path}' (FORMAT csv, HEADER false)")
            with conn.cursor() as cur, open(path, "rb") as f:
                with cur.copy(f"COPY {SCHEMA}.{t} FROM STDIN (FORMAT csv)") as cp:
                    while chunk := f.read(1 << 20):
                        cp.write(chunk)
            os.unlink(path)
            conn.execute(f"ALTER TABLE {SCHEMA}.{t} ADD PRIMARY KEY ({', '.join(PRIMARY_KEYS[t])})")
            n = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            log(f"  {SCHEMA}.{t}: {n} rows in {time.perf_counter() - t1:.1f}s")
    for t in TABLES:
        conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.{t}")
    conn.execute(f"COMMENT ON SCHEMA {SCHEMA} IS '{marker}'")
    log(f"loaded TPC-H sf={sf:g} into {SCHEMA} in {time.perf_counter() - t0:.1f}s")
    return True


#: A query whose first execution took longer than this is not repeated.
REPEAT_UNDER_MS = 5000


def run_queries(conn, queries: dict[int, str], runs: int, timeout_s: float, log=print) -> dict[int, dict]:
    """Execute each query up to ``runs`` times; returns {nr: {"status", "calls", "mean_ms", "error"}}."""
    res = {}
    conn.execute(psycopg.sql.SQL("SET statement_timeout = {}").format(
        psycopg.sql.Literal(int(timeout_s * 1000))))
    try:
        for nr, q in queries.items():
            times = []
            status, err = "ok", None
            for i in range(runs):
                if i and times[0] > REPEAT_UNDER_MS:
                    break  # one call is enough to be in pg_stat_statements: spare slow ones
                t0 = time.perf_counter()
                try:
                    conn.execute(q).fetchall()
                except psycopg.errors.QueryCanceled:
                    status, err = "timeout", f"> {timeout_s:g}s"
                    break
                except psycopg.Error as e:
                    status, err = "error", str(e).strip().splitlines()[0]
                    break
                times.append((time.perf_counter() - t0) * 1000)
            mean = sum(times) / len(times) if times else None
            res[nr] = {"status": status, "calls": len(times), "mean_ms": mean, "error": err}
            log(f"  q{nr:02d}: {status}" + (f" {mean:.0f} ms" if mean is not None else "")
                + (f" ({err})" if err else ""))
    finally:
        conn.execute("RESET statement_timeout")
    return res


def plan_cost(conn, q: str) -> float | None:
    try:
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + q).fetchone()[0]
    except psycopg.Error:
        return None
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Total Cost"])
