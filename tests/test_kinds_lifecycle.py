"""The whole life of a partition and a materialized-view recommendation (issue 12), as a DBA
lives it:

    UPDATE arch.settings SET validate_policy = 'before_approval';
    SELECT arch.run_audit();            -- stores them and queues their validation on staging
    -- the sidecar (PGA_STAGING_DSN) measures them: arch.validations, the confidence
    SELECT arch.approve(42, 'go');      -- the sidecar opens the pull request with the measured section
    -- the team merges and runs the migration; the application reads the view
    SELECT arch.run_audit();            -- status applied
    SELECT arch.run_audit();            -- the outcome, measured from the snapshots; arch.kpis counts it

The tables and workloads are those of tests/test_partition_matview.py, the staging cluster that
of tests/test_validate_kinds.py, pull requests go to the fake GitHub of tests/test_sidecar.py.
"""

from __future__ import annotations

import pytest

from pg_architect.sidecar.loop import Sidecar
from test_advice_kinds import RANGE_PG, _events_workload, _psql, kind
from test_partition_matview import BY_REGION, EVENTS, RANGE, REGIONS, SALES, _bind, _weeks
from test_sidecar import github, requests_of  # noqa: F401  (fixtures)
from test_validate_kinds import kinds_staging_proc, staging  # noqa: F401  (fixtures)


def run_sidecar(sidecar_dsn: str, github, staging: str) -> None:
    Sidecar(sidecar_dsn, env={"PGA_GITHUB_TOKEN": github.token, "PGA_STAGING_DSN": staging},
            sleep=lambda s: None).run(once=True)


@pytest.fixture
def shop(db, github):
    """pt_events (100,000 rows) and mv_sales, the thresholds lowered so both are advised, the
    fake GitHub, the hashing embedder."""
    db.sql("UPDATE arch.settings SET embedding_model = 'hashing', github_api_url = %s, github_repo = 'acme/app',"
           " github_timeout_s = 2, request_retry_base_s = 0, pr_sync_interval_s = 0, partition_min_table_mb = 1,"
           " matview_min_calls = 20, matview_min_mean_time_ms = 1, confidence_threshold = 0.5,"
           " validate_runs = 3, outcome_min_calls = 5", (github.url,))
    db.sql(EVENTS)
    db.sql(SALES)
    db.sql("SELECT pg_stat_statements_reset()")
    yield db
    db.sql("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'arch_refresh_%'")
    db.sql("DROP TABLE IF EXISTS public.pt_events, public.pt_events_partitioned, public.pt_events_unpartitioned,"
           " public.mv_sales CASCADE")


def _workload(db) -> None:
    _events_workload(db)
    db.run(BY_REGION, REGIONS, times=3)


def _validations(db, rec_id: int) -> list[dict]:
    return db.dicts("SELECT * FROM arch.validations WHERE recommendation_id = %s ORDER BY id", (rec_id,))


def test_audit_queues_validation_of_partition_and_matview_and_measured_gain_sets_confidence(
        shop, github, sidecar_dsn, staging):
    db = shop
    db.sql("UPDATE arch.settings SET validate_policy = 'before_approval'")
    _workload(db)
    db.audit()
    [part], [mv] = kind(db, "partition"), kind(db, "materialized_view")
    queued = {r["payload"]["recommendation_id"] for r in db.dicts(
        "SELECT payload FROM arch.request WHERE kind = 'validate' AND status = 'pending'")}
    assert {part["id"], mv["id"]} <= queued, queued
    run_sidecar(sidecar_dsn, github, staging)
    assert {r["status"] for r in requests_of(db, "validate")} == {"done"}, requests_of(db, "validate")
    for rec in (part, mv):
        vs = _validations(db, rec["id"])
        measured = [v for v in vs if v["status"] == "measured"]
        assert measured and all(v["median_before_ms"] > 0 and v["median_after_ms"] > 0 for v in measured), vs
        assert all(v["details"].get("same_rows") is not False for v in measured), vs
        now = db.dicts("SELECT confidence, confidence_factors FROM arch.recommendation WHERE id = %s",
                       (rec["id"],))[0]
        gain = float(now["confidence_factors"]["validated"]["measured_gain_pct"])
        # the kind's own model with the measured gain in place of the estimate (README)
        g = max(0.0, min(1.0, float(gain) / 100))
        share = float(part["confidence_factors"]["key_time_share"]) if rec is part else 1.0
        assert float(now["confidence"]) == pytest.approx(min(0.9, 0.5 + 0.4 * share * g), abs=1e-3), (rec["kind"], now)
        assert float(measured[0]["confidence_measured"]) == pytest.approx(float(now["confidence"]), abs=1e-3)
    # partition: the statement that prunes reads one or two partitions of the copy (its time is
    # what it is: the table has an index on the key, so a week is cheap either way)
    rng = [v for v in _validations(db, part["id"]) if v["query"] == RANGE_PG]
    assert rng and 1 <= rng[0]["details"]["partitions_scanned"] <= 2, rng


def test_before_pr_validates_then_opens_the_pr_with_measured_numbers_and_the_outcome_is_measured(
        shop, github, sidecar_dsn, staging, dsn):
    db = shop
    db.sql("UPDATE arch.settings SET validate_policy = 'before_pr'")
    _workload(db)
    db.audit()
    [part], [mv] = kind(db, "partition"), kind(db, "materialized_view")
    assert requests_of(db, "validate") == []              # before_pr: nothing before approval
    for rec in (part, mv):
        db.sql("SELECT arch.approve(%s, 'measured first')", (rec["id"],))
    run_sidecar(sidecar_dsn, github, staging)
    assert {r["status"] for r in requests_of(db)} == {"done"}, requests_of(db)
    pulls = {p["title"].split(":")[0]: p for p in github.pulls()}
    for rec in (part, mv):
        body = pulls[f"pg_architect #{rec['id']}"]["body"]
        assert "### Measured on staging" in body and "Confidence with the measured gain" in body, body
        assert _validations(db, rec["id"]), rec["kind"]
    assert "partitions scanned on the copy" in pulls[f"pg_architect #{part['id']}"]["body"]
    assert "REFRESH CONCURRENTLY" in pulls[f"pg_architect #{mv['id']}"]["body"]

    # The team merges: the scripts run for real; the application reads the view from now on.
    _psql(dsn, part["ddl"])
    _psql(dsn, mv["ddl"])
    d = mv["details"]
    db.sql("SELECT pg_stat_statements_reset() WHERE false")
    db.audit()                                            # sees both changes
    got = {r["id"]: r for r in db.dicts("SELECT * FROM arch.recommendation WHERE id IN (%s, %s)",
                                        (part["id"], mv["id"]))}
    assert got[part["id"]]["status"] == got[mv["id"]]["status"] == "applied", got
    assert got[part["id"]]["applied_index"] == "pt_events" and got[mv["id"]]["applied_index"] == d["view_name"]
    db.run(RANGE, _weeks(12), times=3)
    for (region,) in REGIONS:
        for _ in range(3):
            db.sql(_bind(d["rewritten_query"], [region]))
    db.audit()                                            # measures the outcomes
    out = {r["id"]: r for r in db.dicts("SELECT * FROM arch.recommendation WHERE id IN (%s, %s)",
                                        (part["id"], mv["id"]))}
    for rec in (part, mv):
        o = out[rec["id"]]
        assert o["outcome"] is not None and o["mean_time_before_ms"] > 0 and o["mean_time_after_ms"] > 0, o
        assert o["calls_after"] >= 5 and o["measured_gain_pct"] is not None, o
    # the partition: measured, whatever it shows (a week is cheap through the index either way)
    assert out[part["id"]]["outcome"] in ("improved", "no_gain", "slower"), out[part["id"]]
    assert "same statements over the partitioned table" in out[part["id"]]["outcome_detail"]
    assert db.value("SELECT count(*) FROM arch.recommendation_statement WHERE recommendation_id = %s"
                    " AND queryid_after IS NOT NULL AND queryid_after <> queryid", (part["id"],)) >= 1
    assert out[mv["id"]]["mean_time_after_ms"] < out[mv["id"]]["mean_time_before_ms"], out[mv["id"]]
    assert "rewritten statement" in out[mv["id"]]["outcome_detail"], out[mv["id"]]["outcome_detail"]
    # arch.kpis counts them: applied, measured, and the time they saved since
    k = db.dicts("SELECT * FROM arch.kpis WHERE period_kind = 'month' ORDER BY period_start DESC LIMIT 1")[0]
    assert k["applied"] >= 2 and k["applied_measured"] >= 2, k
    db.run(RANGE, _weeks(12))
    for (region,) in REGIONS:
        db.sql(_bind(d["rewritten_query"], [region]))
    db.audit()
    k = db.dicts("SELECT * FROM arch.kpis WHERE period_kind = 'month' ORDER BY period_start DESC LIMIT 1")[0]
    assert k["time_saved_ms"] > 0, k


def test_statements_of_a_materialized_view_never_read_are_not_measured(shop, dsn):
    db = shop
    db.run(BY_REGION, REGIONS, times=3)
    db.audit()
    [mv] = kind(db, "materialized_view")
    db.sql("SELECT arch.approve(%s, 'go')", (mv["id"],))
    _psql(dsn, mv["ddl"])
    db.audit()
    db.run(BY_REGION, REGIONS, times=2)                    # the application still sends the old statement
    db.audit()
    o = db.dicts("SELECT status, outcome, outcome_detail FROM arch.recommendation WHERE id = %s", (mv["id"],))[0]
    assert o["status"] == "applied" and o["outcome"] == "not_measured", o
    assert "rewritten statement" in o["outcome_detail"] and "has not run" in o["outcome_detail"], o


def test_applied_only_when_the_catalog_shows_the_recommended_definition(shop):
    db = shop
    _workload(db)
    db.audit()
    [part], [mv] = kind(db, "partition"), kind(db, "materialized_view")
    view_sql = mv["details"]["view_sql"]
    # another view over the table, another partition key: not what was recommended
    db.sql("CREATE MATERIALIZED VIEW public.other_mv AS SELECT region, count(*) AS n FROM public.mv_sales"
           " GROUP BY region")
    db.sql("ALTER TABLE public.pt_events RENAME TO pt_events_old")
    db.sql("CREATE TABLE public.pt_events (LIKE public.pt_events_old) PARTITION BY RANGE (device_id)")
    db.audit()
    assert db.value("SELECT array_agg(DISTINCT status) FROM arch.recommendation WHERE id IN (%s, %s)",
                    (part["id"], mv["id"])) == [mv["status"]]
    # the recommended definition under another name, in another schema; partitioned by the key
    db.sql("CREATE SCHEMA reporting")
    try:
        db.sql(f"SET search_path = public; CREATE MATERIALIZED VIEW reporting.sales_by_region AS {view_sql};"
               " RESET search_path")
        db.sql("DROP TABLE public.pt_events")
        db.sql("CREATE TABLE public.pt_events (LIKE public.pt_events_old) PARTITION BY RANGE (created_at)")
        db.audit()
        got = {r["id"]: r for r in db.dicts("SELECT id, status, applied_index, outcome_detail FROM arch.recommendation"
                                            " WHERE id IN (%s, %s)", (part["id"], mv["id"]))}
        assert (got[mv["id"]]["status"], got[mv["id"]]["applied_index"]) == ("applied", "sales_by_region"), got
        assert (got[part["id"]]["status"], got[part["id"]]["applied_index"]) == ("applied", "pt_events"), got
        assert got[part["id"]]["outcome_detail"].startswith("partitioned table pt_events seen at")
    finally:
        db.sql("DROP SCHEMA reporting CASCADE")
        db.sql("DROP MATERIALIZED VIEW IF EXISTS public.other_mv")
        db.sql("DROP TABLE IF EXISTS public.pt_events_old CASCADE")
