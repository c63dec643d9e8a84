"""Rewrite and statistics advice as advisors of the audit (issue 11): a DBA runs the workload,
`SELECT arch.run_audit()`, reads the recommendations, approves one; `arch.analyze_query` shows the
same kinds for one statement.  The planted cases are those of tests/test_rewrite_rules.py and
tests/test_statistics.py."""

from __future__ import annotations

import re

import psycopg
import pytest

from conftest import recommendations

PLANT = """
CREATE SCHEMA rwa;
CREATE TABLE rwa.events (id bigint PRIMARY KEY, ts timestamptz NOT NULL, code bigint NOT NULL, kind text NOT NULL);
INSERT INTO rwa.events
SELECT i, timestamptz '2018-10-30 00:00:00+00' + i * interval '7 minutes', (i * 7919) % 100000 - 50000,
       (ARRAY['a', 'b', 'c', 'd'])[1 + i % 4]
  FROM generate_series(1, 20000) AS i;
CREATE INDEX ON rwa.events (ts);
CREATE INDEX ON rwa.events (code);
-- 120 000 customers in 120 cities, one zip code per city (tests/test_statistics.py)
CREATE TABLE rwa.customer (id bigint PRIMARY KEY, city text NOT NULL, zip text NOT NULL, name text);
INSERT INTO rwa.customer SELECT g, 'city-' || (g % 120), 'zip-' || (10000 + g % 120), 'n' || g
  FROM generate_series(1, 120000) g;
CREATE TABLE rwa.orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, total numeric);
INSERT INTO rwa.orders SELECT g, 1 + (g * 7919) % 120000, g % 100 FROM generate_series(1, 240000) g;
CREATE INDEX ON rwa.orders (customer_id);
ANALYZE rwa.events, rwa.customer, rwa.orders;
"""
DAY = "SELECT id, ts FROM rwa.events WHERE date_trunc('day', ts) = $1"
# pg_stat_statements records date_trunc($2, ts): the unit is a parameter, not rewritten (the rule
# needs a constant unit); a cast on an indexed column is what the audit sees.
CAST_APP = "SELECT id FROM rwa.events WHERE code::text = %s"
JOIN = ("SELECT c.id, o.total FROM rwa.customer c JOIN rwa.orders o ON o.customer_id = c.id"
        " WHERE c.city = $1 AND c.zip = $2")


@pytest.fixture(scope="module")
def planted(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS rwa CASCADE")
        c.execute(PLANT)
    yield
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA rwa CASCADE")


def test_analyze_query_returns_a_rewrite(db, planted):
    rows = db.dicts("SELECT * FROM arch.analyze_query(%s)", (DAY,))
    [rw] = [r for r in rows if r["kind"] == "rewrite"]
    assert rw["index_kind"] == "sargable_date_trunc"
    assert rw["ddl"].startswith("SELECT id, ts FROM rwa.events WHERE ts >= $1 AND ts < date_trunc(")
    assert rw["est_gain_pct"] > 50 and rw["cost_after"] < rw["cost_before"]
    assert "events_ts_idx" in " ".join(rw["plan_changes"]["added"])
    assert "Rewrite rule sargable_date_trunc" in rw["rationale"]
    assert "planned as the statement's role" in rw["rationale"]
    # date_trunc on timestamptz is not immutable: no index can help, so no index row
    assert [r["kind"] for r in rows] == ["rewrite"]


def test_rewrite_is_planned_as_the_statements_role(db, planted):
    """A role that may not read the table gets no rewrite proof: both forms are planned as it."""
    db.sql("CREATE ROLE pga_rw_tenant")
    try:
        db.sql("GRANT USAGE ON SCHEMA rwa TO pga_rw_tenant")
        db.sql("GRANT arch_admin TO pga_rw_tenant")
        db.sql("SET ROLE pga_rw_tenant")
        try:
            with pytest.raises(psycopg.Error, match=r"permission denied|cannot analyse"):
                db.sql("SELECT * FROM arch.analyze_query(%s)", (DAY,))
        finally:
            db.sql("RESET ROLE")
    finally:
        db.sql("DROP OWNED BY pga_rw_tenant")
        db.sql("DROP ROLE pga_rw_tenant")


def test_rewrite_and_index_both_help(db, planted):
    rows = db.dicts("SELECT * FROM arch.analyze_query(%s)",
                    ("SELECT id FROM rwa.events WHERE code::text = $1 AND kind = $2",))
    kinds = sorted(r["kind"] for r in rows)
    assert kinds == ["index", "rewrite"], [(r["kind"], r["ddl"], r["est_gain_pct"]) for r in rows]
    for r in rows:
        assert "also helps this statement" in r["rationale"], r["rationale"]
        assert "Both can be applied" in r["rationale"]


def test_audit_stores_a_rewrite_with_the_lifecycle(low_thresholds, planted):
    db = low_thresholds
    db.run(CAST_APP, [("123",), ("-77",), ("abc",)])
    summary = db.audit()
    assert summary["statements_analyzed"] >= 1
    [rec] = [r for r in recommendations(db) if r["kind"] == "rewrite"]
    assert rec["index_kind"] == "sargable_cast" and rec["status"] == "proposed"
    assert rec["ddl"].startswith("SELECT id FROM rwa.events WHERE code = CASE WHEN CAST($1 AS pg_catalog.text) ~ ")
    assert rec["table_name"] == "events" and rec["schema_name"] == "rwa"
    assert rec["est_gain_pct"] > 50 and 0 < rec["confidence"] <= 1
    assert rec["rollback_ddl"].startswith("--")
    # the view shows the rewritten statement to whom may see the statement
    [view] = db.dicts("SELECT * FROM arch.recommendations WHERE kind = 'rewrite'")
    assert view["ddl"] == rec["ddl"]
    # a second audit sees it again, the same recommendation
    db.run(CAST_APP, [("5",)])
    db.audit()
    again = [r for r in recommendations(db) if r["kind"] == "rewrite"]
    assert [r["id"] for r in again] == [rec["id"]] and again[0]["times_seen"] == 2
    # approve: frozen like an index
    db.sql("SELECT arch.approve(%s, 'ship it')", (rec["id"],))
    assert db.value("SELECT status FROM arch.recommendation WHERE id = %s", (rec["id"],)) == "approved"
    with pytest.raises(psycopg.Error):
        db.sql("UPDATE arch.recommendation SET ddl = 'SELECT 1' WHERE id = %s", (rec["id"],))


def test_statistics_in_analyze_query_and_the_audit(low_thresholds, planted):
    db = low_thresholds
    # off (the seed default): no statistics advice from the audit
    rows = db.dicts("SELECT * FROM arch.analyze_query(%s)", (JOIN,))
    assert "statistics" not in [r["kind"] for r in rows]
    db.sql("UPDATE arch.settings SET prove_statistics_in_transaction = true")
    rows = db.dicts("SELECT * FROM arch.analyze_query(%s)", (JOIN,))
    [st] = [r for r in rows if r["kind"] == "statistics"]
    assert st["index_kind"] == "extended_statistics"
    assert st["ddl"].startswith("CREATE STATISTICS IF NOT EXISTS rwa.customer_city_zip_stx"), st["ddl"]
    assert st["est_gain_pct"] >= 10 and st["cost_after"] < st["cost_before"]
    assert "Proven in a rolled-back transaction" in st["rationale"]
    # nothing left behind
    assert db.value("SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'rwa.customer'::regclass") == 0
    db.run(JOIN.replace("$1", "%s").replace("$2", "%s"), [("city-7", "zip-10007"), ("city-8", "zip-10008")])
    db.audit()
    [rec] = [r for r in recommendations(db) if r["kind"] == "statistics"]
    assert rec["rollback_ddl"] == "DROP STATISTICS IF EXISTS rwa.customer_city_zip_stx;"
    assert rec["index_name"] == "customer_city_zip_stx" and rec["columns"] == ["city", "zip"]
    assert rec["confidence"] > 0.5


# -- delivery: the sidecar opens the pull requests (tests/fake_github.py) -------------------------
JOIN_APP = JOIN.replace("$1", "%s").replace("$2", "%s")


@pytest.fixture
def github():
    from fake_github import FakeGitHub

    fake = FakeGitHub().start()
    yield fake
    fake.stop()


def _sidecar_once(dsn, github):
    from pg_architect.sidecar import Sidecar

    Sidecar(dsn, env={"PGA_GITHUB_TOKEN": github.token}, sleep=lambda s: None).run(once=True)


def _approved(db, github, fmt):
    db.sql("UPDATE arch.settings SET github_api_url = %s, github_repo = 'acme/app', github_timeout_s = 2,"
           " request_retry_base_s = 0, pr_sync_interval_s = 0, prove_statistics_in_transaction = true,"
           " migration_format = %s", (github.url, fmt))
    db.run(CAST_APP, [("123",), ("-77",)])
    db.run(JOIN_APP, [("city-7", "zip-10007"), ("city-8", "zip-10008")])
    db.audit()
    recs = {r["kind"]: r for r in recommendations(db) if r["kind"] in ("rewrite", "statistics")}
    assert sorted(recs) == ["rewrite", "statistics"], [(r["kind"], r["ddl"]) for r in recommendations(db)]
    for r in recs.values():
        db.sql("SELECT arch.approve(%s, 'ok')", (r["id"],))
    return recs


def _files(github, rec_id):
    return {p: t for p, t in github.files(f"arch/rec-{rec_id}").items() if p != "README.md"}


@pytest.mark.parametrize("fmt", ["sql", "prisma", "flyway"])
def test_statistics_migration_and_rewrite_note_pull_requests(low_thresholds, planted, github, sidecar_dsn, fmt):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET migrations_dir = 'db/migrations', rewrite_docs_dir = 'docs/perf'")
    recs = _approved(db, github, fmt)
    _sidecar_once(sidecar_dsn, github)
    reqs = db.dicts("SELECT status, last_error FROM arch.request WHERE kind = 'open_pr' ORDER BY id")
    assert [r["status"] for r in reqs] == ["done", "done"], reqs
    st = recs["statistics"]
    [(path, content)] = _files(github, st["id"]).items()
    slug = rf"arch_rec_{st['id']}_customer_city_zip_stx_customer"
    expected = {"sql": rf"db/migrations/\d{{14}}_{slug}\.sql", "prisma": rf"db/migrations/\d{{14}}_{slug}/migration\.sql",
                "flyway": rf"db/migrations/V\d{{14}}__{slug}\.sql"}[fmt]
    assert re.fullmatch(expected, path), path
    assert "\nCREATE STATISTICS IF NOT EXISTS rwa.customer_city_zip_stx (dependencies, ndistinct, mcv)" \
           " ON city, zip FROM rwa.customer;\n" in content
    assert "-- Rollback: DROP STATISTICS IF EXISTS rwa.customer_city_zip_stx;" in content
    rw = recs["rewrite"]
    [(path, content)] = _files(github, rw["id"]).items()  # a note, no SQL migration, whatever the format
    assert re.fullmatch(rf"docs/perf/\d{{14}}_arch_rec_{rw['id']}_sargable_cast_events\.md", path), path
    assert rw["ddl"] in content and "SELECT id FROM rwa.events WHERE code::text = $1" in content
    titles = sorted(p["title"] for p in github.pulls())
    assert any("extended statistics on rwa.customer" in t for t in titles), titles
    assert any("rewrite on rwa.events" in t for t in titles), titles


def _tamper(db, rec_id, column, value, rehash):
    db.sql("ALTER TABLE arch.recommendation DISABLE TRIGGER recommendation_freeze")
    try:
        db.sql(f"UPDATE arch.recommendation SET {column} = %s WHERE id = %s", (value, rec_id))
        if rehash:
            db.sql("UPDATE arch.recommendation SET approved_hash = arch.approval_hash(kind, schema_name,"
                   " table_name, ddl, rollback_ddl) WHERE id = %s", (rec_id,))
    finally:
        db.sql("ALTER TABLE arch.recommendation ENABLE TRIGGER recommendation_freeze")


@pytest.mark.parametrize(("kind", "column", "value", "rehash", "why"), [
    ("statistics", "ddl", "DROP TABLE rwa.customer;", True, "only CREATE STATISTICS"),
    ("statistics", "rollback_ddl", "DROP TABLE rwa.customer;", True, "rollback must be exactly DROP STATISTICS"),
    ("statistics", "ddl", "CREATE STATISTICS IF NOT EXISTS rwa.customer_city_zip_stx (dependencies, ndistinct, mcv)"
                          " ON city, zip FROM rwa.customer;\nANALYZE rwa.customer (city, zip);", False,
     "approval hash"),
    ("rewrite", "ddl", "DROP TABLE rwa.events", True, "a rewrite is a SELECT, UPDATE or DELETE"),
    ("rewrite", "ddl", "SELECT 1; DROP TABLE rwa.events", True, "2 statements"),
    ("rewrite", "ddl", "SELECT 1", False, "approval hash"),
])
def test_sidecar_refuses_other_shapes(low_thresholds, planted, github, sidecar_dsn, kind, column, value, rehash, why):
    db = low_thresholds
    recs = _approved(db, github, "sql")
    _tamper(db, recs[kind]["id"], column, value, rehash)
    _sidecar_once(sidecar_dsn, github)
    [req] = db.dicts("SELECT r.status, r.last_error FROM arch.request r WHERE r.kind = 'open_pr'"
                     " AND (r.payload ->> 'recommendation_id')::bigint = %s", (recs[kind]["id"],))
    assert req["status"] == "refused" and why in req["last_error"], req
    assert not [p for p in github.pulls() if p["head"] == f"arch/rec-{recs[kind]['id']}"]


def test_every_plan_of_both_forms_goes_through_the_roles_wrapper(dsn, planted):
    """The rewrite's proof PREPAREs the rewritten statement and the original again through the
    prover's SECURITY DEFINER wrapper (security.PlanAs), never directly as the auditor."""
    from pg_architect import advise, security, settings
    from pg_architect.db import PsycopgDb
    from pg_architect.prove import Prover

    conn = psycopg.connect(dsn)
    try:
        conn.execute("SET plan_cache_mode = force_generic_plan")  # as the audit and analyze_query do
        db = PsycopgDb(conn)
        prover, plan_as = Prover(db), security.PlanAs(db)
        calls: list[tuple[str, str | None]] = []
        planner = prover._planner

        def spy(sql, *args, **kw):
            calls.append((sql, prover.run_as))
            return planner(sql, *args, **kw)

        prover._planner = spy  # type: ignore[method-assign]
        res = advise.analyze_one(db, prover, "SELECT id FROM rwa.events WHERE code::text = $1",
                                 settings.load(db), search_path=["public"], plan_as=plan_as)
        [rw] = [p for p in res.proven if p.candidate.kind == "rewrite"]
        rewritten = rw.candidate.ddl(db)
        prepares = [(sql, run_as) for sql, run_as in calls if sql.startswith("PREPARE")]
        assert any(rewritten in sql for sql, _ in prepares), prepares
        # the original: before any advisor, then again right after the rewrite's plan
        assert len([sql for sql, _ in prepares if rewritten not in sql]) >= 2, prepares
        assert all(run_as is not None and run_as.startswith("pg_temp.") for _, run_as in calls), calls
        prover.close()
        plan_as.close()
    finally:
        conn.rollback()
        conn.close()
