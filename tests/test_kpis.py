"""Issue 12, the seed's success metrics: arch.kpis on planted history, and every Grafana panel of
the provisioned dashboard run as a login member of arch_reader.

The planted history (UTC; weeks start on Monday):

* audits on Tue 2026-03-03 (week of 03-02), 03-10 and 03-11 (week of 03-09), 04-07 (week of 04-06),
  selecting statements q1..q6 (analysed or skipped);
* recommendations of five kinds (the kind CHECK of migration 0002 allows index, rewrite,
  drop_index, partitioning and caching), with their pull requests and history;
* two applied recommendations measured from the snapshots (one faster, one slower), a third applied
  and not measured yet; workload snapshots before and after, with a statistics reset in between.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
from decimal import Decimal
from itertools import pairwise

import psycopg
import pytest

DASHBOARD = pathlib.Path(__file__).resolve().parent.parent / "docker" / "grafana" / "dashboards" / "pg_architect.json"
UTC = dt.UTC


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


def plant_history(db) -> dict:
    """Plant audits, statements, recommendations, pull requests, outcomes and snapshots."""
    db.sql("SET TimeZone = 'UTC'")
    dbid = db.value("SELECT oid FROM pg_database WHERE datname = current_database()")
    uid = db.value("SELECT oid FROM pg_roles WHERE rolname = current_user")

    runs = {}
    for name, at in [("run1", "2026-03-03 02:00"), ("run2", "2026-03-10 02:00"),
                     ("run3", "2026-03-11 02:00"), ("run4", "2026-04-07 02:00")]:
        runs[name] = db.value(
            "INSERT INTO arch.audit_run (started_at, finished_at, status, duration_ms, statements_selected)"
            " VALUES (%s, %s::timestamptz + interval '1 minute', 'ok', 60000, 3) RETURNING id", (at, at))
    for q in range(1, 7):
        db.sql("INSERT INTO arch.statement (dbid, userid, queryid, query) VALUES (%s, %s, %s, %s)",
               (dbid, uid, q, f"SELECT * FROM orders WHERE user_id = $1 /* q{q} */"))
    for run, q, outcome in [("run1", 1, "analyzed"), ("run1", 2, "analyzed"), ("run1", 3, "skipped"),
                            ("run2", 1, "analyzed"), ("run2", 4, "analyzed"),
                            ("run3", 1, "analyzed"), ("run3", 4, "skipped"), ("run3", 5, "analyzed"),
                            ("run4", 2, "analyzed"), ("run4", 6, "skipped")]:
        db.sql("INSERT INTO arch.audit_statement (audit_run_id, dbid, userid, queryid, calls, total_time_ms,"
               " mean_time_ms, time_share, outcome, skip_code, skip_reason)"
               " VALUES (%s, %s, %s, %s, 200, 2000, 10, 0.1, %s, %s, %s)",
               (runs[run], dbid, uid, q, outcome, None if outcome == "analyzed" else "utility",
                None if outcome == "analyzed" else "a utility statement"))

    snaps = {}
    for name, at, reset in [("s1", "2026-03-03 02:00", "2026-01-01"), ("s2", "2026-03-10 02:00", "2026-01-01"),
                            ("s3", "2026-03-11 02:00", "2026-01-01"), ("s4", "2026-03-18 02:00", "2026-01-01"),
                            ("s5", "2026-04-07 02:00", "2026-04-01"), ("s6", "2026-04-14 02:00", "2026-04-01")]:
        snaps[name] = db.value("INSERT INTO arch.snapshot (taken_at, stats_reset) VALUES (%s, %s) RETURNING id",
                               (at, reset))
    # Cumulative calls per snapshot (q2 is gone after the reset at s5 and back at s6).
    calls = {1: {"s1": 100, "s2": 200, "s3": 300, "s4": 1300, "s5": 50, "s6": 250},
             2: {"s3": 10, "s4": 60, "s6": 40},
             5: {"s3": 5, "s4": 105, "s5": 20, "s6": 20}}
    for q, per in calls.items():
        for s, n in per.items():
            db.sql("INSERT INTO arch.snapshot_statement (snapshot_id, dbid, userid, queryid, calls, total_exec_time)"
                   " VALUES (%s, %s, %s, %s, %s, %s)", (snaps[s], dbid, uid, q, n, n * 5.0))

    def rec(name, kind, confidence, status, created, **extra):
        cols = {"fingerprint": name, "kind": kind, "schema_name": "public", "table_name": "orders",
                "definition": f"{kind} {name}", "ddl": f"-- {kind} {name}", "rationale": "planted",
                "cost_before": 100, "cost_after": 10, "est_gain_pct": 90, "confidence": confidence,
                "status": status, "created_at": created, "queryid": 1, "userid": uid, **extra}
        names = ", ".join(cols)
        marks = ", ".join(["%s"] * len(cols))
        return db.value(f"INSERT INTO arch.recommendation ({names}) VALUES ({marks}) RETURNING id",
                        list(cols.values()))

    r = {}
    r["r1"] = rec("r1", "index", 0.90, "applied", "2026-03-03 02:01",
                  applied_at="2026-03-11 02:00:30", applied_snapshot_id=snaps["s3"],
                  applied_prev_snapshot_id=snaps["s2"], mean_time_before_ms=10, mean_time_after_ms=2,
                  measured_gain_pct=80, outcome="improved")
    r["r2"] = rec("r2", "index", 0.85, "proposed", "2026-03-03 02:01")
    r["r8"] = rec("r8", "index", 0.80, "applied", "2026-03-03 02:01",
                  applied_at="2026-03-11 02:00:30", applied_snapshot_id=snaps["s3"],
                  applied_prev_snapshot_id=snaps["s2"], mean_time_before_ms=4, mean_time_after_ms=5,
                  measured_gain_pct=-25, outcome="slower")
    r["r3"] = rec("r3", "rewrite", 0.85, "pr_open", "2026-03-10 02:01")
    r["r4"] = rec("r4", "drop_index", 0.60, "rejected", "2026-03-10 02:01")
    r["r5"] = rec("r5", "index", 0.95, "applied", "2026-04-07 02:01",
                  applied_at="2026-04-14 02:00:30", applied_snapshot_id=snaps["s6"],
                  applied_prev_snapshot_id=snaps["s5"])
    r["r6"] = rec("r6", "partitioning", 0.50, "proposed", "2026-04-07 02:01")
    r["r7"] = rec("r7", "caching", 0.75, "proposed", "2026-04-07 02:01")
    for name, stmts in [("r1", [1, 2]), ("r8", [5]), ("r5", [2])]:
        for q in stmts:
            db.sql("INSERT INTO arch.recommendation_statement (recommendation_id, audit_run_id, dbid, userid, queryid,"
                   " cost_before, cost_after, est_gain_pct) VALUES (%s, %s, %s, %s, %s, 100, 10, 90)",
                   (r[name], runs["run3"] if name != "r5" else runs["run4"], dbid, uid, q))

    # The history as it happened (the insert trigger logged "now": replaced by the planted story).
    db.sql("DELETE FROM arch.recommendation_transition")
    for name, frm, to, at in [
        ("r1", None, "proposed", "2026-03-03 02:01"), ("r1", "proposed", "approved", "2026-03-03 09:00"),
        ("r1", "approved", "pr_open", "2026-03-04 10:00"),
        ("r1", "pr_open", "merged", "2026-03-16 09:00"),   # synced a week after GitHub merged it
        ("r1", "merged", "applied", "2026-03-11 02:00:30"),
        ("r3", None, "proposed", "2026-03-10 02:01"), ("r3", "proposed", "approved", "2026-03-12 08:00"),
        ("r3", "approved", "pr_open", "2026-03-12 09:00"), ("r3", "pr_open", "closed", "2026-03-14 09:00"),
        ("r3", "closed", "pr_open", "2026-03-20 09:00"),   # reopened: not a new pull request
        ("r4", "proposed", "rejected", "2026-03-11 09:00"),
        ("r5", "pr_open", "merged", "2026-04-09 09:00"),   # no pr_open change logged: pull_request.created_at
        ("r5", "merged", "applied", "2026-04-14 02:00:30"),
    ]:
        db.sql("INSERT INTO arch.recommendation_transition (recommendation_id, from_status, to_status, changed_at)"
               " VALUES (%s, %s, %s, %s)", (r[name], frm, to, at))
    for name, number, state, created, merged in [
        ("r1", 11, "merged", "2026-03-04 10:00", "2026-03-13 15:00"),
        ("r3", 12, "open", "2026-03-12 09:00", None),
        ("r5", 13, "open", "2026-04-08 10:00", None),   # merged, not synced back: the history says so
    ]:
        db.sql("INSERT INTO arch.pull_request (recommendation_id, repo, base_branch, branch, migration_format,"
               " pr_number, url, state, created_at, merged_at) VALUES (%s, 'acme/app', 'main', %s, 'sql', %s,"
               " %s, %s, %s, %s)",
               (r[name], f"pg-architect/{name}", number, f"https://github.example/acme/app/pull/{number}",
                state, created, merged))
    return {"runs": runs, "snaps": snaps, "recs": r}


def kpis(db, kind: str) -> dict:
    db.sql("SET TimeZone = 'UTC'")
    rows = db.dicts("SELECT * FROM arch.kpis WHERE period_kind = %s ORDER BY period_start", (kind,))
    return {r["period_start"]: r for r in rows}


ZERO = {"audits": 0, "slow_statements": 0, "new_slow_statements": 0, "slow_statements_analyzed": 0,
        "slow_statements_skipped": 0, "recommendations": 0, "recommendations_by_kind": {}, "avg_confidence": None,
        "prs_opened": 0, "prs_merged": 0, "applied": 0, "applied_measured": 0, "applied_improved": 0,
        "applied_failed": 0, "avg_measured_gain_pct": None, "time_saved_ms": Decimal("0.0")}


def expect(base: dict | None = None, **kw) -> dict:
    out = dict(ZERO if base is None else base)
    out.update(kw)
    return out


def numbers(row: dict) -> dict:
    return {k: row[k] for k in ZERO}


def test_kpis_weekly_numbers_of_planted_history(db):
    plant_history(db)
    weeks = kpis(db, "week")
    starts = sorted(weeks)
    # Every week from the first audit to now, empty ones included, each one week long.
    assert starts[0] == ts("2026-03-02")
    assert all(b - a == dt.timedelta(weeks=1) for a, b in pairwise(starts))
    now = db.value("SELECT now()")
    assert starts[-1] <= now < weeks[starts[-1]]["period_end"]
    assert all(w["period_end"] - w["period_start"] == dt.timedelta(weeks=1) for w in weeks.values())

    expected = {
        ts("2026-03-02"): expect(audits=1, slow_statements=3, new_slow_statements=3, slow_statements_analyzed=2,
                                 slow_statements_skipped=1, recommendations=3, recommendations_by_kind={"index": 3},
                                 avg_confidence=Decimal("0.850"), prs_opened=1),
        # q1 twice, q4 analysed in one audit and skipped in the other (counted in both).
        ts("2026-03-09"): expect(audits=2, slow_statements=3, new_slow_statements=2, slow_statements_analyzed=3,
                                 slow_statements_skipped=1, recommendations=2,
                                 recommendations_by_kind={"rewrite": 1, "drop_index": 1},
                                 avg_confidence=Decimal("0.725"), prs_opened=1, prs_merged=1,
                                 applied=2, applied_measured=2, applied_improved=1, applied_failed=1,
                                 avg_measured_gain_pct=Decimal("27.5")),
        # s3 -> s4: r1 saves 8 ms x (1000 calls of q1 + 50 of q2), r8 costs 1 ms x 100 calls of q5.
        ts("2026-03-16"): expect(time_saved_ms=Decimal("8300.0")),
        ts("2026-03-23"): expect(),
        ts("2026-03-30"): expect(),
        # s4 -> s5 across a statistics reset: the counters since the reset (q1 50, q2 none, q5 20).
        ts("2026-04-06"): expect(audits=1, slow_statements=2, new_slow_statements=1, slow_statements_analyzed=1,
                                 slow_statements_skipped=1, recommendations=3,
                                 recommendations_by_kind={"index": 1, "partitioning": 1, "caching": 1},
                                 avg_confidence=Decimal("0.733"), prs_opened=1, prs_merged=1,
                                 time_saved_ms=Decimal("380.0")),
        # s5 -> s6: q1 200 calls, q2 40 (new since s5), q5 none; r5 applied, not measured yet.
        ts("2026-04-13"): expect(applied=1, time_saved_ms=Decimal("1920.0")),
    }
    for start, want in expected.items():
        assert numbers(weeks[start]) == want, start
    for start in starts:
        if start not in expected:
            assert numbers(weeks[start]) == ZERO, start

    to_date = {s: weeks[s]["time_saved_to_date_ms"] for s in starts}
    assert [to_date[ts(d)] for d in ("2026-03-02", "2026-03-09", "2026-03-16", "2026-03-30", "2026-04-06",
                                     "2026-04-13")] == [0, 0, 8300, 8300, 8680, 10600]
    assert to_date[starts[-1]] == Decimal("10600.0")


def test_kpis_monthly_numbers_of_planted_history(db):
    plant_history(db)
    months = kpis(db, "month")
    starts = sorted(months)
    assert starts[0] == ts("2026-03-01")
    assert [(s.year, s.month) for s in starts[:3]] == [(2026, 3), (2026, 4), (2026, 5)]
    assert len(starts) == len({(s.year, s.month) for s in starts})
    assert months[ts("2026-03-01")]["period_end"] == ts("2026-04-01")
    assert numbers(months[ts("2026-03-01")]) == expect(
        audits=3, slow_statements=5, new_slow_statements=5, slow_statements_analyzed=4, slow_statements_skipped=2,
        recommendations=5, recommendations_by_kind={"index": 3, "rewrite": 1, "drop_index": 1},
        avg_confidence=Decimal("0.800"), prs_opened=2, prs_merged=1, applied=2, applied_measured=2,
        applied_improved=1, applied_failed=1, avg_measured_gain_pct=Decimal("27.5"),
        time_saved_ms=Decimal("8300.0"))
    assert numbers(months[ts("2026-04-01")]) == expect(
        audits=1, slow_statements=2, new_slow_statements=1, slow_statements_analyzed=1, slow_statements_skipped=1,
        recommendations=3, recommendations_by_kind={"index": 1, "partitioning": 1, "caching": 1},
        avg_confidence=Decimal("0.733"), prs_opened=1, prs_merged=1, applied=1, time_saved_ms=Decimal("2300.0"))
    assert months[ts("2026-04-01")]["time_saved_to_date_ms"] == Decimal("10600.0")
    for s in starts[2:]:
        assert numbers(months[s]) == ZERO, s
        assert months[s]["time_saved_to_date_ms"] == Decimal("10600.0")


def test_kpis_are_empty_before_the_first_audit(db):
    assert db.sql("SELECT * FROM arch.kpis") == []


def test_kpis_count_what_a_real_audit_detected(low_thresholds):
    """The weekly row of this week counts the statements the audit just selected, and its recommendations."""
    db = low_thresholds
    db.run("SELECT id, total FROM orders WHERE user_id = %s", [(i,) for i in range(1, 6)], times=3)
    db.run("SELECT count(*) FROM behavior_log WHERE user_id = %s", [(i,) for i in range(1, 4)])
    db.audit()
    selected = db.value("SELECT count(DISTINCT (dbid, userid, queryid)) FROM arch.audit_statement")
    made = db.dicts("SELECT kind, count(*) AS n FROM arch.recommendation GROUP BY kind")
    assert selected >= 2 and made
    this_week = db.dicts("SELECT * FROM arch.kpis WHERE period_kind = 'week'"
                         " AND period_start = date_trunc('week', now())")
    assert len(this_week) == 1
    w = this_week[0]
    assert (w["audits"], w["slow_statements"], w["new_slow_statements"]) == (1, selected, selected)
    assert w["recommendations"] == sum(m["n"] for m in made)
    assert w["recommendations_by_kind"] == {m["kind"]: m["n"] for m in made}
    assert w["prs_opened"] == w["prs_merged"] == w["applied"] == 0


# ---------------------------------------------------------------------------- the dashboard

def dashboard_panels() -> list[dict]:
    """Every panel of the provisioned dashboard, panels nested in rows included."""
    out = []

    def walk(panels):
        for p in panels:
            out.append(p)
            walk(p.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return out


def grafana_sql(sql: str, frm: dt.datetime, to: dt.datetime) -> str:
    """Expand the Grafana PostgreSQL data source macros the way Grafana does."""
    f, t = f"'{frm.isoformat()}'", f"'{to.isoformat()}'"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1).strip()} BETWEEN {f} AND {t}", sql)
    sql = re.sub(r"\$__unixEpochFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1).strip()} >= {int(frm.timestamp())} AND {m.group(1).strip()} <= "
                           f"{int(to.timestamp())}", sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),[^)]*\)",
                 lambda m: f"floor(extract(epoch from {m.group(1).strip()})/86400)*86400 AS \"time\"", sql)
    sql = re.sub(r"\$__timeGroup\(([^,]+),[^)]*\)",
                 lambda m: f"floor(extract(epoch from {m.group(1).strip()})/86400)*86400", sql)
    sql = sql.replace("$__timeFrom()", f).replace("$__timeTo()", t)
    sql = sql.replace("$__unixEpochFrom()", str(int(frm.timestamp()))).replace("$__unixEpochTo()",
                                                                              str(int(to.timestamp())))
    sql = sql.replace("$__interval_ms", "86400000").replace("$__interval", "1d")
    assert "$" not in re.sub(r"\$\d+", "", sql), f"a Grafana macro or variable this test does not know: {sql}"
    return sql


def test_dashboard_json_is_valid_and_has_the_kpi_panels():
    board = json.loads(DASHBOARD.read_text())
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        for key in ("x", "y", "w", "h"):
            assert isinstance(p["gridPos"][key], int), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "pg-architect" and t["rawQuery"] and t["rawSql"].strip(), p["title"]
    kpi_sql = " ".join(t["rawSql"] for p in panels for t in p.get("targets", []) if "arch.kpis" in t["rawSql"])
    for column in ("slow_statements", "recommendations_by_kind", "prs_opened", "prs_merged", "avg_confidence",
                   "avg_measured_gain_pct", "time_saved_ms", "time_saved_to_date_ms"):
        assert column in kpi_sql, column
    assert board["templating"]["list"] == []


@pytest.fixture
def grafana_dsn(dsn):
    """A login role that is a member of arch_reader, read-only like the compose file's `grafana`."""
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_kpi_grafana LOGIN IN ROLE arch_reader")
        su.execute("ALTER ROLE pga_kpi_grafana SET default_transaction_read_only = on")
    yield f"{dsn} user=pga_kpi_grafana options='-c TimeZone=UTC'"
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pga_kpi_grafana'")
        su.execute("DROP OWNED BY pga_kpi_grafana")
        su.execute("DROP ROLE pga_kpi_grafana")


def test_every_dashboard_panel_runs_for_a_reader(db, grafana_dsn):
    """Each panel's SQL, macros expanded over the planted history, runs as the reader; the KPI
    panels return rows."""
    plant_history(db)
    frm, to = ts("2026-03-01"), db.value("SELECT now()")
    ran = []
    with psycopg.connect(grafana_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        for p in dashboard_panels():
            for t in p.get("targets", []):
                sql = grafana_sql(t["rawSql"], frm, to)
                try:
                    rows = conn.execute(sql).fetchall()
                except psycopg.Error as exc:
                    pytest.fail(f"panel {p['id']} {p['title']!r}: {exc}\n{sql}")
                ran.append(p["id"])
                if "arch.kpis" in sql:
                    assert rows, f"panel {p['id']} {p['title']!r} shows nothing on a database with history"
                if t.get("format") == "time_series":
                    cols = [d.name for d in conn.execute(sql).description]
                    assert "time" in cols, f"panel {p['id']} {p['title']!r}: a time series needs a time column"
        # The reader reads the view, not the tables behind it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM arch.pull_request")
    assert len(ran) == sum(len(p.get("targets", [])) for p in dashboard_panels()) and len(ran) >= 20
