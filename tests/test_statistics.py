"""The statistics advisor: extended statistics and statistics targets from measured misestimates.

Each test plants its own tables (dropped at the end), runs the application's statements so that
pg_stat_statements records their real rows per call, and asks the advisor — over the CLI host
(psycopg), in a transaction that is rolled back — what it finds and whether it can prove it.
"""

from __future__ import annotations

import psycopg
import pytest

from pg_architect.advisors import statistics
from pg_architect.db import PsycopgDb

# 120 000 customers in 120 cities; every city has exactly one zip code, so the planner's
# independence assumption expects 120 000 / 120 / 120 = 8 rows for a (city, zip) pair that has
# 1 000: it joins the orders with a nested loop.
PLANT = """
CREATE TABLE public.st_customer (id bigint PRIMARY KEY, city text NOT NULL, "ZipCode" text NOT NULL, name text);
INSERT INTO public.st_customer
SELECT g, 'city-' || (g % 120), 'zip-' || (10000 + g % 120), 'n' || g FROM generate_series(1, 120000) g;
CREATE TABLE public.st_order (id bigint PRIMARY KEY, customer_id bigint NOT NULL, total numeric);
INSERT INTO public.st_order SELECT g, 1 + (g * 7919) % 120000, g % 100 FROM generate_series(1, 240000) g;
CREATE INDEX ON public.st_order (customer_id);
-- Independent columns: a and b take every combination equally often.
CREATE TABLE public.st_indep (id bigint PRIMARY KEY, a int NOT NULL, b int NOT NULL);
INSERT INTO public.st_indep SELECT g, g % 97, g % 89 FROM generate_series(1, 120000) g;
-- A skewed column: 300 frequent tags (250 rows each, 75 % of the table) among 25 000 rare ones.
CREATE TABLE public.st_event (id bigint PRIMARY KEY, tag text NOT NULL);
INSERT INTO public.st_event SELECT g, CASE WHEN g <= 75000 THEN 'hot-' || (g % 300) ELSE 'rare-' || g END
FROM generate_series(1, 100000) g;
ANALYZE public.st_customer, public.st_order, public.st_indep, public.st_event;
"""
JOIN = ('SELECT c.id, o.total FROM st_customer c JOIN st_order o ON o.customer_id = c.id'
        ' WHERE c.city = %s AND c."ZipCode" = %s')
JOIN_PG = ('SELECT c.id, o.total FROM st_customer c JOIN st_order o ON o.customer_id = c.id'
           ' WHERE c.city = $1 AND c."ZipCode" = $2')
INDEP = "SELECT count(*) FROM st_indep WHERE a = %s AND b = %s"
TAG = "SELECT id FROM st_event WHERE tag = %s"


@pytest.fixture(scope="module")
def planted(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS public.st_customer, public.st_order, public.st_indep, public.st_event")
        c.execute(PLANT)
    yield
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS public.st_customer, public.st_order, public.st_indep, public.st_event")


@pytest.fixture
def advisor(dsn, db, planted):
    """A CLI-host Db (psycopg, autocommit off) whose transaction is rolled back at the end."""
    conn = psycopg.connect(dsn)
    yield PsycopgDb(conn)
    conn.rollback()
    conn.close()


def _join_workload(db):
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(JOIN, [("city-7", "zip-10007"), ("city-8", "zip-10008"), ("city-9", "zip-10009")])


def _advice_for(items, needle):
    found = [i for i in items if needle in i["query"]]
    assert len(found) == 1, [i["query"] for i in items]
    return found[0]


def test_correlated_pair_flips_join_proven(db, advisor):
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    _join_workload(db)
    item = _advice_for(statistics.advise_workload(advisor), "st_customer c JOIN")
    assert "skipped" not in item or isinstance(item["skipped"], list), item
    # pg_stat_statements: 2 000 rows per call (1 000 customers, 2 orders each); the plan expects ~16.
    assert item["rows_per_call"] == 2000
    stmt = [m for m in item["misestimates"] if m["level"] == "statement"]
    assert stmt and stmt[0]["source"] == "pg_stat_statements" and stmt[0]["factor"] >= 100, item["misestimates"]
    scan = [m for m in item["misestimates"] if m["level"] == "scan"]
    assert scan == [dict(scan[0], table="public.st_customer", columns=["city", "ZipCode"], source="sample")]
    assert scan[0]["factor"] >= 100 and scan[0]["estimated_rows"] < 10
    assert any("Nested Loop" in n for n in item["plan_nodes"])
    [cand] = [c for c in item["candidates"] if c["kind"] == "extended_statistics"]
    assert cand["status"] == "proven", cand
    assert cand["ddl"] == ('CREATE STATISTICS IF NOT EXISTS public."st_customer_city_ZipCode_stx"'
                           ' (dependencies, ndistinct, mcv) ON city, "ZipCode" FROM public.st_customer;\n'
                           # 120 combinations > default_statistics_target 100: room for all in the MCV list
                           'ALTER STATISTICS public."st_customer_city_ZipCode_stx" SET STATISTICS 200;\n'
                           'ANALYZE public.st_customer (city, "ZipCode");')
    assert cand["rollback_ddl"] == 'DROP STATISTICS IF EXISTS public."st_customer_city_ZipCode_stx";'
    # The proof: the estimate error shrinks and the nested loop becomes a hash join that is
    # cheaper than the nested loop once both are costed with the corrected estimates.
    assert cand["error_before"] >= 100 and cand["error_after"] <= 2, cand
    assert cand["confidence_factors"]["statement_error_after"] < cand["confidence_factors"]["statement_error_before"]
    assert "Nested Loop" in cand["plan_changes"]["removed"] and "Hash Join" in cand["plan_changes"]["added"]
    assert cand["old_shape_cost_after"] > cand["cost_after"] and cand["est_gain_pct"] >= 10
    assert 0.5 < cand["confidence"] <= 1
    assert "Proven in a rolled-back transaction" in cand["rationale"]
    # Nothing is left behind by the proof: no statistics object, the old plan for everyone.
    assert db.value("SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'public.st_customer'::regclass") == 0
    assert db.value("SELECT count(*) FROM pg_locks WHERE relation = 'public.st_customer'::regclass"
                    " AND mode = 'ShareUpdateExclusiveLock'") == 0


def test_measured_per_node_rows_on_staging(db, advisor):
    """The staging-only helper runs EXPLAIN ANALYZE: the customer scan expects ~8 rows, reads 1 000."""
    nodes = statistics.measure_on_staging(advisor, JOIN_PG, ["city-7", "zip-10007"], search_path=["public"])
    [scan] = [n for n in nodes if n["node"] == "Seq Scan on public.st_customer"]
    # ~8 expected; ANALYZE samples 30 000 of the 120 000 rows, so the estimate varies by a few rows
    assert scan["actual_rows"] == 1000 and scan["estimated_rows"] < 20 and scan["factor"] >= 50
    assert nodes[0]["actual_rows"] == 2000


def test_measure_on_staging_refuses_writes(db, advisor):
    with pytest.raises(Exception, match="read-only"):
        statistics.measure_on_staging(advisor, "UPDATE st_event SET tag = tag WHERE id = $1", [1],
                                      search_path=["public"])
    assert db.value("SELECT count(*) FROM st_event WHERE tag LIKE 'hot-%'") == 75000


def test_setting_off_leaves_candidate_unproven(db, advisor):
    _join_workload(db)
    item = _advice_for(statistics.advise_workload(advisor), "st_customer c JOIN")
    [cand] = [c for c in item["candidates"] if c["kind"] == "extended_statistics"]
    assert cand["status"] == "unproven" and cand["note"] == "unproven: validate on staging"
    assert 0 < cand["confidence"] <= statistics.UNPROVEN_CAP
    assert cand["error_after"] is None and cand["plan_changes"] == {}
    assert "Unproven: validate on staging." in cand["rationale"]
    # Without the setting the advisor took no lock stronger than a reader's: nothing was created.
    assert db.value("SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'public.st_customer'::regclass") == 0


def test_independent_columns_get_no_candidate(db, advisor):
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(INDEP, [(1, 2), (3, 4)])
    item = _advice_for(statistics.advise_workload(advisor), "st_indep")
    assert item["candidates"] == [] and item["misestimates"] == []
    assert [s["columns"] for s in item["skipped"]] == [["a", "b"]]
    assert "look independent" in item["skipped"][0]["reason"]


def test_ddl_and_rollback_run_for_real(db, advisor):
    adv = statistics.advise_statement(advisor, JOIN_PG, rows_per_call=2000, search_path=["public"])
    advisor.conn.rollback()
    [cand] = [c for c in adv.candidates if c.kind == "extended_statistics"]
    try:
        for stmt in cand.ddl().split(";\n"):
            db.sql(stmt)
        assert db.one("SELECT stxname, stxstattarget FROM pg_statistic_ext"
                      " WHERE stxrelid = 'public.st_customer'::regclass") == ("st_customer_city_ZipCode_stx", 200)
        plan = db.value("EXPLAIN (FORMAT JSON) SELECT 1 FROM st_customer WHERE city = 'city-7' AND \"ZipCode\" = 'zip-10007'")
        assert plan[0]["Plan"]["Plan Rows"] >= 500
        # An equivalent statistics object exists now: nothing is proposed for these columns.
        again = statistics.advise_statement(advisor, JOIN_PG, rows_per_call=2000, search_path=["public"])
        assert [c for c in again.candidates if c.kind == "extended_statistics"] == []
        assert "already covers" in again.skipped[0]["reason"]
    finally:
        for stmt in cand.rollback_ddl().split(";\n"):
            db.sql(stmt)
    assert db.value("SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'public.st_customer'::regclass") == 0
    db.sql("ANALYZE public.st_customer")


def test_skewed_column_gets_set_statistics(db, advisor):
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    db.sql("SELECT pg_stat_statements_reset()")
    db.run(TAG, [("hot-250",), ("hot-7",)])
    item = _advice_for(statistics.advise_workload(advisor), "st_event")
    [cand] = [c for c in item["candidates"] if c["kind"] == "statistics_target"]
    assert cand["columns"] == ["tag"]
    target = int(cand["ddl"].split("SET STATISTICS ")[1].split(";")[0])
    assert 300 <= target <= 1000
    assert cand["ddl"].startswith("ALTER TABLE public.st_event ALTER COLUMN tag SET STATISTICS")
    assert cand["rollback_ddl"].startswith("ALTER TABLE public.st_event ALTER COLUMN tag SET STATISTICS -1;")
    assert cand["status"] == "proven" and cand["error_before"] >= 10 and cand["error_after"] <= 2, cand
    # The rollback really resets the target.
    try:
        for stmt in cand["ddl"].split(";\n"):
            db.sql(stmt)
        assert db.value("SELECT attstattarget FROM pg_attribute WHERE attrelid = 'public.st_event'::regclass"
                        " AND attname = 'tag'") == target
    finally:
        for stmt in cand["rollback_ddl"].split(";\n"):
            db.sql(stmt)
    assert db.value("SELECT attstattarget FROM pg_attribute WHERE attrelid = 'public.st_event'::regclass"
                    " AND attname = 'tag'") == -1


def test_uniform_column_gets_no_set_statistics(db, advisor):
    adv = statistics.advise_statement(advisor, "SELECT id FROM st_indep WHERE a = $1", search_path=["public"])
    assert adv.candidates == []


def test_statistics_names_fit_63_bytes():
    name = statistics.statistics_name("t" * 40, ["column_number_one", "column_number_two", "x"])
    assert len(name.encode()) <= 63
    assert name != statistics.statistics_name("t" * 40, ["column_number_one", "column_number_two", "y"])
    assert statistics.statistics_name("addr", ["city", "zip"]) == "addr_city_zip_stx"
    assert len(statistics.statistics_name("é" * 40, ["ü" * 20]).encode()) <= 63


def test_confidence_formula():
    c, f = statistics.confidence(False, 100.0, None, None, True)
    assert c == pytest.approx(0.5) and f["proven"] is False
    c, _ = statistics.confidence(False, 100.0, None, None, False)
    assert c == pytest.approx(0.4)
    c, _ = statistics.confidence(True, 100.0, 1.0, 0.25, True)
    assert c == pytest.approx(0.5 + 0.25 + 0.125)


def test_proof_never_waits_for_the_table_lock(db, advisor, dsn):
    """A VACUUM or DDL holding the table's SHARE UPDATE EXCLUSIVE lock: the proof gives up after
    lock_timeout and the candidate stays unproven; nothing waits."""
    import time

    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    with psycopg.connect(dsn) as other:
        other.execute("LOCK TABLE public.st_customer IN SHARE UPDATE EXCLUSIVE MODE")
        t0 = time.monotonic()
        adv = statistics.advise_statement(advisor, JOIN_PG, rows_per_call=2000, search_path=["public"])
        elapsed = time.monotonic() - t0
        other.rollback()
    [cand] = [c for c in adv.candidates if c.kind == "extended_statistics"]
    assert cand.status == "unproven" and "lock was not available" in cand.note, cand.note
    assert 0 < cand.confidence <= statistics.UNPROVEN_CAP
    assert elapsed < 10


def test_setting_in_settings_overview(db):
    row = db.dicts("SELECT * FROM arch.settings_overview WHERE name = 'prove_statistics_in_transaction'")
    assert row == [{"name": "prove_statistics_in_transaction", "value": "false", "default_value": "false",
                    "description": row[0]["description"]}]
    assert "validate on staging" in row[0]["description"]


def test_custom_plan_with_parameter_values(db, advisor):
    """With the application's values the custom plan is checked (and proven) the same way."""
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    adv = statistics.advise_statement(advisor, JOIN_PG, rows_per_call=2000, params=["city-7", "zip-10007"],
                                      search_path=["public"])
    assert adv.estimated_rows < 20
    [cand] = [c for c in adv.candidates if c.kind == "extended_statistics"]
    assert cand.status == "proven" and cand.error_after <= 2
    assert "Nested Loop" in cand.plan_changes["removed"]


def test_group_by_of_correlated_columns(db, advisor):
    """GROUP BY city, zip: the planner multiplies the distinct counts (14 400 groups, really 120).
    The ndistinct statistics fix the estimate; the plan keeps its shape, so nothing is kept."""
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    adv = statistics.advise_statement(advisor, 'SELECT city, "ZipCode", count(*) FROM st_customer GROUP BY 1, 2',
                                      search_path=["public"])
    [mis] = [m for m in adv.misestimates if m.level == "group"]
    assert mis.columns == ["city", "ZipCode"] and mis.estimated >= 10000 and mis.expected <= 200
    [cand] = adv.candidates
    assert cand.kind == "extended_statistics" and cand.error_after <= 2, cand
    assert cand.status == "rejected" and cand.note == "estimates improve but the plan keeps its shape"
    assert cand.confidence == 0


def test_advise_statistics_in_psql(db):
    """The same advice inside the server: SELECT arch.advise_statistics();"""
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    _join_workload(db)
    items = db.value("SELECT arch.advise_statistics()")
    item = _advice_for(items, "st_customer c JOIN")
    [cand] = [c for c in item["candidates"] if c["kind"] == "extended_statistics"]
    assert cand["status"] == "proven" and "Hash Join" in cand["plan_changes"]["added"]
    assert db.value("SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'public.st_customer'::regclass") == 0
