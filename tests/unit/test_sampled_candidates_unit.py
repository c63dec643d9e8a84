"""Unit tests of advisors/sampled_candidates.py's pure parts: what a statement's samples add to its
index candidates, and when a compared column counts as skewed (no database)."""

from __future__ import annotations

from pg_architect.advisors.index_candidates import Candidate, TableMeta
from pg_architect.advisors.sampled_candidates import SampleFacts, candidates, skew_ratio
from pg_architect.analyze import StatementInfo, TableUsage

PENDING = {"param": 1, "value": "pending", "literal": "'pending'", "samples": 6, "column": "status",
           "table": "tickets", "predicate": "status = 'pending'"}
ORDER_ID = {"params": [1], "expression": "(payload ->> 'order_id')", "table": "events", "column": "payload",
            "samples": 6}


def info(table: str, **usage) -> StatementInfo:
    return StatementInfo(kind="select", text="", param_count=2, has_limit=True, functions=[],
                         tables={("public", table): TableUsage("public", table, **usage)})


def facts(constants=(), expressions=()) -> SampleFacts:
    return SampleFacts(samples=6, value_sets=[(["pending", "50"], 6)], constants=list(constants),
                       expressions=list(expressions))


def test_constant_equality_gives_a_partial_index_on_the_other_columns():
    st = info("tickets", eq=["status"], order_by=[("created_at", "ASC")])
    got = candidates(st, {}, facts([PENDING]), 3)
    assert Candidate("public", "tickets", ("created_at",), (), "status = 'pending'", "partial") in got
    assert all(c.where == "status = 'pending'" for c in got)
    assert st.tables["public", "tickets"].eq == ["status"]  # the statement's facts are not changed


def test_partial_index_without_other_columns_uses_the_primary_key():
    from pg_architect.advisors.index_candidates import ExistingIndex

    meta = TableMeta("public", "tickets", indexes=[ExistingIndex("tickets_pkey", ["id"], unique=True)])
    got = candidates(info("tickets", eq=["status"]), {("public", "tickets"): meta}, facts([PENDING]), 3)
    assert [(c.keys, c.where) for c in got] == [(("id",), "status = 'pending'")]


def test_json_key_gives_an_expression_index_alone_and_with_the_equality_columns():
    st = info("events", eq=["account_id"])
    got = {c.keys for c in candidates(st, {}, facts(expressions=[ORDER_ID]), 3)}
    assert got == {("(payload ->> 'order_id')",), ("(payload ->> 'order_id')", "account_id")}
    assert Candidate("public", "events", ("(payload ->> 'order_id')",), kind="expression").definition() \
        == "ON public.events USING btree ((payload ->> 'order_id'))"


def test_no_candidate_from_other_tables_other_operators_or_without_a_column():
    st = info("tickets", eq=["status"])
    other_table = dict(PENDING, table="users")
    not_equal = dict(PENDING, predicate="status <> 'pending'")
    limit = dict(PENDING, column=None, table=None, predicate=None)
    assert candidates(st, {}, facts([other_table, not_equal, limit]), 3) == []
    assert candidates(st, {}, facts(), 3) == []


def test_skew_ratio():
    assert round(skew_ratio({"most_common_freqs": [0.33, 0.33, 0.33, 0.01], "n_distinct": 4,
                             "null_frac": 0.0})) == 33
    assert skew_ratio({"most_common_freqs": [0.25] * 4, "n_distinct": 4, "null_frac": 0.0}) == 1.0
    # 'view' and 'click' 45 % each, 98 rare kinds sharing the other 10 %: outside the list ~0.1 %
    r = skew_ratio({"most_common_freqs": [0.45, 0.45], "n_distinct": 100, "null_frac": 0.0})
    assert 400 < r < 450
    assert skew_ratio({"most_common_freqs": [], "n_distinct": -1.0}) is None
    assert skew_ratio(None) is None


def test_range_parameters_sides_casts_between():
    from pg_architect.samples import range_parameters
    got = range_parameters("SELECT 1 FROM t WHERE a >= CAST($1 AS date) AND a < $2::date"
                           " AND $3 > b AND c BETWEEN $4 AND $5 AND d = $6 AND t.e <= $7")
    sides = {n: (g["column"], g["side"]) for n, g in got.items()}
    assert sides == {1: ("a", "low"), 2: ("a", "high"), 3: ("b", "high"), 4: ("c", "low"),
                     5: ("c", "high"), 7: ("e", "high")}
    assert range_parameters("SELECT 1 FROM t WHERE a = $1 LIMIT $2") == {}
