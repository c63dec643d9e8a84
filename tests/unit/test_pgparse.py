"""Unit tests for pg_architect.pgparse: PostgreSQL's own parser as the gate (no database)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.dialects.postgres import Postgres
from test_analyze import FakeCatalog, skip_code, usage

from pg_architect import pgparse
from pg_architect.analyze import analyze_statement


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("SELECT $1+$2", "select"),
        ("VALUES ($1), ($2)", "select"),
        ("INSERT INTO t SELECT * FROM u", "insert"),
        ("UPDATE t SET a = $1", "update"),
        ("DELETE FROM t USING u WHERE t.id = u.id", "delete"),
        ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", "merge"),
        ("SET work_mem = $1", "utility"),
        ("VACUUM ANALYZE t", "utility"),
        ("EXPLAIN SELECT 1", "utility"),
        ("CREATE INDEX ON t (a)", "ddl"),
        ("ALTER TABLE t ADD COLUMN b int", "ddl"),
        ("DROP TABLE IF EXISTS t", "ddl"),
    ],
)
def test_statement_kind_comes_from_the_parse_tree(sql, kind):
    assert pgparse.read(sql).kind == kind


def test_select_into_is_seen_in_a_set_operation():
    assert pgparse.read("SELECT 1 INTO x UNION SELECT 2").select_into


@pytest.mark.parametrize(
    "sql, params, free",
    [
        ("SELECT $1+$2, $3-$4, $5*$6, $7/$8", [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8]),
        ("SELECT g FROM generate_series($1, $2) g", [1, 2], [1, 2]),
        ("WITH RECURSIVE r(n) AS (SELECT $1 UNION ALL SELECT n + $2 FROM r WHERE n < $3) SELECT * FROM r",
         [1, 2, 3], [1]),
        ("SELECT * FROM t WHERE a = $1 AND b BETWEEN $2 AND $3 AND c = ANY($4::int[])", [1, 2, 3, 4], []),
        ("SELECT ARRAY[$1,$2,$3]::int[]", [1, 2, 3], []),
        ("SELECT sum(CASE WHEN a > $1 THEN $2 ELSE $3 END) FROM t", [1, 2, 3], [2, 3]),
        ("SELECT * FROM t WHERE id = $1+$2", [1, 2], [1, 2]),
        ("SELECT $1::date + $2", [1, 2], [2]),
        ("SELECT * FROM t WHERE d BETWEEN $1::date AND $2::date + $3", [1, 2, 3], [3]),
        ("SELECT * FROM t WHERE ARRAY[q] <@ ARRAY[$1,$2]", [1, 2], [1, 2]),
        ("SELECT * FROM t WHERE a = lower($1)", [1], [1]),
    ],
)
def test_parameters_and_the_ones_no_context_types(sql, params, free):
    r = pgparse.read(sql)
    assert r.params == params
    assert r.free_params == free


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT $1+$2", "SELECT $1+ $2"),
        ("SELECT $2+$3, $1-$2, $1*$2, $1/$2", "SELECT $2+ $3, $1- $2, $1* $2, $1/ $2"),
        ("SELECT ARRAY[$1,$2,$3]::int[]", "SELECT ARRAY[$1, $2, $3]::int[]"),
        ("SELECT x FROM t WHERE a=$1 AND b='$1+$2'", "SELECT x FROM t WHERE a=$1 AND b='$1+$2'"),
        ('SELECT "Größe"+$1,$2 FROM t', 'SELECT "Größe"+$1, $2 FROM t'),
    ],
)
def test_sqlglot_text_changes_only_whitespace_and_sqlglot_reads_it(sql, expected):
    out = pgparse.sqlglot_text(sql)
    assert out == expected
    Postgres().tokenize(out)  # raised TokenError on the original text


def test_sqlglot_tokenizer_still_fails_on_the_original_text():
    """The reason the re-spacing exists; if sqlglot is fixed, the re-spacing can go."""
    with pytest.raises(Exception, match="Error tokenizing"):
        Postgres().tokenize("SELECT $1+$2")


def test_relations_leave_cte_names_out_and_see_merge_and_dml_targets():
    r = pgparse.read("WITH x AS (SELECT * FROM a) MERGE INTO s.t USING x ON t.id = x.id "
                     "WHEN MATCHED THEN UPDATE SET v = (SELECT max(v) FROM b)")
    assert pgparse.relations(r) == [("s", "t"), (None, "a"), (None, "b")] or \
        sorted(pgparse.relations(r), key=str) == sorted([("s", "t"), (None, "a"), (None, "b")], key=str)


def test_parse_error_has_the_position_in_characters_of_a_non_ascii_text():
    with pytest.raises(pgparse.PgParseError) as caught:
        pgparse.read('SELECT "Größe" FROM t WHERE x = = 1')
    assert caught.value.position == 32
    assert caught.value.near == "= 1"


# --------------------------------------------------------------------------
# analyze_statement on texts sqlglot could not read (issue 7, item 7)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_arithmetic_between_parameters_is_analysed(op):
    info = analyze_statement(f"SELECT id FROM orders WHERE user_id = $1{op}$2 AND total > $3", FakeCatalog())
    assert usage(info, "orders").eq == ["user_id"]
    assert usage(info, "orders").range == ["total"]
    assert info.param_count == 3
    assert info.free_params == [1, 2]


def test_array_of_parameters_cast_is_analysed():
    info = analyze_statement("SELECT id FROM orders WHERE user_id = ANY(ARRAY[$1,$2,$3]::int[])", FakeCatalog())
    assert list(info.tables) == [("public", "orders")]
    assert info.reader == "sqlglot"


def test_recursive_cte_with_parameters_is_analysed():
    info = analyze_statement("WITH RECURSIVE r(n) AS (SELECT $1 UNION ALL SELECT n + $2 FROM r WHERE n < $3) "
                             "SELECT o.* FROM orders o JOIN r ON o.user_id = r.n", FakeCatalog())
    assert usage(info, "orders").join == ["user_id"]
    assert info.free_params == [1]


def test_merge_is_analysed_as_a_join_of_target_and_source():
    info = analyze_statement("MERGE INTO orders o USING users u ON o.user_id = u.id "
                             "WHEN MATCHED AND u.status = $1 THEN UPDATE SET status = $2 "
                             "WHEN NOT MATCHED THEN INSERT (id, user_id) VALUES (u.id, u.id)", FakeCatalog())
    assert info.kind == "merge"
    assert usage(info, "orders").join == ["user_id"]
    assert usage(info, "users").join == ["id"]


@pytest.mark.parametrize(
    "sql, tables",
    [
        # A join alias (PostgreSQL 14+) and COLLATION FOR: sqlglot 30.30 reads neither.
        ("SELECT o.status FROM orders o JOIN users u USING (id) AS j WHERE j.id = $1", ["orders", "users"]),
        ("SELECT collation for (o.status) FROM orders o WHERE o.user_id = $1", ["orders"]),
    ],
)
def test_statement_sqlglot_cannot_read_is_read_by_postgres(sql, tables):
    with pytest.raises(sqlglot.errors.ParseError):
        sqlglot.parse_one(pgparse.sqlglot_text(sql), read="postgres")
    info = analyze_statement(sql, FakeCatalog())
    assert info.reader == "postgres"
    assert sorted(info.tables) == [("public", t) for t in tables]
    assert all(u.used_columns is None for u in info.tables.values())


def test_utility_and_ddl_come_from_the_parse_tree_even_after_a_comment():
    assert skip_code("/* app */ SET LOCAL work_mem = $1").code == "utility"
    assert skip_code("-- migration\nCREATE TABLE x (a int)").code == "ddl"
    assert skip_code("SELECT * INTO new_t FROM orders").code == "ddl"
    assert skip_code("SELECT 1; SELECT 2").code == "multi_statement"


def test_canonical_text_of_glued_parameters_is_normalised():
    """The knowledge base's canonical text used to fall back to the raw text on `$1+$2`."""
    from pg_architect import embed

    c = embed.canonical_text("select id from orders where user_id = $2+$3")
    assert c.normalized
    assert c.sql == "SELECT id AS id FROM orders WHERE user_id = $1 + $2"
