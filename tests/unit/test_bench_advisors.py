"""Unit tests for bench/advisor_metrics.py, the pure helpers of the side-by-side advisor bench
(bench/bench_advisors.py): capture weights, weighted ratios, noise, index DDL handling and the naive
"one index per predicate column" advisor.  No database."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from advisor_metrics import (
    Item,
    canonical_index_ddl,
    dedupe_ddl,
    index_shape,
    item_weights,
    naive_indexes,
    predicate_columns,
    relative_spread,
    weighted_ratio,
)

TPCH = {
    "tpch.lineitem": {"l_orderkey", "l_partkey", "l_suppkey", "l_shipdate", "l_quantity"},
    "tpch.orders": {"o_orderkey", "o_custkey", "o_orderdate"},
    "tpch.part": {"p_partkey", "p_brand", "p_container"},
}


def test_weights_are_the_captured_calls_shared_by_executions():
    items = [Item("a.1", "…", 3, 11), Item("a.2", "…", 1, 11), Item("b", "…", 2, 22),
             Item("failed", "…", 2, 33), Item("no_id", "…", 1, None)]
    w = item_weights(items, {11: 8, 22: 2})
    assert w == {"a.1": 6.0, "a.2": 2.0, "b": 2.0, "failed": 0.0, "no_id": 0.0}


def test_weighted_ratio_weights_each_statement_by_its_calls():
    before = {"cheap": 10.0, "dear": 1000.0, "unplannable": 5.0}
    after = {"cheap": 10.0, "dear": 100.0, "unplannable": None}
    # dear runs once, cheap 100 times: (100*10 + 1*100) / (100*10 + 1*1000)
    ratio, used = weighted_ratio(before, after, {"cheap": 100, "dear": 1, "unplannable": 50})
    assert used == 2
    assert ratio == pytest.approx(1100 / 2000)
    # unweighted it would be 110 / 1010: the weighting matters
    assert weighted_ratio(before, after, {"cheap": 1, "dear": 1})[0] == pytest.approx(110 / 1010)


def test_weighted_ratio_without_comparable_statements_is_none():
    assert weighted_ratio({"a": 1.0}, {"a": None}, {"a": 1}) == (None, 0)
    assert weighted_ratio({"a": 1.0}, {"a": 2.0}, {"a": 0}) == (None, 0)


def test_relative_spread_is_range_over_median():
    assert relative_spread([10.0, 12.0, 11.0]) == pytest.approx(2 / 11)
    assert relative_spread([5.0]) is None


def test_canonical_ddl_drops_name_concurrently_and_qualifies_the_table():
    assert canonical_index_ddl(
        "CREATE INDEX crystaldba_idx_lineitem_l_shipdate_1 ON lineitem USING btree (l_shipdate)", "tpch"
    ) == "CREATE INDEX ON tpch.lineitem USING btree (l_shipdate)"
    assert canonical_index_ddl(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS arch_x ON tpch.orders (o_custkey) WHERE o_orderdate > '2020-01-01';",
        "other") == "CREATE INDEX ON tpch.orders USING btree (o_custkey) WHERE o_orderdate > '2020-01-01'"
    with pytest.raises(ValueError):
        canonical_index_ddl("DROP INDEX tpch.x", "tpch")


def test_dedupe_ddl_sees_the_same_index_in_different_spellings():
    ddl, bad = dedupe_ddl([
        "CREATE INDEX ON tpch.lineitem USING btree (l_partkey)",
        "create index idx1 on tpch.lineitem(l_partkey)",
        'CREATE INDEX CONCURRENTLY x ON "tpch"."lineitem" USING btree (l_partkey)',
        "CREATE INDEX ON tpch.lineitem USING btree (l_partkey, l_suppkey)",
        "ANALYZE tpch.lineitem",
    ], "tpch")
    assert ddl == ["CREATE INDEX ON tpch.lineitem USING btree (l_partkey)",
                   "CREATE INDEX ON tpch.lineitem USING btree (l_partkey, l_suppkey)"]
    assert bad == ["ANALYZE tpch.lineitem"]


def test_index_shape_tells_expression_and_partial_indexes():
    s = index_shape("CREATE INDEX ON s.events USING btree (((payload ->> 'order_id'::text)))")
    assert s["expression"] and not s["partial"]
    s = index_shape("CREATE INDEX ON s.tickets USING btree (created_at DESC) WHERE status = 'pending'")
    assert s["partial"] and not s["expression"] and s["keys"] == ["created_at DESC"]
    s = index_shape("CREATE INDEX ON s.accounts (lower(email) text_pattern_ops, id) INCLUDE (plan)")
    assert s["expression"] and s["include"] and len(s["keys"]) == 2


def test_predicate_columns_resolve_aliases_subqueries_and_unqualified_names():
    sql = """SELECT o_orderdate, sum(l_quantity) FROM tpch.lineitem AS l
             JOIN tpch.orders AS o ON l.l_orderkey = o.o_orderkey
             WHERE o_orderdate >= $1 AND l_partkey IN (SELECT p_partkey FROM tpch.part WHERE p_brand = $2)
             GROUP BY o_orderdate HAVING sum(l_quantity) > $3"""
    # p_partkey: the IN subquery's output is the other side of a semi-join predicate
    assert predicate_columns(sql, TPCH) == {
        ("tpch.lineitem", "l_orderkey"), ("tpch.orders", "o_orderkey"), ("tpch.orders", "o_orderdate"),
        ("tpch.lineitem", "l_partkey"), ("tpch.part", "p_partkey"), ("tpch.part", "p_brand"),
        ("tpch.lineitem", "l_quantity"),
    }
    # columns only in the select list, GROUP BY or ORDER BY are not predicate columns
    assert predicate_columns("SELECT l_quantity FROM tpch.lineitem WHERE l_shipdate < $1 "
                             "GROUP BY l_quantity ORDER BY l_quantity", TPCH) == {("tpch.lineitem", "l_shipdate")}


def test_naive_advisor_skips_leading_columns_and_reports_unparsable_statements():
    ddl, bad = naive_indexes(
        ["SELECT * FROM tpch.orders WHERE o_custkey = $1 AND o_orderkey = $2",
         "SELECT count(*) FROM tpch.orders WHERE o_custkey = $1",
         "SELEC nonsense ((("],
        TPCH, leading={("tpch.orders", "o_orderkey")})
    assert ddl == ["CREATE INDEX ON tpch.orders USING btree (o_custkey)"]
    assert bad == ["SELEC nonsense ((("]
