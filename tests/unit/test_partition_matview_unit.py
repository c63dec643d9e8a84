"""Unit tests of the partitioning and materialized-view models (no database): interval choice,
pruning estimate, partition ranges, the matview rewrite and its refusals."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from pg_architect.advisors import matview, partition


def _ts(*a) -> float:
    return dt.datetime(*a, tzinfo=dt.UTC).timestamp()


def test_interval_is_the_smallest_step_with_at_most_60_partitions():
    assert partition.choose_interval("time", _ts(2025, 1, 1), _ts(2025, 1, 31), None)[0] == "1 day"
    assert partition.choose_interval("time", _ts(2025, 1, 1), _ts(2025, 12, 31), None)[0] == "1 week"
    assert partition.choose_interval("time", _ts(2020, 1, 1), _ts(2025, 1, 1), None)[0] == "3 months"
    # statements spanning ~40 days: wider partitions, still 1-2 read per statement
    assert partition.choose_interval("time", _ts(2025, 1, 1), _ts(2025, 12, 31), 40 * 86400)[0] == "1 month"
    assert partition.choose_interval("id", 1, 10_000_000, None) == ("200000", 200000.0)


def test_scanned_fraction_model():
    assert partition.scanned_fraction({"eq"}, None, 1e6, 50) == pytest.approx(1 / 50)
    assert partition.scanned_fraction({"range"}, None, 1e6, 50) == pytest.approx(2 / 50)
    assert partition.scanned_fraction({"range"}, 100_000, 1e6, 50) == pytest.approx(6 / 50)  # ceil(0.1*50)+1
    assert partition.scanned_fraction({"range"}, 5e6, 1e6, 50) == 1.0
    assert partition.scanned_fraction({"range"}, None, 1e6, 1) == 1.0


def test_week_ranges_start_on_monday_and_run_ahead():
    r = partition._ranges("timestamptz", "1 week", 7 * 86400, _ts(2025, 1, 1, 12), _ts(2025, 2, 1))
    assert dt.datetime.fromtimestamp(r[0][0], dt.UTC) == dt.datetime(2024, 12, 30, tzinfo=dt.UTC)
    assert all(b - a == 7 * 86400 for a, b in r)
    assert sum(1 for a, _ in r if a > _ts(2025, 2, 1)) == partition.FUTURE_PARTITIONS
    m = partition._ranges("date", "1 month", 30 * 86400, _ts(2025, 11, 15), _ts(2025, 12, 3))
    assert [dt.datetime.fromtimestamp(a, dt.UTC).month for a, _ in m][:3] == [11, 12, 1]


def _stmt(sql: str) -> partition.Stmt:
    sqlglot, _ = partition._sqlglot()
    st = partition.Stmt(userid=10, queryid=1, query=sql, calls=1, total_ms=1, rows=1, kind="select")
    st.tree = sqlglot.parse_one(sql, read="postgres")
    st.aliases = {"sales": ("public", "sales"), "s": ("public", "sales")}
    return st


def test_rewrite_on_group_column_parameter():
    rw = matview.rewrite(_stmt("SELECT region, count(*) AS n FROM sales WHERE region = $1 AND amount > 0"
                               " GROUP BY region ORDER BY n DESC LIMIT $2"), "public.mv")
    assert rw["view_sql"] == ('SELECT region AS "region", COUNT(*) AS "n" FROM public.sales WHERE amount > 0'
                              ' GROUP BY region')
    assert rw["rewritten"] == 'SELECT "region", "n" FROM public.mv WHERE "region" = $1 ORDER BY "n" DESC LIMIT $2'
    assert rw["unique_columns"] == ["region"]


def test_rewrite_adds_missing_group_columns():
    rw = matview.rewrite(_stmt("SELECT sum(s.amount) FROM sales s WHERE s.product = $1 GROUP BY s.product"), "m")
    assert rw["view_sql"] == 'SELECT SUM(s.amount) AS "col1", s.product AS "g_product" FROM public.sales AS s GROUP BY s.product'
    assert rw["rewritten"] == 'SELECT "col1" FROM m WHERE "g_product" = $1'


@pytest.mark.parametrize("sql, why", [
    ("SELECT region, count(*) FROM sales WHERE sold_at >= $1 GROUP BY region", "only group_column = $n"),
    ("SELECT count(*) FROM sales", "no GROUP BY"),
    ("SELECT date_trunc('day', sold_at), count(*) FROM sales GROUP BY 1", "not a plain column"),
    ("SELECT region, count(*) FROM sales WHERE sold_at > now() - interval '1 day' GROUP BY region", "time"),
    ("SELECT region, count(*) FROM sales GROUP BY region HAVING count(*) > $1", "HAVING"),
    ("SELECT region, count(*) FROM sales GROUP BY ROLLUP (region)", "ROLLUP"),
    ("SELECT x.region, count(*) FROM (SELECT * FROM sales WHERE amount > $1) x GROUP BY x.region",
     "parameter outside the top-level WHERE"),
])
def test_rewrite_refusals_say_why(sql, why):
    with pytest.raises(matview.NotRewritable, match=re.escape(why)):
        matview.rewrite(_stmt(sql), "m")
