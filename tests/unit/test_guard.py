"""The lexical one-statement guard in front of PREPARE (independent of sqlglot)."""

import pytest

from pg_architect.sqltext import several_statements


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "SELECT 1;",
    "SELECT 1 ;  \n",
    "SELECT ';' FROM t",
    "SELECT 'it''s; fine'",
    "SELECT E'a\\'; b'",
    'SELECT "we;ird" FROM t',
    "SELECT $$a;b$$",
    "SELECT $tag$ ; $$ ; $tag$",
    "SELECT 1 -- trailing; comment",
    "SELECT /* a /* nested; */ b */ 1",
    "SELECT a$b FROM t WHERE x = $1",
])
def test_single_statement_accepted(sql):
    assert not several_statements(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 1; DELETE FROM orders",
    "SELECT 'x'; DROP TABLE t",
    "SELECT 1 /* ok */; SELECT 2",
    "SELECT 'unterminated",
    'SELECT "unterminated',
    "SELECT $$ unterminated",
    "SELECT /* unterminated",
    "SELECT 1 -- c\n; SELECT 2",
])
def test_several_statements_refused(sql):
    assert several_statements(sql)


def test_extract_field_parameter_is_rewritten():
    from pg_architect.analyze import prepare_text

    assert prepare_text("SELECT EXTRACT($1 FROM o_orderdate) FROM t") == "SELECT date_part($1::text, o_orderdate) FROM t"
    assert prepare_text("SELECT 'extract($1 from x)' FROM t") == "SELECT 'extract($1 from x)' FROM t"
