"""Issue 7, item 7: the audit reads everything PostgreSQL reads.

Statements run for real (with literal values), so they reach pg_stat_statements exactly as
PostgreSQL normalises them (`1200+11` → `$1+$2`); then an audit reads them.
"""

from __future__ import annotations

import psycopg
import pytest

from conftest import index_cols, recommendations


def pgss_text(db, like: str) -> str:
    rows = db.sql("SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
                  " WHERE datname = current_database()) AND query LIKE %s", (like,))
    assert len(rows) == 1, (like, rows)
    return rows[0][0]


def outcome(db, like: str) -> dict:
    rows = db.dicts("SELECT a.outcome, a.skip_code, a.skip_reason, a.recommendations, s.query"
                    " FROM arch.audit_statement a JOIN arch.statement s USING (dbid, userid, queryid)"
                    " WHERE s.query LIKE %s", (like,))
    assert len(rows) == 1, (like, rows)
    return rows[0]


@pytest.mark.parametrize(
    "run, normalised",
    [
        ("SELECT id FROM orders WHERE user_id = 1200+11", "SELECT id FROM orders WHERE user_id = $1+$2"),
        ("SELECT id FROM orders WHERE user_id = 1300-11", "SELECT id FROM orders WHERE user_id = $1-$2"),
        ("SELECT id FROM orders WHERE user_id = 30*41", "SELECT id FROM orders WHERE user_id = $1*$2"),
        ("SELECT id FROM orders WHERE user_id = 2400/2", "SELECT id FROM orders WHERE user_id = $1/$2"),
        ("SELECT id, status FROM orders WHERE user_id = ANY(ARRAY[5,6,7]::int[])",
         "SELECT id, status FROM orders WHERE user_id = ANY(ARRAY[$1,$2,$3]::int[])"),
        ("SELECT id, total FROM orders WHERE user_id = 2+3 AND total > 10*10",
         "SELECT id, total FROM orders WHERE user_id = $1+$2 AND total > $3*$4"),
    ],
)
def test_arithmetic_between_constants_and_array_casts_are_analysed(low_thresholds, run, normalised):
    """Were parse_error: sqlglot 30.30's tokenizer fails on `$1+$2` and `ARRAY[$1,$2,$3]`."""
    db = low_thresholds
    db.sql(run)
    db.sql(run)
    assert pgss_text(db, normalised.split(" WHERE ")[0] + " WHERE %") == normalised
    db.audit()
    o = outcome(db, normalised)
    assert (o["outcome"], o["skip_code"]) == ("analyzed", None), o
    assert any(index_cols(r["ddl"]).startswith("user_id") for r in recommendations(db)), recommendations(db)


def test_generate_series_of_parameters_joined_to_a_table_is_analysed(low_thresholds):
    """Was plan_error: function generate_series(unknown, unknown) is not unique."""
    db = low_thresholds
    db.sql("SELECT g, o.id FROM generate_series(1, 5) g JOIN orders o ON o.user_id = g")
    assert pgss_text(db, "SELECT g, o.id FROM generate_series%") == (
        "SELECT g, o.id FROM generate_series($1, $2) g JOIN orders o ON o.user_id = g")
    db.audit()
    o = outcome(db, "SELECT g, o.id FROM generate_series%")
    assert (o["outcome"], o["skip_code"]) == ("analyzed", None), o
    # Its generic plan (generate_series of two unknown bigints: 1,000 rows) hashes orders, so no
    # index wins there; with the literal values it does.
    rows = db.dicts("SELECT ddl FROM arch.analyze_query("
                    "'SELECT g, o.id FROM generate_series(1, 5) g JOIN orders o ON o.user_id = g')")
    assert [index_cols(r["ddl"]) for r in rows] == ["user_id"]


def test_recursive_cte_with_an_untyped_parameter_is_analysed(low_thresholds):
    """Was unknown_function: `SELECT $1` in the non-recursive term is text, then `n + $2` fails."""
    db = low_thresholds
    db.sql("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5)"
           " SELECT o.* FROM orders o JOIN r ON o.user_id = r.n")
    text = pgss_text(db, "WITH RECURSIVE r(n)%")
    assert text == ("WITH RECURSIVE r(n) AS (SELECT $1 UNION ALL SELECT n + $2 FROM r WHERE n < $3)"
                    " SELECT o.* FROM orders o JOIN r ON o.user_id = r.n")
    db.audit()
    o = outcome(db, "WITH RECURSIVE r(n)%")
    assert (o["outcome"], o["skip_code"]) == ("analyzed", None), o
    # $1 typed bigint (not numeric): the join stays bigint = bigint and the index is usable.
    assert any(index_cols(r["ddl"]) == "user_id" for r in recommendations(db))


def test_analyze_query_reads_the_three_reproductions(db):
    # Each raised "cannot analyse this statement" (parse_error, plan_error, unknown_function).
    for sql, expected in (
            ("SELECT id FROM orders WHERE user_id = $2+$3", ["user_id"]),
            ("SELECT g, o.id FROM generate_series($1, $2) g JOIN orders o ON o.user_id = g", []),
            ("WITH RECURSIVE r(n) AS (SELECT $1 UNION ALL SELECT n + $2 FROM r WHERE n < $3)"
             " SELECT o.* FROM orders o JOIN r ON o.user_id = r.n", ["user_id"])):
        rows = db.dicts("SELECT table_name, ddl FROM arch.analyze_query(%s)", (sql,))
        assert [index_cols(r["ddl"]) for r in rows] == expected, (sql, rows)


def test_parse_error_inside_the_server_names_the_cause_and_the_backend_survives(db):
    """libpg_query runs inside the backend (pglast, RTLD_DEEPBIND): an error is an error, not a crash."""
    pid = db.value("SELECT pg_backend_pid()")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        db.sql("SELECT * FROM arch.analyze_query('SELECT id FROM orders WHERE user_id = ANY(ARRAY[$1,$2]::int[])"
               " ORDER BY BY id')")
    assert caught.value.diag.message_detail == (
        "PostgreSQL's parser rejects the statement: syntax error at or near \"id\" (character 76: 'id')."
        " (parse_error)")
    assert db.value("SELECT pg_backend_pid()") == pid


def test_merge_is_analysed(low_thresholds):
    """Was not_supported: MERGE (PostgreSQL 15) is read as a join of its target and source."""
    db = low_thresholds
    db.sql("CREATE TABLE pga_stock (user_id bigint, n int)")
    try:
        db.sql("MERGE INTO pga_stock s USING orders o ON o.user_id = s.user_id AND o.id = 7"
               " WHEN MATCHED THEN UPDATE SET n = s.n + 1 WHEN NOT MATCHED THEN INSERT VALUES (o.user_id, 1)")
        db.audit()
        o = outcome(db, "MERGE INTO pga_stock%")
        assert (o["outcome"], o["skip_code"]) == ("analyzed", None), o
    finally:
        db.sql("DROP TABLE pga_stock")


def test_parameters_no_candidate_type_fits_are_reported_as_such(db):
    """When no candidate typing plans, the reason is the typing, with PostgreSQL's own error
    (it used to be reported as a missing function)."""
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        db.sql("SELECT * FROM arch.analyze_query('SELECT id FROM orders WHERE created_at::date = $1 + $2')")
    detail = caught.value.diag.message_detail
    assert detail.startswith("operator is not unique: unknown + unknown (PostgreSQL cannot infer the type of $1, $2;"
                             " tried bigint, integer, numeric, text, interval, timestamptz without success)"), detail
    assert detail.endswith("(parameter_type)")
