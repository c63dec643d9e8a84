"""Unit tests for pg_architect.samples: a sample (literals) aligned with its normalised text ($n)."""

from __future__ import annotations

import pytest

from pg_architect import samples


def values(normalised: str, sample: str) -> dict:
    a = samples.align(normalised, sample)
    assert a is not None
    return {n: s.value for n, s in sorted(a.slots.items())}


@pytest.mark.parametrize("normalised, sample, expected", [
    ("SELECT * FROM t WHERE a = $1 AND b IN ($2, $3, $4)", "SELECT * FROM t WHERE a = -5 AND b IN (1, 2.5, 'x')",
     {1: "-5", 2: "1", 3: "2.5", 4: "x"}),
    ("SELECT * FROM t WHERE a = $1 AND b = $2", "select *  from t\n where a = true and b = null",
     {1: "true", 2: None}),
    ("SELECT * FROM t WHERE a = $1 AND b = $2", "SELECT * FROM t WHERE a = $1 AND b = 'literal'",
     {1: None, 2: "literal"}),  # the application bound $1 server-side: unknown
    ("UPDATE t SET a = $1 WHERE id = $2", "UPDATE t SET a = 'x''y' WHERE id = 7", {1: "x'y", 2: "7"}),
    ("SELECT date_trunc($1, c), count(*) FROM t GROUP BY 1 LIMIT $2",
     "SELECT date_trunc('day', c), count(*) FROM t GROUP BY 1 LIMIT 10", {1: "day", 2: "10"}),
])
def test_values_at_each_parameter(normalised, sample, expected):
    assert values(normalised, sample) == expected


def test_another_shape_does_not_align():
    assert samples.align("SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = 1 AND b = 2") is None
    assert samples.align("SELECT * FROM t WHERE a IN ($1, $2)", "SELECT * FROM t WHERE a IN (1, 2, 3)") is None
    assert samples.align("SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = (SELECT 1)") is None
    assert samples.align("SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = '") is None


def _al(normalised, texts):
    return [samples.align(normalised, t) for t in texts]


def test_constants_and_recovered_expressions():
    norm = "SELECT * FROM events e WHERE e.payload->>$1 = $2 AND e.kind = $3 AND date_trunc($4, e.at) > now() LIMIT $5"
    texts = [f"SELECT * FROM events e WHERE e.payload->>'order_id' = '{i}' AND e.kind = 'click'"
             f" AND date_trunc('day', e.at) > now() LIMIT 50" for i in range(5)]
    al = _al(norm, texts)
    consts = {c["param"]: c for c in samples.constants_from(al, 5)}
    assert sorted(consts) == [1, 3, 4, 5]
    assert consts[3]["predicate"] == "kind = 'click'" and consts[3]["table"] == "events"
    assert consts[5]["predicate"] is None and consts[5]["value"] == "50"
    exprs = [e["expression"] for e in samples.expressions_from(al, 5)]
    assert exprs == ["(payload ->> 'order_id')", "(date_trunc('day', at))"]
    # One sample with another key: not constant, nothing recovered.
    al.append(samples.align(norm, texts[0].replace("order_id", "user_id")))
    assert [e["expression"] for e in samples.expressions_from(al, 5)] == ["(date_trunc('day', at))"]
    # Too few samples.
    assert samples.constants_from(al[:3], 5) == [] and samples.expressions_from(al[:3], 5) == []


@pytest.mark.parametrize("text, why", [
    ("SELECT * FROM orders WHERE id = 1", None),
    ("WITH x AS (SELECT 1) SELECT * FROM x", None),
    ("ALTER ROLE a PASSWORD 'secret'", "utility"),
    ("CREATE USER a PASSWORD 'secret'", "utility"),
    ("SELECT 1; ALTER ROLE a PASSWORD 'secret'", "several"),
    ("SELECT * INTO t2 FROM t", "utility"),
    ("EXPLAIN ANALYZE SELECT 1", "utility"),
    ("SELECT * FROM arch.pending_recommendations", "own"),
    ("SELECT * FROM orders WHERE note = 'unterminated", "unreadable"),
])
def test_what_may_be_stored(text, why):
    assert samples.storable(text) == why
