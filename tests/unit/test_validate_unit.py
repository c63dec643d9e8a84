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


# ---------------------------------------------------------------------------- issue 12: more kinds
def test_parameters_compared_with_no_column_have_a_context():
    r = pgparse.read("SELECT date_trunc($1, created_at), $2 FROM orders WHERE created_at > now() - $3::interval"
                     " AND total > $4 * 2 AND user_id = $5::int AND note = $6::text LIMIT $7 OFFSET $8")
    ctx = validate.parameter_contexts(r.tree)
    assert ctx == {1: "unit", 3: "interval", 4: "number", 5: "cast:int4", 6: "cast:text"}
    assert validate.parameter_columns(r.tree)[5] == "user_id"  # a column wins over the cast
    assert [validate.context_value(c) for c in ("limit", "offset", "unit", "interval", "number", "cast:int8")] \
        == ["100", "0", "day", "1 day", "1", "1"]
    assert validate.typed_value("boolean") == "true" and validate.typed_value("text[]") == "{}"
    assert validate.typed_value("character varying") == "a" and validate.typed_value("mood") is None


def test_redirect_points_the_table_at_the_copy_in_the_parse_tree():
    from pg_architect.validate_sql import redirect

    out, n = redirect("SELECT pt_events.id FROM pt_events JOIN public.pt_events o ON o.id = pt_events.id"
                      " WHERE created_at >= $1", "public", "pt_events", "scratch", "pt_events_partitioned")
    assert n == 2 and out == ("SELECT pt_events.id FROM scratch.pt_events_partitioned AS pt_events"
                              " INNER JOIN scratch.pt_events_partitioned AS o ON o.id = pt_events.id"
                              " WHERE created_at >= $1")
    # a CTE of the same name, another schema, a string holding the name: left alone
    out, n = redirect("WITH pt_events AS (SELECT 1 AS id) SELECT 'pt_events' FROM pt_events, other.pt_events",
                      "public", "pt_events", "scratch", "c")
    assert n == 0 and "scratch" not in out


def test_bind_and_the_scripts_validation_runs():
    from pg_architect.validate_sql import NotRunnable, bind, matview_script, plan_to_scratch

    assert bind("SELECT * FROM t WHERE a = $1 AND b = $2 LIMIT $3", ["x'y", None, "5"], ["text", "date", "int8"]) \
        == "SELECT * FROM t WHERE a = CAST('x''y' AS text) AND b = CAST(NULL AS date) LIMIT CAST('5' AS int8)"
    plan = plan_to_scratch(
        "CREATE TABLE public.e_partitioned (LIKE public.e INCLUDING DEFAULTS) PARTITION BY RANGE (at);\n"
        "ALTER TABLE public.e_partitioned ADD CONSTRAINT e_fk_p FOREIGN KEY (u) REFERENCES public.users (id);\n"
        "CREATE TABLE public.e_p2025 PARTITION OF public.e_partitioned FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        "public", "e_partitioned", "scr")
    assert plan.statements[0].startswith("CREATE TABLE scr.e_partitioned (LIKE public.e ")
    assert plan.statements[1].startswith("CREATE TABLE scr.e_p2025 PARTITION OF scr.e_partitioned")
    assert len(plan.statements) == 2 and "foreign key left out" in plan.notes[0]
    with pytest.raises(NotRunnable, match="does not run"):
        plan_to_scratch("DROP TABLE public.e", "public", "e_partitioned", "scr")
    ms = matview_script("CREATE MATERIALIZED VIEW public.v AS SELECT a, count(*) FROM t GROUP BY a;\n"
                        "CREATE UNIQUE INDEX v_key ON public.v (a);\n"
                        "SELECT cron.schedule('j', '0 * * * *', 'REFRESH MATERIALIZED VIEW CONCURRENTLY public.v');")
    assert ms.view == '"public"."v"' and len(ms.indexes) == 1 and ms.notes
    with pytest.raises(NotRunnable):
        matview_script("CREATE MATERIALIZED VIEW public.v AS SELECT 1;\nDROP TABLE users;")
