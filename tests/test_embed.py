"""What gets embedded (the canonical text of a statement), the feature-hashing embedder, and the
checks of the configured model. The real model is exercised in tests/test_embed_model.py."""

import json
import math

import psycopg
import pytest

from pg_architect import analyze, embed
from pg_architect import install as inst

COLUMNS = {
    "orders": ["id", "user_id", "status", "created_at", "total"],
    "users": ["id", "email", "country", "name"],
    "behavior_log": ["id", "user_id", "event_type", "created_at"],
}


class FakeCatalog:
    def resolve_table(self, schema, name):
        return ("public", name) if name in COLUMNS and schema in (None, "public") else None

    def columns(self, schema, table):
        return {c: "integer" for c in COLUMNS[table]}


def canonical(sql):
    cat = FakeCatalog()
    try:
        info = analyze.analyze_statement(sql, cat)
    except analyze.SkipStatement:
        info = None
    return embed.canonical_text(sql, info, cat)


def test_canonical_text_ignores_aliases_whitespace_and_parameter_numbers():
    forms = [
        "SELECT o.id, o.total FROM orders o WHERE o.user_id = $3 AND o.status = $1 ORDER BY o.created_at DESC LIMIT $2",
        "select  id , total\n  from public.orders   where user_id=$1 and orders.status = $2\n order by created_at desc limit $3;",
        "SELECT x.id, x.total FROM orders AS x WHERE x.user_id = 42 AND x.status = 'pending'"
        " ORDER BY x.created_at DESC LIMIT 20 -- from the app",
    ]
    texts = {canonical(f).text for f in forms}
    assert len(texts) == 1, texts
    text = texts.pop()
    assert text.splitlines() == [
        "SELECT orders.id AS id, orders.total AS total FROM public.orders WHERE orders.user_id = $1"
        " AND orders.status = $2 ORDER BY orders.created_at DESC LIMIT $3",
        "tables: public.orders",
        "columns: public.orders.created_at order, public.orders.status =, public.orders.user_id =",
    ]


def test_canonical_text_of_joins_subqueries_and_dml():
    a = canonical("SELECT count(*) FROM orders a JOIN users b ON b.id = a.user_id WHERE b.country = 'DE'").text
    b = canonical("SELECT count(*) FROM orders JOIN users u ON u.id = orders.user_id WHERE u.country = $1").text
    assert a == b
    assert a.startswith("SELECT count(*) AS _col_0 FROM public.orders JOIN public.users ON users.id = orders.user_id")
    assert "public.users.country =" in a and "public.orders.user_id join" in a
    self_join = canonical("SELECT p.id FROM orders p JOIN orders q ON p.user_id = q.user_id WHERE q.id = 5").text
    assert "FROM public.orders JOIN public.orders AS orders_2 ON orders.user_id = orders_2.user_id" in self_join
    derived = canonical("SELECT t.n FROM (SELECT count(*) n FROM behavior_log"
                        " WHERE created_at > now() - interval '1 day') t").text
    assert "AS sub_1" in derived and "CAST($1 AS INTERVAL)" in derived
    upd = canonical("UPDATE orders o SET status = 'x' WHERE o.id = $1").text
    assert upd.startswith("UPDATE public.orders SET status = $1 WHERE orders.id = $2")
    star = {canonical("SELECT x.* FROM orders x WHERE x.id = 1").text, canonical("SELECT * FROM orders WHERE id = $1").text}
    assert len(star) == 1


def test_canonical_text_of_an_unparseable_statement_is_its_collapsed_text():
    c = canonical("SELECT * FROM orders WHERE id = = 1")
    assert not c.normalized and c.text == "SELECT * FROM orders WHERE id = = 1"


def test_hashing_embedder_is_a_real_embedder():
    e = embed.HashingEmbedder()
    a, a2, other = e.embed_many([
        canonical("SELECT * FROM orders o WHERE o.user_id = $1").text,
        canonical("SELECT * FROM orders o WHERE o.user_id = $1 AND o.status = $2").text,
        canonical("SELECT count(*) FROM behavior_log WHERE event_type = $1 GROUP BY user_id").text,
    ])
    cos = lambda u, v: sum(x * y for x, y in zip(u, v))  # noqa: E731
    assert len(a) == 384 and math.isclose(cos(a, a), 1.0)
    assert e.embed("x") == embed.HashingEmbedder().embed("x")  # deterministic across instances
    assert cos(a, a2) > 0.7 > cos(a, other)
    assert len({tuple(v) for v in (a, a2, other)}) == 3


def test_arch_embed_with_the_hashing_model(db):
    db.sql("UPDATE arch.settings SET embedding_model = 'hashing'")
    got = json.loads(db.value("SELECT arch.embed('SELECT 1')::text"))
    want = embed.HashingEmbedder().embed("SELECT 1")
    assert len(got) == 384 and max(abs(x - y) for x, y in zip(got, want)) < 1e-6
    assert db.value("SELECT arch.embed(NULL) IS NULL")


def test_canonical_statement_function(db):
    a = db.value("SELECT arch.canonical_statement('select o.* from orders o where o.user_id = 7')")
    b = db.value("SELECT arch.canonical_statement($q$SELECT * FROM public.orders WHERE user_id = $1$q$)")
    assert a == b and a.startswith("SELECT * FROM public.orders WHERE orders.user_id = $1")


def test_audit_that_remembers_nothing_does_not_load_the_model(low_thresholds):
    """Loading the model costs time and memory: an audit with nothing to remember skips it."""
    db = low_thresholds
    db.sql("UPDATE arch.settings SET embedding_model = DEFAULT")
    db.run("SELECT * FROM users WHERE id = %s", [(1,), (2,)])
    summary = db.audit()
    assert summary["recommendations_new"] == 0
    assert summary["knowledge"]["model"] == "all-MiniLM-L6-v2" and summary["knowledge"]["model_loaded"] is False
    db.sql("""DO $$
import sys
if {"torch", "sentence_transformers", "onnxruntime", "tokenizers"} & set(sys.modules):
    plpy.error("the audit loaded an embedding runtime")
$$ LANGUAGE plpython3u""")
    assert not db.value("SELECT EXISTS (SELECT 1 FROM arch.knowledge)")


@pytest.fixture
def model_dir(tmp_path):
    """A sentence-transformers directory declaring 768 dimensions (like all-mpnet-base-v2)."""
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768}))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 768}))
    tmp_path.chmod(0o755)
    return tmp_path


def test_model_of_another_dimension_is_refused(db, dsn, model_dir):
    db.sql("UPDATE arch.settings SET embedding_model = %s", (str(model_dir),))
    with pytest.raises(psycopg.errors.DataException) as err:
        db.sql("SELECT arch.embed('x')")
    assert "produces 768-dimensional vectors, not 384" in str(err.value)
    assert "all-MiniLM-L6-v2" in err.value.diag.message_hint
    # ... and the install (or upgrade) says so before anything else happens.
    with psycopg.connect(dsn) as conn, pytest.raises(inst.InstallError, match="768-dimensional vectors, not 384"):
        inst.install(conn)


def test_missing_model_directory_is_refused(db, tmp_path):
    db.sql("UPDATE arch.settings SET embedding_model = %s", (str(tmp_path / "nowhere"),))
    with pytest.raises(psycopg.Error, match="does not exist"):
        db.sql("SELECT * FROM arch.similar_optimizations('SELECT 1')")


def test_model_check_reads_configuration_only():
    info = embed.check_model("all-MiniLM-L6-v2")
    assert info["dimension"] == 384 and info["path"].endswith("model") and info["kind"] == "onnx"
    assert embed.check_model("hashing")["dimension"] == 384
    with pytest.raises(Exception, match="unknown embedding model"):
        embed.check_model("bert-base")


def test_sentence_transformers_model_without_torch_says_which_extra_to_install(db, model_dir):
    """A path to a sentence-transformers model needs torch, which the default install does not have."""
    (model_dir / "config.json").write_text(json.dumps({"hidden_size": 384}))
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384}))
    db.sql("UPDATE arch.settings SET embedding_model = %s", (str(model_dir),))
    assert json.loads(db.value("SELECT arch._check_embedding_model()::text"))["kind"] == "sentence-transformers"
    with pytest.raises(psycopg.Error) as err:
        db.sql("SELECT arch.embed('x')")
    assert "cannot load embedding model" in str(err.value)
    assert "pg-architect[sentence-transformers]" in err.value.diag.message_hint
