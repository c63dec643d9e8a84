"""Issue 10, real parameter values: statement samples with their literals from pg_stat_activity,
aligned with pg_stat_statements' normalised texts; pg_stats values; custom plans."""

import threading
import time

import psycopg
import pytest

from conftest import can_run

SECRET = "Sampled-Secret-42"
HIDDEN = "<insufficient privilege>"
ORDERS = "SELECT id, total FROM orders WHERE status = '{status}' AND user_id = {user}"
EVENTS = "SELECT id FROM behavior_log WHERE user_id = {user} AND payload->>'order_id' = '{order}'"


def sample(db) -> dict:
    return db.value("SELECT arch.sample_queries()")


def queryid(db, like: str) -> int:
    return db.value("SELECT queryid FROM pg_stat_statements WHERE query LIKE %s AND query NOT LIKE '%%arch.%%'"
                    " ORDER BY calls DESC LIMIT 1", (like,))


def run_and_sample(db, app, texts) -> None:
    """The application runs each text (client-side literals) and goes idle; a sampling round after each."""
    for t in texts:
        app.execute(t).fetchall()
        sample(db)


@pytest.fixture
def app(dsn):
    conn = psycopg.connect(dsn, autocommit=True, application_name="shop")
    yield conn
    conn.close()


def test_statement_idle_in_transaction_is_sampled_with_its_literals(db, dsn):
    text = ORDERS.format(status="pending", user=42)
    with psycopg.connect(dsn, application_name="shop") as app:
        app.execute(text).fetchall()  # transaction left open: idle in transaction
        got = sample(db)
        assert got["stored"] >= 1, got
        # (a session of the test harness that just ran its last statement may be sampled too)
        rows = db.dicts("SELECT role_name, application_name, query, queryid FROM arch.query_samples"
                        " WHERE application_name = 'shop'")
        assert rows == [{"role_name": db.value("SELECT current_user"), "application_name": "shop",
                         "query": text, "queryid": rows[0]["queryid"]}]
        assert rows[0]["queryid"] == queryid(db, "SELECT id, total FROM orders WHERE status = $1%")
        assert sample(db)["skipped"]["already_sampled"] >= 1  # the same execution is stored once
        assert db.value("SELECT count(*) FROM arch.query_sample WHERE application_name = 'shop'") == 1
        app.rollback()


def test_active_statement_is_sampled(db, dsn):
    text = "SELECT pg_sleep(3), count(*) FROM orders WHERE status = 'cancelled'"
    with psycopg.connect(dsn, autocommit=True, application_name="shop") as app:
        worker = threading.Thread(target=lambda: app.execute(text).fetchall())
        worker.start()
        try:
            for _ in range(50):
                if db.value("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                            " AND query = %s AND query_id IS NOT NULL", (text,)):
                    break
                time.sleep(0.05)
            assert sample(db)["stored"] >= 1
        finally:
            worker.join()
    # (other sessions that just went idle may be sampled too: the application's is the one)
    assert db.value("SELECT query FROM arch.query_samples WHERE application_name = 'shop'") == text


def test_alignment_recovers_values_constants_and_json_keys(db, app):
    run_and_sample(db, app, [ORDERS.format(status="pending", user=u) for u in (7, 8, 7, 9, 7, 10)])
    run_and_sample(db, app, [EVENTS.format(user=u, order=1000 + u) for u in (3, 4, 5, 6, 7)])
    q_orders = queryid(db, "SELECT id, total FROM orders WHERE status = $1 AND user_id = $2")
    q_events = queryid(db, "SELECT id FROM behavior_log WHERE user_id = $1 AND payload->>$2 = $3")
    assert q_orders and q_events

    r = db.dicts("SELECT * FROM arch.sampled_parameters(%s)", (q_orders,))
    assert len(r) == 1 and r[0]["samples"] == 6 and r[0]["aligned"] == 6
    assert r[0]["value_tuples"][0] == {"values": ["pending", "7"], "count": 3}  # most frequent first
    assert sorted(t["values"][1] for t in r[0]["value_tuples"]) == ["10", "7", "8", "9"]
    assert r[0]["constants"] == [{"param": 1, "value": "pending", "literal": "'pending'", "samples": 6,
                                  "column": "status", "table": "orders", "predicate": "status = 'pending'"}]
    assert r[0]["expressions"] == []

    r = db.dicts("SELECT * FROM arch.sampled_parameters(%s)", (q_events,))[0]
    assert r["normalised"] == "SELECT id FROM behavior_log WHERE user_id = $1 AND payload->>$2 = $3"
    assert [t["values"] for t in r["value_tuples"]][:2] == [["3", "order_id", "1003"], ["4", "order_id", "1004"]] \
        or {tuple(t["values"]) for t in r["value_tuples"]} >= {("3", "order_id", "1003")}
    assert [c["param"] for c in r["constants"]] == [2]
    assert r["constants"][0]["predicate"] is None  # a JSON key, not a comparison with a column
    assert r["expressions"] == [{"params": [2], "expression": "(payload ->> 'order_id')",
                                 "table": "behavior_log", "column": "payload", "samples": 5}]

    # Fewer samples than constant_parameter_min_samples: nothing is called constant.
    db.sql("UPDATE arch.settings SET constant_parameter_min_samples = 10")
    r = db.dicts("SELECT * FROM arch.sampled_parameters(%s)", (q_events,))[0]
    assert r["constants"] == [] and r["expressions"] == []


def test_python_interface(db, app, dsn):
    from pg_architect import samples
    from pg_architect.db import PsycopgDb

    run_and_sample(db, app, [ORDERS.format(status=s, user=1) for s in ("pending", "pending", "paid")])
    q = queryid(db, "SELECT id, total FROM orders WHERE status = $1 AND user_id = $2")
    with psycopg.connect(dsn) as conn:
        pdb = PsycopgDb(conn)
        assert samples.parameter_values(pdb, q, None) == [["pending", "1"], ["paid", "1"]]
        assert samples.constant_parameters(pdb, q, None, min_samples=2)[0]["param"] == 2  # user_id 1
        assert samples.recovered_expressions(pdb, q, None, min_samples=2) == []
        assert samples.parameter_columns("SELECT * FROM orders o WHERE o.status = $1 AND o.user_id IN ($2, $3)") == {
            1: {"table": (None, "orders"), "column": "status", "operator": "="},
            2: {"table": (None, "orders"), "column": "user_id", "operator": "IN"},
            3: {"table": (None, "orders"), "column": "user_id", "operator": "IN"}}
        # A sample of another shape (queryid collision, truncated text) does not align.
        assert samples.align("SELECT * FROM orders WHERE id = $1", "SELECT * FROM users WHERE id IN (1, 2)") is None
        a = samples.align("SELECT * FROM t WHERE d > now() - interval $1", "SELECT * FROM t WHERE d > now() - interval '2 days'")
        assert (a.slots[1].value, a.slots[1].cast) == ("2 days", "interval")
        conn.rollback()


def test_passwords_are_never_sampled(db, dsn):
    victims = ("pga_victim_a", "pga_victim_b", "pga_victim_c")
    for v in victims:
        db.sql(f"CREATE ROLE {v}")
    try:
        with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn) as b, \
                psycopg.connect(dsn, autocommit=True) as c:
            a.execute(f"ALTER ROLE pga_victim_a PASSWORD '{SECRET}'")            # idle
            b.execute(f"ALTER ROLE pga_victim_b PASSWORD '{SECRET}'")            # idle in transaction
            c.execute(f"SELECT 1; ALTER ROLE pga_victim_c PASSWORD '{SECRET}'")  # two statements in one text
            assert db.value("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND query_id IS NOT NULL",
                            (f"%{SECRET}%",)) == 3
            got = sample(db)
            assert got["skipped"].get("utility", 0) == 2 and got["skipped"].get("several", 0) == 1, got
            b.rollback()
        assert db.value("SELECT count(*) FROM arch.query_sample q WHERE q::text LIKE %s", (f"%{SECRET}%",)) == 0
    finally:
        for v in victims:
            db.sql(f"DROP ROLE {v}")


def test_samples_follow_pg_stat_statements_visibility(db, dsn):
    roles = {"pga_app": "arch_reader", "pga_grafana": "arch_reader", "pga_stats": "arch_reader, pg_read_all_stats",
             "pga_sampler": "arch_admin"}
    for r, member_of in roles.items():
        db.sql(f"CREATE ROLE {r} LOGIN IN ROLE {member_of}")
    db.sql("GRANT SELECT ON orders TO pga_app")
    text = ORDERS.format(status="paid", user=5)
    try:
        with psycopg.connect(f"{dsn} user=pga_app") as app:
            app.execute(text).fetchall()  # idle in transaction
            # A sampler without pg_read_all_stats sees only '<insufficient privilege>' for pga_app's text.
            with psycopg.connect(f"{dsn} user=pga_sampler", autocommit=True) as s:
                got = s.execute("SELECT arch.sample_queries()").fetchone()[0]
                assert got["stored"] == 0 and got["hidden"] >= 1, got
            assert sample(db)["stored"] >= 1
            app.rollback()
        db.sql("DELETE FROM arch.query_sample WHERE userid <> 'pga_app'::regrole")  # harness sessions
        expected = {"pga_app": text, "pga_stats": text, "pga_grafana": HIDDEN, "pga_sampler": HIDDEN}
        for r, want in expected.items():
            with psycopg.connect(f"{dsn} user={r}") as conn:
                assert conn.execute("SELECT query FROM arch.query_samples").fetchall() == [(want,)], r
        q = queryid(db, "SELECT id, total FROM orders WHERE status = $1 AND user_id = $2")
        with psycopg.connect(f"{dsn} user=pga_sampler") as conn:  # nothing about a text it may not read
            assert conn.execute("SELECT count(*) FROM arch.sampled_parameters(%s)", (q,)).fetchone()[0] == 0
        assert not can_run(dsn, "pga_grafana", "SELECT arch.sample_queries()")
        assert not can_run(dsn, "pga_grafana", "SELECT * FROM arch.query_sample")
    finally:
        db.sql("REVOKE SELECT ON orders FROM pga_app")
        for r in roles:
            db.sql(f"DROP OWNED BY {r}")
            db.sql(f"DROP ROLE {r}")


def test_sample_table_stays_bounded(db, app):
    db.sql("UPDATE arch.settings SET query_sample_per_query = 3, query_sample_max_rows = 5")
    run_and_sample(db, app, [ORDERS.format(status="paid", user=u) for u in range(1, 9)])
    kept = [r[0] for r in db.sql("SELECT query FROM arch.query_sample WHERE application_name = 'shop' ORDER BY id")]
    assert kept == [ORDERS.format(status="paid", user=u) for u in (6, 7, 8)]  # the newest
    run_and_sample(db, app, [EVENTS.format(user=u, order=u) for u in range(1, 5)])
    assert db.value("SELECT count(*) FROM arch.query_sample") == 5
    assert db.value("SELECT count(*) FROM arch.query_sample WHERE query LIKE '%behavior_log%'") == 3
    assert db.value("SELECT count(*) FROM arch.query_sample WHERE query LIKE '%orders%'") <= 2
    with pytest.raises(psycopg.errors.CheckViolation, match="settings_query_sample_per_query"):
        db.sql("UPDATE arch.settings SET query_sample_per_query = 0")


def test_own_calls_are_not_sampled(db, app):
    app.execute("SELECT count(*) FROM arch.recommendations").fetchall()
    got = sample(db)
    assert got["skipped"].get("own", 0) >= 1
    assert db.value("SELECT count(*) FROM arch.query_sample WHERE query LIKE '%arch.%'") == 0


def test_schedule_and_unschedule_sampling(db):
    def jobs():
        return db.dicts("SELECT schedule, command FROM cron.job WHERE jobname = 'pg_architect_sampling'")
    try:
        jobid = db.value("SELECT arch.schedule_sampling()")
        assert jobs() == [{"schedule": "* * * * *", "command": "SELECT arch.sample_queries()"}]
        assert db.value("SELECT arch.schedule_sampling()") == jobid  # idempotent
        db.value("SELECT arch.schedule_sampling('*/5 * * * *')")
        assert [j["schedule"] for j in jobs()] == ["*/5 * * * *"]
        assert db.value("SELECT arch.unschedule_sampling()") is True
        assert jobs() == []
        assert db.value("SELECT arch.unschedule_sampling()") is False
        with pytest.raises(psycopg.Error, match="invalid cron expression"):
            db.sql("SELECT arch.schedule_sampling('every minute')")
    finally:
        db.sql("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'pg_architect_sampling'")


def test_pg_stats_values_respect_column_privileges(db, dsn):
    from pg_architect import samples
    from pg_architect.db import PsycopgDb

    with psycopg.connect(dsn) as conn:
        st = samples.pg_stats_values(PsycopgDb(conn), "public", "orders", "status", 10)
        assert set(st["most_common_vals"]) == {"shipped", "paid", "cancelled", "pending"}
        assert st["most_common_vals"][0] == "shipped" and st["most_common_freqs"][0] > 0.6
        hist = samples.pg_stats_values(PsycopgDb(conn), "public", "orders", "created_at", 5)["histogram_bounds"]
        assert len(hist) == 5 and hist == sorted(hist)
    db.sql("CREATE ROLE pga_plain LOGIN")
    try:
        with psycopg.connect(f"{dsn} user=pga_plain") as conn:
            assert samples.pg_stats_values(PsycopgDb(conn), "public", "orders", "status", 10) is None
    finally:
        db.sql("DROP ROLE pga_plain")


@pytest.fixture
def status_index(db):
    db.sql("CREATE INDEX pga_test_orders_status ON orders (status)")
    yield
    db.sql("DROP INDEX pga_test_orders_status")


def test_custom_plan_of_a_skewed_value_differs_from_the_generic_plan(db, app, status_index):
    text = "SELECT id, total FROM orders WHERE status = '{}'"
    run_and_sample(db, app, [text.format(s) for s in ("pending", "pending", "shipped")])
    q = queryid(db, "SELECT id, total FROM orders WHERE status = $1")
    rows = {tuple(r["param_values"]): r for r in db.dicts("SELECT * FROM arch.compare_plans(%s)", (q,))}
    pending, shipped = rows[("pending",)], rows[("shipped",)]
    assert pending["source"] == "sample" and pending["samples"] == 2 and shipped["samples"] == 1
    assert pending["generic_plan"] == shipped["generic_plan"] and pending["generic_cost"] == shipped["generic_cost"]
    # The generic plan assumes an average status (a quarter of the orders): it reads the index.
    assert any("pga_test_orders_status" in n for n in pending["generic_plan"])
    # 'shipped' is 72 % of the orders: its custom plan is a sequential scan, dearer than the
    # generic plan promised -- the generic plan misleads for this value.
    assert shipped["custom_plan"] == ["Seq Scan on orders"]
    assert shipped["custom_cost"] > shipped["generic_cost"]
    # 'pending' is 3 %: the index, and cheaper than the average.
    assert any("pga_test_orders_status" in n for n in pending["custom_plan"])
    assert pending["custom_cost"] < pending["generic_cost"]


def test_custom_plans_without_samples_use_pg_stats(db, app, status_index):
    app.execute("SELECT id, total FROM orders WHERE status = %s", ("pending",)).fetchall()  # server-side binding
    q = queryid(db, "SELECT id, total FROM orders WHERE status = $1")
    rows = db.dicts("SELECT * FROM arch.compare_plans(%s, 4)", (q,))
    assert {r["source"] for r in rows} == {"pg_stats"}
    assert {r["param_values"][0] for r in rows} == {"shipped", "paid", "cancelled", "pending"}
    assert any("pga_test_orders_status" in n for r in rows if r["param_values"] == ["pending"]
               for n in r["custom_plan"])


def test_custom_plans_are_planned_as_the_statements_role(db, dsn, status_index):
    db.sql("CREATE ROLE pga_app LOGIN")
    db.sql("GRANT SELECT ON orders TO pga_app")
    try:
        with psycopg.connect(f"{dsn} user=pga_app", autocommit=True) as app:
            run_and_sample(db, app, ["SELECT id FROM orders WHERE status = 'pending'"] * 2)
        q = queryid(db, "SELECT id FROM orders WHERE status = $1")
        assert db.dicts("SELECT skipped FROM arch.compare_plans(%s)", (q,))[0]["skipped"] is None
        db.sql("REVOKE SELECT ON orders FROM pga_app")
        # The superuser calling it could read orders; the role that ran the statement cannot.
        row = db.dicts("SELECT * FROM arch.compare_plans(%s)", (q,))[0]
        assert row["skipped"].startswith("permission") and row["custom_cost"] is None
    finally:
        db.sql("REVOKE SELECT ON orders FROM pga_app")
        db.sql("DROP OWNED BY pga_app")
        db.sql("DROP ROLE pga_app")
