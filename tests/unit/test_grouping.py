"""Unit tests for pg_architect.grouping: which statement texts are one group (no database)."""

from __future__ import annotations

import pytest

from pg_architect.grouping import group, group_key
from pg_architect.workload import WindowStatement


@pytest.mark.parametrize(("a", "b"), [
    ("SELECT * FROM t WHERE a IN ($1, $2, $3) AND b = $4", "select * from t  where a in ($1,$2) and b=$3 -- x"),
    ("SELECT * FROM t WHERE a = ANY(ARRAY[$1, $2])", "SELECT * FROM t WHERE a = ANY(ARRAY[$1])"),
    ("INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)", "INSERT INTO t (a, b) VALUES ($1, $2)"),
    ("SELECT * FROM t WHERE a NOT IN ($1, $2) LIMIT $3", "SELECT * FROM t WHERE a NOT IN ($1) LIMIT $2"),
], ids=["in_list_length", "array_length", "values_rows", "not_in"])
def test_normalisation_noise_is_one_group(a, b):
    assert group_key(a) is not None and group_key(a) == group_key(b)


@pytest.mark.parametrize(("a", "b"), [
    ("SELECT * FROM t WHERE a IN ($1, $2)", "SELECT * FROM t WHERE a NOT IN ($1, $2)"),
    ("SELECT * FROM t WHERE a IN ($1, $2) AND b = $3", "SELECT * FROM t WHERE a IN ($1, $2) AND b < $3"),
    ("SELECT * FROM t ORDER BY 1", "SELECT * FROM t ORDER BY 2"),
    ("SELECT a FROM t WHERE a IN ($1, $2)", "SELECT b FROM t WHERE a IN ($1, $2)"),
    ("SELECT * FROM t WHERE a IN ($1, $2)", "SELECT * FROM u WHERE a IN ($1, $2)"),
    ("SELECT * FROM t WHERE a IN ($1, 5)", "SELECT * FROM t WHERE a IN ($1, $2)"),
], ids=["not_in", "operator", "order_by_position", "select_list", "table", "kept_constant"])
def test_different_statements_are_not_grouped(a, b):
    assert group_key(a) != group_key(b)


def test_unparsable_text_is_alone():
    assert group_key("SELECT * FROM t WHERE a IN ($1, ") is None
    assert group_key("SELECT 1; SELECT 2") is None


def _st(queryid, query, userid=10, total=1.0, calls=1):
    return WindowStatement(dbid=1, userid=userid, queryid=queryid, query=query, calls=calls, total_time_ms=total,
                           mean_time_ms=total / calls, share=total / 100)


def test_groups_are_per_role_and_weighted_with_every_member():
    sts = [_st(1, "SELECT * FROM t WHERE a IN ($1, $2)", total=50, calls=5),
           _st(2, "SELECT * FROM t WHERE a IN ($1, $2, $3)", total=30, calls=3),
           _st(3, "SELECT * FROM t WHERE a IN ($1)", userid=11, total=10),
           _st(4, "SELECT * FROM t WHERE a IN ($1, $2, $3, $4)", total=5, calls=1),
           _st(5, "SELECT * FROM t WHERE b = $1", total=4)]
    groups = group(sts)
    assert [g.rep.queryid for g in groups] == [1, 3, 5]
    g = groups[0]
    assert [m.queryid for m in g.members] == [2, 4]
    assert g.weighted.total_time_ms == 85 and g.weighted.calls == 9 and g.weighted.share == pytest.approx(0.85)
    assert g.rep.total_time_ms == 50  # the representative's own row is unchanged
    assert groups[1].members == [] and groups[1].weighted is groups[1].rep
