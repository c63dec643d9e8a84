"""The knowledge base: every recommendation remembered with its embedding, recall of rejected and
similar past cases, applied indexes detected by definition, outcomes measured from snapshots,
calibration, pruning.

These tests use the deterministic feature-hashing embedder (``embedding_model = 'hashing'``, set
by the ``low_thresholds`` fixture); tests/test_embed_model.py covers the real model.
"""

import contextlib
import datetime
import json

import psycopg
import pytest

from conftest import recommendations
from pg_architect import knowledge, outcomes


@contextlib.contextmanager
def table(db, name, rows=20_000):
    """A table of the DBA's application: id, cat (500 values), grp (7 values), v."""
    db.sql(f"CREATE TABLE {name} AS SELECT g AS id, g % 500 AS cat, g % 7 AS grp, md5(g::text) AS v"
           f" FROM generate_series(1, {rows}) g")
    db.sql(f"ANALYZE {name}")
    try:
        yield name
    finally:
        db.sql(f"DROP TABLE IF EXISTS {name}")


def by_cat(db, name, calls=20):
    db.run(f"SELECT * FROM {name} WHERE cat = %s", [(i,) for i in range(calls)])


def rec_on(db, name):
    rows = [r for r in recommendations(db) if r["table_name"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def flush_stats(db):
    """Make this backend's index-scan counters visible to pg_stat_user_indexes now."""
    db.sql("SELECT pg_stat_force_next_flush()")


def apply_by_hand(db, name, index_name, *, blocked=False, calls=20):
    """Audit, create the recommended index by hand under another name, audit (applied), run the
    statement again (with index scans forbidden when ``blocked``), audit (measured)."""
    by_cat(db, name, calls)
    db.audit()
    rec = rec_on(db, name)
    db.sql(f"CREATE INDEX {index_name} ON {name} (cat)")
    db.audit()
    if blocked:
        db.sql("SET enable_indexscan = off")
        db.sql("SET enable_bitmapscan = off")
        db.sql("SET enable_indexonlyscan = off")
    by_cat(db, name, calls)
    db.sql("RESET ALL")
    flush_stats(db)
    db.audit()
    return db.dicts("SELECT * FROM arch.recommendation WHERE id = %s", (rec["id"],))[0]


# ------------------------------------------------------------------------------------------
# Remember


def test_every_recommendation_is_remembered_with_its_embedding(low_thresholds):
    db = low_thresholds
    # the same statements again are reviewed again (not reused: tests/test_audit_scale.py)
    db.sql("UPDATE arch.settings SET reuse_analyses = false")
    with table(db, "k_mem"):
        by_cat(db, "k_mem", 5)
        db.run("SELECT id FROM k_mem WHERE grp = %s AND cat = %s", [(1, 2), (2, 3)])
        summary = db.audit()
        cases = db.dicts("""SELECT k.*, vector_dims(k.embedding) AS dims, vector_norm(k.embedding) AS norm
                            FROM arch.knowledge k JOIN arch.recommendation r ON r.id = k.recommendation_id
                            WHERE r.table_name = 'k_mem'""")
        assert len(cases) == 2
        for c in cases:
            assert c["dims"] == 384 and abs(c["norm"] - 1) < 1e-4
            assert c["embedding_model"] == "hashing"
            assert "tables: public.k_mem" in c["canonical"] and "public.k_mem.cat =" in c["canonical"]
        k = summary["knowledge"]
        assert k["model"] == "hashing" and k["cases_stored"] >= 2 and k["embedded"] >= 2
        # Duplicate work is avoided: the same statements again are not embedded again, and their
        # cases are updated, not added.
        by_cat(db, "k_mem", 5)
        db.run("SELECT id FROM k_mem WHERE grp = %s AND cat = %s", [(1, 2)])
        again = db.audit()["knowledge"]
        assert again.get("embedded", 0) == 0 and again["embeddings_reused"] >= 2
        assert db.value("SELECT count(*) FROM arch.knowledge") == len(cases) + sum(
            1 for r in recommendations(db) if r["table_name"] != "k_mem")
        assert db.value("SELECT count(*) FROM arch.knowledge WHERE last_audit_run_id = %s",
                        (db.value("SELECT max(id) FROM arch.audit_run"),)) >= 2


def test_similar_optimizations_finds_the_case_of_a_reformatted_statement(low_thresholds):
    db = low_thresholds
    with table(db, "k_sim"):
        by_cat(db, "k_sim", 5)
        db.audit()
        rec = rec_on(db, "k_sim")
        rows = db.dicts("SELECT * FROM arch.similar_optimizations("
                        "'select  x.*\n  from public.k_sim AS x where x.cat=42', 3)")
        assert rows[0]["recommendation_id"] == rec["id"]
        assert rows[0]["similarity"] > 0.999
        assert rows[0]["statement"] == "SELECT * FROM k_sim WHERE cat = $1"
        assert rows[0]["status"] == "proposed" and rows[0]["kind"] == "index"
        assert rows[0]["ddl"] == rec["ddl"] and rows[0]["table_name"] == "public.k_sim"
        assert rows[0]["outcome"] is None and rows[0]["rejected_reason"] is None
        assert [r["similarity"] for r in rows] == sorted((r["similarity"] for r in rows), reverse=True)


def test_similar_optimizations_argument_errors(db):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be between 1 and 1000"):
        db.sql("SELECT * FROM arch.similar_optimizations('SELECT 1', 0)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="empty"):
        db.sql("SELECT * FROM arch.similar_optimizations('  ')")


def test_lookup_uses_the_hnsw_index(low_thresholds):
    db = low_thresholds
    db.sql("""INSERT INTO arch.recommendation (fingerprint, schema_name, table_name, definition, ddl, rationale,
                                               cost_before, cost_after, est_gain_pct, confidence)
              VALUES ('seed', 'public', 'seed', 'seed', 'CREATE INDEX seed', 'seeded', 100, 10, 90, 0.5)""")
    db.sql("""INSERT INTO arch.knowledge (recommendation_id, dbid, userid, queryid, query, canonical,
                                          embedding_model, embedding)
              SELECT (SELECT id FROM arch.recommendation), 0, 0, g, 'q' || g, 'c' || g, 'hashing',
                     (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE g > 0)::vector
              FROM generate_series(1, 3000) g""")
    db.sql("ANALYZE arch.knowledge")
    vs = '"public"'
    probe = db.value("SELECT embedding::text FROM arch.knowledge WHERE queryid = 1234")
    for sql in (knowledge.lookup_sql(vs), knowledge.similar_sql(vs)):
        db.sql("DEALLOCATE ALL")
        db.sql(f"PREPARE pga_lookup (text, text, int) AS {sql}")
        plan = "\n".join(r[0] for r in db.sql(f"EXPLAIN EXECUTE pga_lookup('{probe}', 'hashing', 5)"))
        assert "Index Scan using knowledge_embedding_idx on knowledge" in plan, plan
    db.sql("DEALLOCATE ALL")
    # The function finds the nearest case (the probe's own vector) through that lookup.
    got = db.dicts("SELECT c.query FROM arch.knowledge c ORDER BY c.embedding <=> %s::vector LIMIT 1", (probe,))
    assert got == [{"query": "q1234"}]


# ------------------------------------------------------------------------------------------
# Rejected


def test_rejected_recommendation_is_not_proposed_again_until_cost_grows(low_thresholds):
    db = low_thresholds
    # the same statements again are reviewed again (not reused: tests/test_audit_scale.py)
    db.sql("UPDATE arch.settings SET reuse_analyses = false")
    with table(db, "k_rej"):
        by_cat(db, "k_rej", 5)
        db.audit()
        rec = rec_on(db, "k_rej")
        db.sql("UPDATE arch.recommendation SET status = 'rejected', rejected_reason = 'the table is write-heavy'"
               " WHERE id = %s", (rec["id"],))
        db.sql("UPDATE arch.recommendation SET rejected_at = '2026-01-15 12:00+00' WHERE id = %s", (rec["id"],))

        by_cat(db, "k_rej", 5)
        summary = db.audit()
        assert summary["knowledge"]["skipped_rejected"] == 1
        again = rec_on(db, "k_rej")
        assert again["status"] == "rejected" and again["times_seen"] == 1
        assert db.value("SELECT count(*) FROM arch.pending_recommendations WHERE table_name = 'public.k_rej'") == 0
        skip = db.dicts("SELECT * FROM arch.recall_decisions WHERE action = 'skipped_rejected'")
        assert len(skip) == 1 and skip[0]["recommendation_id"] == rec["id"]
        assert "rejected on 2026-01-15 (the table is write-heavy)" in skip[0]["reason"]
        assert "has not grown 2x" in skip[0]["reason"]
        assert skip[0]["query"] == "SELECT * FROM k_rej WHERE cat = $1"

        # The table grows fourfold: the statement's cost passes reproposal_cost_factor (2).
        db.sql("INSERT INTO k_rej SELECT g, g % 500, g % 7, md5(g::text) FROM generate_series(20001, 80000) g")
        db.sql("ANALYZE k_rej")
        by_cat(db, "k_rej", 5)
        summary = db.audit()
        assert summary["knowledge"]["reproposed"] == 1
        back = rec_on(db, "k_rej")
        assert back["status"] == "proposed" and back["reproposed_at"] is not None
        assert back["rationale"].startswith("Re-proposed: rejected on 2026-01-15 (the table is write-heavy)")
        assert back["cost_before"] > 2 * rec["cost_before"]
        assert db.value("SELECT count(*) FROM arch.recall_decisions WHERE action = 'reproposed'") == 1


def test_reproposal_factor_is_a_setting(low_thresholds):
    db = low_thresholds
    with table(db, "k_fac"):
        by_cat(db, "k_fac", 3)
        db.audit()
        rec = rec_on(db, "k_fac")
        db.sql("UPDATE arch.recommendation SET status = 'rejected' WHERE id = %s", (rec["id"],))
        db.sql("UPDATE arch.settings SET reproposal_cost_factor = 1")  # any cost re-proposes it
        by_cat(db, "k_fac", 3)
        assert db.audit()["knowledge"]["reproposed"] == 1
        assert rec_on(db, "k_fac")["status"] == "proposed"
    with pytest.raises(psycopg.errors.CheckViolation, match="settings_reproposal_cost_factor"):
        db.sql("UPDATE arch.settings SET reproposal_cost_factor = 0.5")


# ------------------------------------------------------------------------------------------
# Applied and outcomes


def test_index_created_by_hand_under_another_name_is_applied(low_thresholds):
    db = low_thresholds
    with table(db, "k_app"):
        by_cat(db, "k_app", 5)
        db.audit()
        rec = rec_on(db, "k_app")
        assert rec["index_kind"] == "single" and rec["columns"] == ["cat"]
        # Other definitions do not count, even with the same leading column.
        db.sql("CREATE INDEX k_app_grp ON k_app (grp)")
        db.sql("CREATE INDEX k_app_cat_grp ON k_app (cat, grp)")
        by_cat(db, "k_app", 2)
        assert db.audit()["knowledge"]["applied_detected"] == 0
        assert rec_on(db, "k_app")["status"] == "proposed"
        db.sql("DROP INDEX k_app_cat_grp")
        before = db.value("SELECT now()")
        db.sql("CREATE INDEX whatever_the_dba_called_it ON k_app(cat)")  # unqualified, no USING
        summary = db.audit()
        assert summary["knowledge"]["applied_detected"] == 1
        got = rec_on(db, "k_app")
        assert got["status"] == "applied" and got["applied_index"] == "whatever_the_dba_called_it"
        assert before <= got["applied_at"] <= db.value("SELECT now()")
        assert got["index_signature"] == "public.k_app USING btree (cat)"
        assert got["applied_snapshot_id"] == db.value("SELECT max(id) FROM arch.snapshot")
        assert got["applied_prev_snapshot_id"] < got["applied_snapshot_id"]
        outcome = db.dicts("SELECT * FROM arch.outcomes")
        assert [o["id"] for o in outcome] == [rec["id"]] and outcome[0]["outcome"] is None
        assert "waiting for the statements" in outcome[0]["outcome_detail"]


def test_measured_gain_from_two_snapshot_windows(low_thresholds):
    db = low_thresholds
    with table(db, "k_gain", rows=100_000):
        rec = apply_by_hand(db, "k_gain", "k_gain_by_hand", calls=30)
        assert rec["status"] == "applied" and rec["outcome"] == "improved", rec["outcome_detail"]
        assert rec["calls_before"] == 30 and rec["calls_after"] == 30
        assert rec["mean_time_after_ms"] < rec["mean_time_before_ms"]
        assert rec["measured_gain_pct"] > 50
        assert rec["time_per_call_before_ms"] >= rec["mean_time_before_ms"]
        assert rec["index_scans"] > 0
        assert "faster" in rec["outcome_detail"] and "30 calls before" in rec["outcome_detail"]
        row = db.dicts("SELECT * FROM arch.outcomes")[0]
        assert row["failed"] is False and float(row["measured_gain_pct"]) == round(rec["measured_gain_pct"], 1)
        case = db.dicts("SELECT * FROM arch.knowledge WHERE recommendation_id = %s", (rec["id"],))[0]
        assert case["outcome"] == "improved" and case["calls_before"] == 30 and case["calls_after"] == 30
        assert abs(case["measured_gain_pct"] - rec["measured_gain_pct"]) < 1e-6
        sim = db.dicts("SELECT * FROM arch.similar_optimizations('SELECT * FROM k_gain WHERE cat = 7', 1)")
        assert sim[0]["outcome"] == "improved" and sim[0]["applied_index"] == "k_gain_by_hand"


def test_applied_improvement_raises_confidence_of_a_similar_statement(low_thresholds):
    db = low_thresholds
    with table(db, "k_first", rows=100_000), table(db, "k_second", rows=100_000):
        first = apply_by_hand(db, "k_first", "k_first_cat")
        assert first["outcome"] == "improved", first["outcome_detail"]
        db.sql("UPDATE arch.settings SET similarity_threshold = 0.6")  # hashing: the table names differ
        by_cat(db, "k_second", 5)
        summary = db.audit()
        assert summary["knowledge"]["raised"] == 1
        new = rec_on(db, "k_second")
        assert new["confidence"] > new["confidence_estimate"]
        assert new["similar_to"][0]["recommendation_id"] == first["id"]
        assert new["similar_to"][0]["outcome"] == "improved" and new["similar_to"][0]["similarity"] >= 0.6
        assert "A similar statement (similarity" in new["rationale"]
        assert f"recommendation #{first['id']}" in new["rationale"] and "k_first_cat" in new["rationale"]
        assert new["confidence_factors"]["history"]["raised_by"] == first["id"]
        dec = db.dicts("SELECT * FROM arch.recall_decisions WHERE action = 'raised'")
        assert dec[0]["similar_recommendation_id"] == first["id"] and dec[0]["recommendation_id"] == new["id"]
        assert new["similar_to"][0]["effect"] == "raised"


def test_unused_index_is_a_failed_recommendation_and_lowers_similar_ones(low_thresholds):
    db = low_thresholds
    with table(db, "k_fail", rows=50_000), table(db, "k_next", rows=50_000):
        failed = apply_by_hand(db, "k_fail", "k_fail_cat", blocked=True)
        assert failed["outcome"] == "unused" and failed["index_scans"] == 0
        assert "failed: index k_fail_cat was never used" in failed["outcome_detail"]
        assert db.value("SELECT failed FROM arch.outcomes WHERE id = %s", (failed["id"],)) is True
        db.sql("UPDATE arch.settings SET similarity_threshold = 0.6")
        by_cat(db, "k_next", 5)
        assert db.audit()["knowledge"]["lowered"] == 1
        new = rec_on(db, "k_next")
        assert new["confidence"] < new["confidence_estimate"]
        assert new["similar_to"][0]["recommendation_id"] == failed["id"]
        assert "its index was never used" in new["rationale"] and "a failed recommendation" in new["rationale"]


def test_statement_that_got_slower_is_a_failed_outcome():
    assert outcomes.classify(-12.0, 40, 10) == "slower"
    assert outcomes.classify(55.0, 0, 10) == "unused"
    assert outcomes.classify(55.0, None, 10) == "improved"
    assert outcomes.classify(4.0, 9, 10) == "no_gain"


def test_history_adjustment_formula():
    c, best, worst = knowledge.adjust_for_history(0.6, [
        {"outcome": "improved", "similarity": 0.9, "recommendation_id": 1},
        {"outcome": "improved", "similarity": 0.95, "recommendation_id": 2},
        {"outcome": "no_gain", "similarity": 0.99, "recommendation_id": 3}])
    assert best["recommendation_id"] == 2 and worst is None
    assert c == pytest.approx(0.6 + 0.4 * 0.5 * 0.95)
    c, best, worst = knowledge.adjust_for_history(0.6, [{"outcome": "slower", "similarity": 0.9, "recommendation_id": 4}])
    assert best is None and worst["recommendation_id"] == 4 and c == pytest.approx(0.6 * (1 - 0.45))


# ------------------------------------------------------------------------------------------
# Calibration


def seed_history(db, cases):
    """cases: (confidence estimate, measured gain %, outcome) of applied recommendations."""
    for i, (est, gain, outcome) in enumerate(cases):
        db.sql("""INSERT INTO arch.recommendation (fingerprint, schema_name, table_name, definition, ddl, rationale,
                      cost_before, cost_after, est_gain_pct, confidence, confidence_estimate, status, applied_at,
                      measured_gain_pct, outcome)
                  VALUES (%s, 'public', 'history', %s, 'CREATE INDEX ...', 'seeded history', 100, 10, 90, %s, %s,
                          'applied', now() - interval '30 days', %s, %s)""",
               (f"seed-{i}", f"seed {i}", est, est, gain, outcome))


def test_calibration_view_on_seeded_history(db):
    seed_history(db, [(0.85, 50, "improved"), (0.82, 30, "improved"), (0.88, 5, "no_gain"), (0.81, -10, "slower"),
                      (0.35, 40, "improved"), (0.31, 80, "unused"), (0.99, 70, "improved")])
    db.sql("UPDATE arch.settings SET calibration_min_cases = 3")
    bands = {r["band"]: r for r in db.dicts("SELECT * FROM arch.calibration")}
    assert sorted(bands) == list(range(10))
    b8, b3, b9 = bands[8], bands[3], bands[9]
    assert (float(b8["confidence_from"]), float(b8["confidence_to"])) == (0.8, 0.9)
    assert (b8["applied_measured"], b8["delivered"], float(b8["success_rate"])) == (4, 2, 0.5)
    assert float(b8["mean_measured_gain_pct"]) == 18.8 and b8["used_for_confidence"] is True
    # unused counts as not delivered, whatever the time says
    assert (b3["applied_measured"], b3["delivered"], float(b3["success_rate"])) == (2, 1, 0.5)
    assert b3["used_for_confidence"] is False
    assert (b9["applied_measured"], b9["delivered"]) == (1, 1)
    assert bands[0]["applied_measured"] == 0 and bands[0]["success_rate"] is None
    # "Delivered" follows the configured real gain.
    db.sql("UPDATE arch.settings SET outcome_min_gain_pct = 40")
    assert db.value("SELECT delivered FROM arch.calibration WHERE band = 8") == 1


def test_confidence_uses_calibration_once_there_is_enough_history(low_thresholds):
    db = low_thresholds
    # Three applied recommendations in every band, one of which delivered: a success rate of 1/3.
    seed_history(db, [((b + 0.5) / 10, 50 if i == 0 else 2, "improved" if i == 0 else "no_gain")
                      for b in range(10) for i in range(3)])
    with table(db, "k_cal"):
        db.sql("UPDATE arch.settings SET calibration_min_cases = 3")
        by_cat(db, "k_cal", 5)
        db.audit()
        rec = rec_on(db, "k_cal")
        assert rec["confidence"] == pytest.approx(1 / 3)
        assert rec["confidence_estimate"] != pytest.approx(1 / 3)
        cal = rec["confidence_factors"]["calibration"]
        assert cal["used"] is True and cal["cases"] == 3 and cal["delivered"] == 1
        assert "Calibrated: 1 of 3 applied recommendations" in rec["rationale"]
        # Not enough history (the documented minimum, 20 by default): the estimate stands.
        db.sql("UPDATE arch.settings SET calibration_min_cases = DEFAULT")
        by_cat(db, "k_cal", 5)
        db.audit()
        rec = rec_on(db, "k_cal")
        assert rec["confidence"] == pytest.approx(rec["confidence_estimate"])
        assert rec["confidence_factors"]["calibration"]["used"] is False


# ------------------------------------------------------------------------------------------
# Pruning


def test_prune_knowledge_keeps_what_it_should(db):
    db.sql("UPDATE arch.settings SET embedding_model = 'hashing'")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    seeds = {  # name: (status, updated_at, outcome)
        "old_proposed": ("proposed", old, None),
        "old_rejected": ("rejected", old, None),
        "old_applied_measured": ("applied", old, "improved"),
        "old_applied_unmeasured": ("applied", old, None),
        "old_approved": ("approved", old, None),
        "recent_proposed": ("proposed", None, None),
    }
    ids = {}
    for name, (status, updated, outcome) in seeds.items():
        ids[name] = db.value(
            """INSERT INTO arch.recommendation (fingerprint, schema_name, table_name, definition, ddl, rationale,
                   cost_before, cost_after, est_gain_pct, confidence, status, applied_at, outcome, measured_gain_pct,
                   updated_at)
               VALUES (%s, 'public', 'prune', %s, 'CREATE INDEX ...', 'seeded', 100, 10, 90, 0.5, %s,
                       CASE WHEN %s::text = 'applied' THEN now() END, %s, CASE WHEN %s::text IS NOT NULL THEN 50 END,
                       coalesce(%s::timestamptz, now())) RETURNING id""",
            (name, name, status, status, outcome, outcome, updated))
        db.sql("""INSERT INTO arch.knowledge (recommendation_id, dbid, userid, queryid, query, canonical,
                      embedding_model, embedding, updated_at, outcome)
                  VALUES (%s, 0, 0, 1, 'q', %s, 'hashing', arch.embed(%s), coalesce(%s::timestamptz, now()), %s)""",
               (ids[name], name, name, updated, outcome))
    gone = ["old_proposed", "old_rejected", "old_applied_unmeasured"]

    dry = db.dicts("SELECT * FROM arch.prune_knowledge(interval '180 days', dry_run => true)")
    assert dry == [{"recommendations": 3, "cases": 3}]
    assert db.value("SELECT count(*) FROM arch.recommendation") == len(seeds)

    assert db.dicts("SELECT * FROM arch.prune_knowledge(interval '180 days')") == [{"recommendations": 3, "cases": 3}]
    left = {r[0] for r in db.sql("SELECT fingerprint FROM arch.recommendation")}
    assert left == set(seeds) - set(gone)
    assert db.value("SELECT count(*) FROM arch.knowledge") == len(seeds) - len(gone)

    # Applied with a measured outcome goes only when asked.
    assert db.dicts("SELECT * FROM arch.prune_knowledge(interval '180 days')") == [{"recommendations": 0, "cases": 0}]
    assert db.dicts("SELECT * FROM arch.prune_knowledge(interval '180 days', keep_measured => false)") == [
        {"recommendations": 1, "cases": 1}]
    assert {r[0] for r in db.sql("SELECT fingerprint FROM arch.recommendation")} == {"old_approved", "recent_proposed"}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="positive interval"):
        db.sql("SELECT * FROM arch.prune_knowledge(interval '-1 day')")


# ------------------------------------------------------------------------------------------
# Settings and privileges


def test_knowledge_settings_are_documented_and_checked(db):
    rows = {r["name"]: r for r in db.dicts("SELECT * FROM arch.settings_overview")}
    for name, default in [("embedding_model", "'all-MiniLM-L6-v2'::text"), ("reproposal_cost_factor", "2.0"),
                          ("outcome_min_gain_pct", "10"), ("calibration_min_cases", "20"),
                          ("similarity_threshold", "0.90"), ("outcome_window", "'7 days'::interval")]:
        assert rows[name]["default_value"] == default, rows[name]
        assert rows[name]["description"]
    for setting, value in [("embedding_model", "'bert'"), ("similarity_threshold", "2"), ("recall_k", "0"),
                           ("outcome_min_calls", "0"), ("calibration_min_cases", "0"),
                           ("outcome_window", "'1 second'")]:
        with pytest.raises(psycopg.errors.CheckViolation, match=f"settings_{setting}"):
            db.sql(f"UPDATE arch.settings SET {setting} = {value}")


@pytest.fixture
def k_roles(dsn):
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_k_reader LOGIN IN ROLE arch_reader")
        su.execute("CREATE ROLE pga_k_admin LOGIN IN ROLE arch_admin")
    yield
    with psycopg.connect(dsn, autocommit=True) as su:
        for r in ("pga_k_reader", "pga_k_admin"):
            su.execute(f"DROP OWNED BY {r}")
            su.execute(f"DROP ROLE {r}")


def test_knowledge_privileges(db, dsn, k_roles):
    db.sql("UPDATE arch.settings SET embedding_model = 'hashing'")
    views = ["arch.outcomes", "arch.calibration", "arch.knowledge_cases", "arch.recall_decisions"]
    with psycopg.connect(f"{dsn} user=pga_k_reader", autocommit=True) as conn:
        for v in views:
            conn.execute(f"SELECT * FROM {v}").fetchall()
        for sql in ("SELECT arch.embed('x')", "SELECT * FROM arch.similar_optimizations('SELECT 1')",
                    "SELECT * FROM arch.knowledge", "SELECT * FROM arch.prune_knowledge('1 day')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    with psycopg.connect(f"{dsn} user=pga_k_admin", autocommit=True) as conn:
        assert conn.execute("SELECT vector_dims(arch.embed('x'))").fetchone()[0] == 384
        conn.execute("SELECT * FROM arch.similar_optimizations('SELECT * FROM orders WHERE id = $1')").fetchall()
        assert conn.execute("SELECT * FROM arch.prune_knowledge('1 day', dry_run => true)").fetchone() == (0, 0)


def test_audit_summary_records_knowledge(low_thresholds):
    db = low_thresholds
    with table(db, "k_sum"):
        by_cat(db, "k_sum", 3)
        summary = db.audit()
        stored = db.value("SELECT knowledge FROM arch.audit_run WHERE id = %s", (summary["run_id"],))
        assert stored == json.loads(json.dumps(summary["knowledge"]))
        assert {"model", "model_loaded", "applied_detected", "outcomes_measured"} <= set(stored)
