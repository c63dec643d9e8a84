"""Odd statements in pg_stat_statements get a recorded skip reason; the audit carries on."""

import psycopg
import pytest

from conftest import index_cols, recommendations

GOOD = "SELECT count(*) FROM orders WHERE user_id = %s"


def skipped(db) -> dict[str, str]:
    """query text (first 60 chars) -> skip code"""
    return {r["query"][:60]: r["code"] for r in db.dicts("SELECT * FROM arch.skipped_statements")}


def outcome(db, like: str) -> dict:
    rows = db.dicts("SELECT a.outcome, a.skip_code, a.skip_reason, a.recommendations FROM arch.audit_statement a"
                    " JOIN arch.statement s USING (dbid, userid, queryid) WHERE s.query LIKE %s", (like,))
    assert len(rows) == 1, (like, rows)
    return rows[0]


def test_utility_and_ddl_statements(low_thresholds):
    db = low_thresholds
    db.sql("VACUUM users")
    db.sql("SET work_mem = '8MB'")
    with db.conn.cursor().copy("COPY (SELECT id FROM users LIMIT 3) TO STDOUT") as cp:
        for _ in cp:
            pass
    db.sql("CREATE TABLE pga_tmp_ddl (id int)")
    db.sql("DROP TABLE pga_tmp_ddl")
    db.run(GOOD, [(1,)])
    summary = db.audit()
    # Utility texts are never stored (issue 7): the command word and a marker are.
    assert outcome(db, "VACUUM <utility statement: text not stored>")["skip_code"] == "utility"
    assert outcome(db, "SET <utility statement: text not stored>")["skip_code"] == "utility"
    assert outcome(db, "COPY <utility statement: text not stored>")["skip_code"] == "utility"
    assert outcome(db, "CREATE <utility statement: text not stored>")["skip_code"] == "ddl"
    assert outcome(db, "SELECT count(*) FROM orders WHERE user_id%")["outcome"] == "analyzed"
    assert summary["skipped"] >= 5
    assert any(index_cols(r["ddl"]) == "user_id" for r in recommendations(db))


def test_table_dropped_since(low_thresholds):
    db = low_thresholds
    db.sql("CREATE TABLE pga_gone AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 20000) g")
    db.run("SELECT * FROM pga_gone WHERE k = %s", [(5,)])
    db.sql("DROP TABLE pga_gone")
    db.run(GOOD, [(1,)])
    db.audit()
    o = outcome(db, "SELECT * FROM pga_gone%")
    assert o["skip_code"] == "unknown_table" and "pga_gone" in o["skip_reason"]
    assert outcome(db, "SELECT count(*) FROM orders WHERE user_id%")["recommendations"] == 1


def test_table_the_audit_role_cannot_read(low_thresholds, dsn):
    """A non-superuser auditor plans each statement as the role that ran it (issue 7): a role
    that lost its privilege since is a `permission` skip, a superuser's statement is never
    planned with lesser or other rights (`untrusted_code`), the rest is analysed."""
    db = low_thresholds
    db.sql("CREATE TABLE pga_secret AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 20000) g")
    db.sql("CREATE ROLE pga_auditor LOGIN IN ROLE arch_admin, pg_read_all_stats")
    db.sql("CREATE ROLE pga_tenant LOGIN")
    db.sql("GRANT pga_tenant TO pga_auditor")
    db.sql("GRANT SELECT ON orders, pga_secret TO pga_tenant")
    try:
        with psycopg.connect(dsn + " user=pga_tenant", autocommit=True) as tenant:
            tenant.execute("SELECT * FROM pga_secret WHERE k = 5").fetchall()
            tenant.execute(GOOD, (1,)).fetchall()
        db.run("SELECT k FROM pga_secret WHERE id = %s", [(5,)])
        db.sql("REVOKE SELECT ON pga_secret FROM pga_tenant")
        with psycopg.connect(dsn + " user=pga_auditor", autocommit=True) as auditor:
            auditor.execute("SELECT arch.run_audit()")
        o = outcome(db, "SELECT * FROM pga_secret%")
        assert o["skip_code"] == "permission" and "pga_secret" in o["skip_reason"]
        assert outcome(db, "SELECT k FROM pga_secret%")["skip_code"] == "untrusted_code"
        assert outcome(db, "SELECT count(*) FROM orders WHERE user_id%")["recommendations"] == 1
    finally:
        db.sql("DROP TABLE pga_secret")
        db.sql("REVOKE SELECT ON orders FROM pga_tenant")
        db.sql("DROP ROLE pga_auditor")
        db.sql("DROP ROLE pga_tenant")


def test_interval_parameter_is_planned(low_thresholds):
    db = low_thresholds
    db.sql("SELECT count(*) FROM behavior_log WHERE created_at >= now() - interval '2 hours'")
    db.audit()
    o = outcome(db, "%interval $1%")
    assert o["outcome"] == "analyzed", o
    assert any(index_cols(r["ddl"]).startswith("created_at") for r in recommendations(db))


def test_untypeable_parameter(low_thresholds):
    db = low_thresholds
    db.sql("SELECT * FROM orders WHERE ('x' IS NULL OR user_id = 5)")
    db.audit()
    o = outcome(db, "%$1 IS NULL%")
    assert o["outcome"] == "analyzed", o


def test_two_hundred_item_in_list(low_thresholds):
    db = low_thresholds
    ids = ", ".join(str(i) for i in range(1, 201))
    db.sql(f"SELECT * FROM orders WHERE user_id IN ({ids})")
    db.audit()
    o = outcome(db, "SELECT * FROM orders WHERE user_id IN%")
    assert o["outcome"] == "analyzed" and o["recommendations"] == 1


def test_hundred_kilobyte_statement(low_thresholds):
    db = low_thresholds
    comment = "/* " + "x" * 100_000 + " */"
    db.sql(f"{comment} SELECT count(*) FROM orders WHERE total > 5")
    db.run(GOOD, [(1,)])
    db.audit()
    o = outcome(db, "/* xxx%")
    assert o["skip_code"] == "too_long"
    assert outcome(db, "SELECT count(*) FROM orders WHERE user_id%")["outcome"] == "analyzed"


def test_truncated_statement_text(db):
    with pytest.raises(psycopg.Error) as err:
        db.sql("SELECT * FROM arch.analyze_query('SELECT * FROM orders WHERE user_id = $1 AND (status = ')")
    assert "(truncated)" in err.value.diag.message_detail


def test_multi_statement_text(db):
    with pytest.raises(psycopg.Error) as err:
        db.sql("SELECT * FROM arch.analyze_query('SELECT * FROM orders; DELETE FROM orders')")
    assert "(multi_statement)" in err.value.diag.message_detail
    assert db.value("SELECT count(*) FROM orders") > 0


def test_non_ascii_and_quoted_mixed_case_in_another_schema(low_thresholds):
    db = low_thresholds
    db.sql('CREATE SCHEMA "Lager"')
    try:
        db.sql('CREATE TABLE "Lager"."Bestellungen" AS SELECT g AS id, g % 2000 AS "KundenNr",'
               ' (g % 7)::numeric AS größe FROM generate_series(1, 50000) g')
        db.sql('ANALYZE "Lager"."Bestellungen"')
        db.run('SELECT id, größe FROM "Lager"."Bestellungen" WHERE "KundenNr" = %s', [(42,)])
        db.audit()
        recs = [r for r in recommendations(db) if r["schema_name"] == "Lager"]
        assert recs, db.dicts("SELECT * FROM arch.skipped_statements")
        ddl = recs[0]["ddl"]
        assert '"Lager"."Bestellungen"' in ddl and '"KundenNr"' in ddl
        # The DDL is real: it runs (without CONCURRENTLY, inside a transaction we roll back).
        with db.conn.transaction(force_rollback=True):
            db.sql(ddl.replace("CONCURRENTLY ", ""))
    finally:
        db.sql('DROP SCHEMA "Lager" CASCADE')


def test_interval_bound_by_the_application(low_thresholds):
    """`now() - $1` with an interval bound by the driver: pg_stat_statements shows no type."""
    import datetime

    db = low_thresholds
    db.run("SELECT count(*) FROM behavior_log WHERE created_at >= now() - %s", [(datetime.timedelta(hours=2),)])
    db.audit()
    o = outcome(db, "%now() - $1%")
    assert o["outcome"] == "analyzed", o


def test_extract_and_untyped_numeric_parameters(low_thresholds):
    """TPC-H-style text: EXTRACT(year FROM ...) and CASE ... THEN 1 ELSE 0 inside sum()."""
    db = low_thresholds
    db.sql("SELECT EXTRACT(year FROM created_at) AS y, sum(CASE WHEN status = 'paid' THEN 1 ELSE 0 END)"
           " FROM orders WHERE user_id = 42 GROUP BY 1")
    db.sql("SELECT count(*) FROM orders WHERE total BETWEEN 10 AND 10 + 5 AND user_id = 43")
    db.audit()
    assert outcome(db, "SELECT EXTRACT($1 FROM created_at)%")["outcome"] == "analyzed"
    assert outcome(db, "%total BETWEEN%")["outcome"] == "analyzed"
