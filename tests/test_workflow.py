"""Human approval in SQL: approve / reject, the lifecycle and its history, the approval policy,
the work queue (NOTIFY), superseded recommendations, and who may do what."""

import psycopg
import pytest

from conftest import Session, can_run, recommendations

ORDERS_OF_USER = "SELECT id, total FROM orders WHERE user_id = %s"
EVENTS_OF_USER = ("SELECT id, event_type, created_at FROM behavior_log "
                  "WHERE user_id = %s AND created_at >= %s ORDER BY created_at DESC LIMIT 20")


def audit_with_recommendations(db: Session) -> list[dict]:
    """The sample application's workload, then an audit: a few proposed recommendations."""
    db.run(ORDERS_OF_USER, [(u,) for u in (1, 2, 3)])
    db.run(EVENTS_OF_USER, [(u, "2020-01-01") for u in (1, 2)])
    db.audit()
    recs = recommendations(db)
    assert recs, "the workload should give recommendations"
    return recs


def history(db: Session, rec_id: int) -> list[tuple]:
    return db.sql("SELECT from_status, to_status, changed_by::text, note FROM arch.recommendation_history"
                  " WHERE recommendation_id = %s ORDER BY seq", (rec_id,))


def test_approve_records_who_when_and_queues_a_pull_request(low_thresholds, dsn):
    db = low_thresholds
    rec = audit_with_recommendations(db)[0]
    listener = psycopg.connect(dsn, autocommit=True)
    try:
        listener.execute("LISTEN arch_request")
        out = db.value("SELECT arch.approve(%s, 'looks right')", (rec["id"],))
        assert out["recommendation"] == rec["id"] and out["status"] == "approved"
        assert any("queued as request" in n for n in db.notices)
        notes = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
    finally:
        listener.close()
    assert notes == [f"open_pr:{out['request']}"]
    row = db.dicts("SELECT status, decided_by::text, decided_at, decision_note FROM arch.recommendation WHERE id = %s",
                   (rec["id"],))[0]
    assert row["status"] == "approved" and row["decided_by"] == "postgres" and row["decided_at"] is not None
    assert row["decision_note"] == "looks right"
    assert history(db, rec["id"]) == [(None, "proposed", "postgres", f"found by audit {rec['first_audit_run_id']}"),
                                      ("proposed", "approved", "postgres", "looks right")]
    req = db.dicts("SELECT kind, payload, status, requested_by::text FROM arch.request WHERE id = %s", (out["request"],))
    assert req == [{"kind": "open_pr", "payload": {"recommendation_id": rec["id"]}, "status": "pending",
                    "requested_by": "postgres"}]
    # Nothing was applied: the index does not exist.
    assert db.value("SELECT to_regclass(%s)", (f"public.{rec['index_name']}",)) is None


def test_reject_needs_a_reason_and_is_kept(low_thresholds):
    db = low_thresholds
    rec = audit_with_recommendations(db)[0]
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        db.sql("SELECT arch.reject(%s, '  ')", (rec["id"],))
    assert "a reason is required" in str(err.value) and "arch.reject(" in err.value.diag.message_hint
    db.sql("SELECT arch.reject(%s, 'the table is rewritten nightly')", (rec["id"],))
    row = db.dicts("SELECT status, decision_note, rejected_reason, rejected_at FROM arch.recommendation WHERE id = %s",
                   (rec["id"],))[0]
    assert row["status"] == "rejected" and row["decision_note"] == "the table is rewritten nightly"
    assert row["rejected_reason"] == "the table is rewritten nightly" and row["rejected_at"] is not None
    assert history(db, rec["id"])[-1] == ("proposed", "rejected", "postgres", "the table is rewritten nightly")
    # A rejected recommendation queues nothing and cannot be approved any more.
    assert db.value("SELECT count(*) FROM arch.request") == 0
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        db.sql("SELECT arch.approve(%s)", (rec["id"],))
    assert "is rejected, not proposed" in str(err.value)
    assert "rejected by postgres" in err.value.diag.message_detail
    assert "the table is rewritten nightly" in err.value.diag.message_detail


def test_approved_recommendation_can_be_rejected_before_its_pull_request(low_thresholds):
    db = low_thresholds
    rec = audit_with_recommendations(db)[0]
    db.sql("SELECT arch.approve(%s)", (rec["id"],))
    db.sql("UPDATE arch.request SET status = 'running'")  # a sidecar is opening the pull request
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is being opened right now"):
        db.sql("SELECT arch.reject(%s, 'changed my mind')", (rec["id"],))
    db.sql("UPDATE arch.request SET status = 'pending'")
    db.sql("SELECT arch.reject(%s, 'changed my mind')", (rec["id"],))
    assert [h[1] for h in history(db, rec["id"])] == ["proposed", "approved", "rejected"]


def test_invalid_transitions_are_refused_with_a_hint(low_thresholds):
    db = low_thresholds
    rec = audit_with_recommendations(db)[0]
    with pytest.raises(psycopg.errors.NoDataFound) as err:
        db.sql("SELECT arch.approve(987654)")
    assert "recommendation 987654 does not exist" in str(err.value)
    assert "arch.pending_recommendations" in err.value.diag.message_hint
    db.sql("SELECT arch.approve(%s)", (rec["id"],))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        db.sql("SELECT arch.approve(%s)", (rec["id"],))
    assert "is approved, not proposed" in str(err.value)
    assert "arch.pull_requests" in err.value.diag.message_hint
    # Whoever updates the table directly goes through the same rules.
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        db.sql("UPDATE arch.recommendation SET status = 'merged' WHERE id = %s", (rec["id"],))
    assert err.value.diag.message_detail == "From approved it can only become: rejected, pr_open, applied."
    assert "proposed → approved → pr_open" in err.value.diag.message_hint
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="record a decision"):
        db.sql("UPDATE arch.recommendation SET decided_by = 'someone_else' WHERE id = %s", (rec["id"],))
    # Without the auto policy, no pull request without approval.
    other = recommendations(db)[-1]
    if other["id"] != rec["id"]:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="auto_above_threshold"):
            db.sql("UPDATE arch.recommendation SET status = 'pr_open' WHERE id = %s", (other["id"],))


def test_policy_auto_above_threshold_queues_pull_requests(low_thresholds):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET approval_policy = 'auto_above_threshold', confidence_threshold = 0.01")
    db.run(ORDERS_OF_USER, [(u,) for u in (1, 2, 3)])
    summary = db.audit()
    recs = [r for r in recommendations(db) if r["status"] == "proposed"]
    assert recs and summary["pr_requests"] == len(recs)
    queued = db.sql("SELECT (payload->>'recommendation_id')::bigint FROM arch.request WHERE kind = 'open_pr' ORDER BY 1")
    assert [q[0] for q in queued] == sorted(r["id"] for r in recs)
    # The next audit queues nothing twice.
    db.run(ORDERS_OF_USER, [(4,)])
    assert db.audit()["pr_requests"] == 0
    assert db.value("SELECT count(*) FROM arch.request WHERE kind = 'open_pr'") == len(recs)


def test_policy_on_approval_queues_nothing_by_itself(low_thresholds):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET confidence_threshold = 0.01")
    audit_with_recommendations(db)
    assert db.value("SELECT count(*) FROM arch.request") == 0


def test_explain_requests_are_queued_once_when_an_llm_is_configured(low_thresholds):
    db = low_thresholds
    db.sql("UPDATE arch.settings SET llm_provider = 'openai', llm_base_url = 'http://127.0.0.1:9/v1'")
    db.run(ORDERS_OF_USER, [(1,), (2,)])
    summary = db.audit()
    analysed = db.value("SELECT count(*) FROM arch.audit_statement WHERE outcome = 'analyzed'")
    assert summary["explain_requests"] == analysed >= 1
    payload = db.value("SELECT payload FROM arch.request WHERE kind = 'explain' LIMIT 1")
    assert set(payload) == {"dbid", "userid", "queryid"}
    db.run(ORDERS_OF_USER, [(3,)])
    assert db.audit()["explain_requests"] == 0


def test_better_recommendation_supersedes_an_older_one(low_thresholds):
    db = low_thresholds
    # the second audit analyses the statement again (not reused: nothing of its inputs changed)
    db.sql("UPDATE arch.settings SET reuse_analyses = false")
    db.run(EVENTS_OF_USER, [(u, "2020-01-01") for u in (1, 2, 3)])
    db.audit()
    old = next(r for r in recommendations(db) if r["table_name"] == "behavior_log")
    # Pretend an older audit proposed a weaker index for the same statement.
    db.sql("UPDATE arch.recommendation SET fingerprint = 'older', est_gain_pct = est_gain_pct / 2,"
           " last_audit_run_id = NULL WHERE id = %s", (old["id"],))
    db.run(EVENTS_OF_USER, [(u, "2020-01-01") for u in (4, 5)])
    summary = db.audit()
    assert summary["superseded"] == 1
    row = db.dicts("SELECT status, superseded_by FROM arch.recommendation WHERE id = %s", (old["id"],))[0]
    new = next(r for r in recommendations(db) if r["table_name"] == "behavior_log" and r["id"] != old["id"])
    assert row == {"status": "superseded", "superseded_by": new["id"]}
    assert history(db, old["id"])[-1][:2] == ("proposed", "superseded")
    assert history(db, old["id"])[-1][3] == f"superseded by recommendation {new['id']}"


def test_superseded_recommendation_found_again_is_proposed_again(low_thresholds):
    db = low_thresholds
    db.run(EVENTS_OF_USER, [(u, "2020-01-01") for u in (1, 2, 3)])
    db.audit()
    rec = next(r for r in recommendations(db) if r["table_name"] == "behavior_log")
    # An earlier audit's set preferred another index; this one chooses it again.
    db.sql("UPDATE arch.recommendation SET status = 'superseded' WHERE id = %s", (rec["id"],))
    db.run(EVENTS_OF_USER, [(u, "2020-01-01") for u in (4, 5)])
    run_id = db.audit()["run_id"]
    row = db.dicts("SELECT status, superseded_by, last_audit_run_id FROM arch.recommendation WHERE id = %s",
                   (rec["id"],))[0]
    assert row == {"status": "proposed", "superseded_by": None, "last_audit_run_id": run_id}
    assert history(db, rec["id"])[-1][:2] == ("superseded", "proposed")
    assert history(db, rec["id"])[-1][3] == f"found again by audit {run_id}"


def test_queue_helpers(low_thresholds):
    db = low_thresholds
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no LLM is configured"):
        db.sql("SELECT arch.ask('how many users?')")
    db.sql("UPDATE arch.settings SET llm_provider = 'ollama'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="the question is empty"):
        db.sql("SELECT arch.ask('')")
    rid = db.value("SELECT arch.ask('how many users?')")
    assert db.dicts("SELECT status, question, accepted FROM arch.answer(%s)", (rid,)) == [
        {"status": "pending", "question": "how many users?", "accepted": None}]
    assert db.value("SELECT arch.train()") == db.value("SELECT arch.train()")  # one pending train at a time
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is pending"):
        db.sql("SELECT arch.retry_request(%s)", (rid,))
    db.sql("UPDATE arch.request SET status = 'failed', attempts = 5, last_error = 'boom' WHERE id = %s", (rid,))
    db.sql("SELECT arch.retry_request(%s)", (rid,))
    assert db.dicts("SELECT status, attempts, last_error FROM arch.request WHERE id = %s", (rid,)) == [
        {"status": "pending", "attempts": 0, "last_error": None}]


# ---------------------------------------------------------------------------- privileges

ROLES = {"pga_plain": None, "pga_grafana": "arch_reader", "pga_dba": "arch_admin",
         "pga_approver": "arch_approver", "pga_side": "arch_sidecar"}


@pytest.fixture
def roles(dsn):
    with psycopg.connect(dsn, autocommit=True) as su:
        for role, member_of in ROLES.items():
            su.execute(f"CREATE ROLE {role} LOGIN" + (f" IN ROLE {member_of}" if member_of else ""))
    yield
    with psycopg.connect(dsn, autocommit=True) as su:
        for role in ROLES:
            su.execute(f"DROP OWNED BY {role}")
            su.execute(f"DROP ROLE {role}")




def test_privilege_matrix_of_the_workflow(low_thresholds, dsn, roles):
    db = low_thresholds
    rec = audit_with_recommendations(db)[0]["id"]
    db.sql("UPDATE arch.settings SET llm_provider = 'ollama'")
    req = db.value("SELECT arch.train()")
    checks = {
        "read pending": "SELECT * FROM arch.pending_recommendations",
        "read history": "SELECT * FROM arch.recommendation_history",
        "read queue": "SELECT * FROM arch.requests",
        "read answers": "SELECT * FROM arch.answers",
        "approve": f"SELECT arch.approve({rec})",
        "reject": f"SELECT arch.reject({rec}, 'no')",
        "approve by UPDATE": f"UPDATE arch.recommendation SET status = 'approved' WHERE id = {rec}",
        "ask": "SELECT arch.ask('how many users?')",
        "claim a request": f"UPDATE arch.request SET status = 'running', attempts = attempts + 1 WHERE id = {req}",
        "write a result": f"UPDATE arch.request SET result = '{{}}', status = 'done' WHERE id = {req}",
        "queue a request": "INSERT INTO arch.request (kind) VALUES ('train')",
        "change settings": "UPDATE arch.settings SET github_repo = 'evil/repo'",
        "write training data": "DELETE FROM arch.vanna_training",
        "read user tables": "SELECT * FROM users LIMIT 1",
        "delete recommendations": "DELETE FROM arch.recommendation",
    }
    T, F = True, False
    expected = {
        #                 pending hist queue answ  appr  rej   updA  ask   claim write queue sett  train users del
        "pga_plain":    [F,      F,   F,    F,    F,    F,    F,    F,    F,    F,    F,    F,    F,    F,    F],
        "pga_grafana":  [T,      T,   T,    F,    F,    F,    F,    F,    F,    F,    F,    F,    F,    F,    F],
        "pga_dba":      [T,      T,   T,    T,    F,    F,    F,    T,    T,    T,    T,    T,    T,    F,    T],
        "pga_approver": [T,      T,   T,    F,    T,    T,    T,    F,    F,    F,    T,    F,    F,    F,    F],
        "pga_side":     [T,      T,   T,    F,    F,    F,    F,    F,    T,    T,    F,    F,    T,    F,    F],
    }
    got = {role: [can_run(dsn, role, sql) for sql in checks.values()] for role in expected}
    assert got == expected, {r: dict(zip(checks, v)) for r, v in got.items()}


def test_sidecar_role_moves_recommendations_only_through_its_own_transitions(low_thresholds, dsn, roles):
    db = low_thresholds
    rec = audit_with_recommendations(db)[0]["id"]
    with psycopg.connect(f"{dsn} user=pga_side", autocommit=True) as side:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only members of arch_approver"):
            side.execute("UPDATE arch.recommendation SET status = 'approved' WHERE id = %s", (rec,))
        db.sql("SELECT arch.approve(%s)", (rec,))
        side.execute("UPDATE arch.recommendation SET status = 'pr_open' WHERE id = %s", (rec,))
    assert history(db, rec)[-1][:3] == ("approved", "pr_open", "pga_side")


def test_wrong_arguments_to_approve_and_reject(db):
    for call in ("SELECT arch.approve(NULL)", "SELECT arch.reject(NULL, 'no')"):
        with pytest.raises(psycopg.errors.NullValueNotAllowed) as err:
            db.sql(call)
        assert "recommendation id must not be NULL" in str(err.value)
        assert "pending_recommendations" in err.value.diag.message_hint
    with pytest.raises(psycopg.errors.NoDataFound) as err:
        db.sql("SELECT arch.approve(424242)")
    assert "recommendation 424242 does not exist" in str(err.value)
