"""bench/bench_statistics.py's pure summary of arch.advise_statistics()' JSON: what the README's
statistics bench table counts (statements examined / skipped, misestimates, candidates by status,
gains of the proven ones, per workload)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

from bench_statistics import summarize


def test_summarize_counts_per_workload():
    items = [
        {"query": "SELECT * FROM tpch.lineitem WHERE l_shipdate > $1", "skipped": "plan_error: syntax error"},
        {"query": "SELECT * FROM tpch.orders WHERE o_orderstatus = $1", "misestimates": [{"factor": 12}],
         "candidates": [], "skipped": [{"columns": ["a", "b"]}]},
        {"query": "SELECT id FROM behavior_log WHERE user_id = $1", "skipped": [],
         "misestimates": [{"factor": 11.3}, {"factor": 20}],
         "candidates": [{"status": "proven", "est_gain_pct": 40.0}, {"status": "proven", "est_gain_pct": 10.0},
                        {"status": "rejected", "est_gain_pct": None}, {"status": "unproven"}]},
        {"query": "SELECT count(*) FROM orders", "misestimates": [], "candidates": [], "skipped": []},
    ]
    s = summarize(items)
    assert s["tpch"]["skipped"] == 1 and s["tpch"]["examined"] == 1
    assert s["tpch"]["misestimates"] == 1 and s["tpch"]["groups not proposed"] == 1
    assert s["tpch"]["candidates"] == 0
    demo = s["demo"]
    assert demo["examined"] == 2 and demo["skipped"] == 0
    assert demo["misestimated statements"] == 1 and demo["misestimates"] == 2
    assert (demo["candidates"], demo["proven"], demo["rejected"], demo["unproven"]) == (4, 2, 1, 1)
    assert demo["gains"] == 2 and demo["gain_sum"] == 50.0 and demo["gain_max"] == 40.0
