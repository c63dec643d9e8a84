"""Steps 3 and 7 on the database side: what an audit hands to humans and to the sidecar.

Runs inside the audit's transaction (PL/Python or psycopg, through :class:`~pg_architect.db.Db`);
it only writes ``arch`` rows and never waits on the network:

* an ``explain`` request for each analysed statement that has no business explanation yet
  (only when an LLM is configured: ``arch.settings.llm_provider``);
* an ``open_pr`` request for each proposed recommendation at or above the confidence threshold
  when the approval policy is ``auto_above_threshold`` (the pull request review is the approval);
* ``validate_policy = 'before_approval'``: a ``validate`` request for each proposed index or
  statistics recommendation at or above the confidence threshold that has no validation since it
  last changed (the sidecar runs it on staging, ``PGA_STAGING_DSN``; the measured gain then
  replaces the estimate in its confidence before anyone approves it);
* ``superseded`` for a proposed recommendation when this audit found a better one (same table,
  same statements, at least the same estimated gain) and no longer found the old one.

The approval itself (``arch.approve`` / ``arch.reject``), the lifecycle and its history are SQL
(``sql/700_workflow.sql``): a DBA's decision needs no Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import settings
from .db import Db
from .errors import TaskError  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class HandOverSettings:
    approval_policy: str
    llm_provider: str | None
    validate_policy: str


def after_audit(db: Db, run_id: int) -> dict:
    """Queue what the audit ``run_id`` leaves for the sidecar; returns counts for its summary."""
    s = settings.load_into(db, HandOverSettings)
    out = {"superseded": supersede(db, run_id), "explain_requests": 0, "pr_requests": 0}
    if s.validate_policy == "before_approval":
        out["validate_requests"] = queue_validations(db)
    if s.llm_provider:
        out["explain_requests"] = queue_explanations(db, run_id)
    if s.approval_policy == "auto_above_threshold":
        out["pr_requests"] = queue_auto_pull_requests(db)
    return out


def queue_explanations(db: Db, run_id: int) -> int:
    """One ``explain`` request per analysed statement of the run without an explanation yet;
    a failed one is queued again, a pending or done one is left alone."""
    return int(db.scalar(
        "SELECT count(*) FROM (SELECT arch._queue_request('explain', jsonb_build_object('dbid', a.dbid::bigint,"
        "        'userid', a.userid::bigint, 'queryid', a.queryid),"
        "        format('explain:%s:%s:%s', a.dbid, a.userid, a.queryid), true) AS id"
        "  FROM arch.audit_statement a"
        "  WHERE a.audit_run_id = $1 AND a.outcome = 'analyzed'"
        "    AND NOT EXISTS (SELECT 1 FROM arch.statement_explanation e"
        "                    WHERE e.dbid = a.dbid AND e.userid = a.userid AND e.queryid = a.queryid)"
        "  ORDER BY a.total_time_ms DESC) q WHERE q.id IS NOT NULL", [run_id]))


def queue_auto_pull_requests(db: Db) -> int:
    """Policy auto_above_threshold: an ``open_pr`` request for every proposed recommendation at
    or above the threshold (once per recommendation)."""
    return int(db.scalar(
        "SELECT count(*) FROM (SELECT arch._queue_request('open_pr', jsonb_build_object('recommendation_id', r.id),"
        "        'open_pr:' || r.id) AS id"
        "  FROM arch.recommendation r CROSS JOIN arch.settings s"
        "  WHERE s.id AND r.status = 'proposed' AND r.kind IN ('index', 'statistics', 'rewrite')"
        "   AND r.confidence >= s.confidence_threshold"
        "  ORDER BY r.benefit_ms DESC, r.id) q WHERE q.id IS NOT NULL"))


def queue_validations(db: Db) -> int:
    """Policy before_approval: a ``validate`` request for every proposed recommendation at or above
    the threshold of a kind the validator supports (``validate.SUPPORTED_KINDS``) without a
    validation since it last changed; a failed or refused request is queued again, a pending one
    is left alone."""
    return int(db.scalar(
        "SELECT count(*) FROM (SELECT arch._queue_request('validate', jsonb_build_object('recommendation_id', r.id),"
        "        'validate:' || r.id, true) AS id"
        "  FROM arch.recommendation r CROSS JOIN arch.settings s"
        "  WHERE s.id AND r.status = 'proposed'"
        "    AND r.kind IN ('index', 'statistics', 'rewrite', 'materialized_view', 'partition')"
        "    AND r.confidence >= s.confidence_threshold"
        "    AND NOT EXISTS (SELECT 1 FROM arch.validation v WHERE v.recommendation_id = r.id"
        "                    AND v.started_at >= r.updated_at)"
        "  ORDER BY r.benefit_ms DESC, r.id) q WHERE q.id IS NOT NULL"))


def supersede(db: Db, run_id: int) -> int:
    """Mark proposed recommendations superseded by a better one this audit found for the same
    statements on the same table (the old one was not found again by this audit)."""
    rows = db.query(
        "UPDATE arch.recommendation o SET status = 'superseded', superseded_by = b.new_id"
        " FROM (SELECT DISTINCT ON (o2.id) o2.id AS old_id, n.id AS new_id"
        "       FROM arch.recommendation o2"
        "       JOIN arch.recommendation n ON n.schema_name = o2.schema_name AND n.table_name = o2.table_name"
        "        AND n.kind = o2.kind AND n.id <> o2.id AND n.status = 'proposed' AND n.last_audit_run_id = $1"
        "        AND n.est_gain_pct >= o2.est_gain_pct"
        "       WHERE o2.status = 'proposed' AND o2.last_audit_run_id IS DISTINCT FROM $1"
        "         AND EXISTS (SELECT 1 FROM arch.recommendation_statement a"
        "                     JOIN arch.recommendation_statement b"
        "                       ON b.dbid = a.dbid AND b.userid = a.userid AND b.queryid = a.queryid"
        "                     WHERE a.recommendation_id = o2.id AND b.recommendation_id = n.id"
        "                       AND b.audit_run_id = $1)"
        "       ORDER BY o2.id, n.est_gain_pct DESC, n.id) b"
        " WHERE o.id = b.old_id RETURNING o.id", [run_id])
    return len(rows)
