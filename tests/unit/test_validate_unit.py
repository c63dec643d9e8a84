"""validate.py without a database: what a statement's parse tree tells the validator, the DDL it
accepts on staging, and the confidence formula with the measured gain."""

import pytest

from pg_architect import pgparse, validate
from pg_architect.validate import StatementResult, ValidationRefused


def test_parameters_are_mapped_to_the_columns_they_are_compared_with():
    r = pgparse.read("SELECT * FROM orders o WHERE o.user_id = $1 AND $2 < o.created_at"
                     " AND status IN ($3, $4) AND total::numeric BETWEEN $5 AND $6 ORDER BY id LIMIT $7 OFFSET $8")
    cols = validate.parameter_columns(r.tree)
    assert cols == {1: "user_id", 2: "created_at", 3: "status", 4: "status", 5: "total", 6: "total",
                    7: "limit", 8: "offset"}


def test_functions_reaching_outside_are_named():
    r = pgparse.read("SELECT pg_catalog.pg_notify('c', x), lo_export(1, '/tmp/x'), lower(x) FROM t WHERE y = $1")
    assert validate.outside_functions(r.tree) == ["pg_notify", "lo_export"]
    r = pgparse.read("WITH d AS (SELECT dblink_exec('host=x', 'DROP TABLE t')) SELECT * FROM d")
    assert validate.outside_functions(r.tree) == ["dblink_exec"]
    assert validate.outside_functions(pgparse.read("SELECT lower(name) FROM users WHERE id = $1").tree) == []


def test_only_recommendation_shaped_ddl_runs_on_staging():
    proc = ("CREATE INDEX IF NOT EXISTS e_idx ON ONLY public.events USING btree (user_id);\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS e1_idx ON public.events_2024 USING btree (user_id);\n"
            "ALTER INDEX public.e_idx ATTACH PARTITION public.e1_idx;")
    assert len(validate.ddl_statements(proc, validate._APPLY_OK, "DDL")) == 3
    with pytest.raises(ValidationRefused, match="DROP TABLE"):
        validate.ddl_statements("CREATE INDEX CONCURRENTLY i ON t (a);\nDROP TABLE users;", validate._APPLY_OK, "DDL")
    with pytest.raises(ValidationRefused):
        validate.ddl_statements("CREATE INDEX CONCURRENTLY i ON t (a); DROP TABLE users", validate._APPLY_OK, "DDL")
    with pytest.raises(ValidationRefused):
        validate.ddl_statements("DROP TABLE users", validate._ROLLBACK_OK, "rollback DDL")
    assert validate.ddl_statements("DROP STATISTICS IF EXISTS public.s;", validate._ROLLBACK_OK, "rollback") == \
        ["DROP STATISTICS IF EXISTS public.s"]


def _measured(before, after, removed=("Seq Scan on t",)):
    r = StatementResult(dbid=1, userid=1, queryid=1, times_before=list(before), times_after=list(after))
    plan = lambda node: [{"Plan": {"Node Type": node, "Total Cost": 1.0}}]  # noqa: E731
    r.plans_before = [plan("Seq Scan")] if removed else [plan("Index Scan")]
    r.plans_after = [plan("Index Scan")]
    return r


def test_measured_gain_replaces_the_estimate_in_the_confidence():
    rec = {"est_gain_pct": 64.0, "confidence": 0.8}
    gain, conf = validate.measured_confidence(rec, [_measured([10, 10, 10], [1, 1, 1])])
    assert gain == pytest.approx(90.0)
    assert conf == pytest.approx(0.8 * (0.9 ** 0.5) / (0.64 ** 0.5))
    gain, conf = validate.measured_confidence(rec, [_measured([10, 10], [12, 12])])  # slower: no confidence
    assert gain == pytest.approx(-20.0) and conf == 0.0
    # same plan, a difference inside the runs' spread: no gain
    noisy = _measured([8, 10, 12], [9, 9, 9], removed=())
    assert noisy.within_noise(validate._changes(noisy))
    assert validate.measured_confidence(rec, [noisy])[1] == 0.0
    assert validate.measured_confidence(rec, [StatementResult(1, 1, 1, status="skipped")]) == (None, None)
