-- pg_architect: views for psql and dashboards. Idempotent (dropped and re-created).

DROP VIEW IF EXISTS arch.pending_recommendations, arch.recommendations, arch.audit_runs,
                    arch.skipped_statements;

CREATE VIEW arch.recommendations WITH (security_barrier) AS
SELECT r.id, r.status, r.kind, r.index_kind,
       format('%I.%I', r.schema_name, r.table_name) AS table_name,
       CASE WHEN r.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(r.userid, r.ddl) ELSE r.ddl END AS ddl,  -- derived from a statement text
       round(r.est_gain_pct::numeric, 2) AS est_gain_pct,
       round(r.confidence::numeric, 2) AS confidence,
       round(r.benefit_ms::numeric, 1) AS benefit_ms,
       round(r.cost_before::numeric, 1) AS cost_before,
       round(r.cost_after::numeric, 1) AS cost_after,
       pg_size_pretty(r.est_size_bytes) AS est_size,
       r.calls, round(r.time_share::numeric * 100, 1) AS time_share_pct,
       r.queryid, arch.visible_text(r.userid, r.query) AS query, r.rationale, r.plan_changes, r.rollback_ddl,
       r.times_seen, r.created_at, r.updated_at, r.last_audit_run_id,
       r.decided_by, r.decided_at, r.decision_note,
       arch.visible_text(r.userid, x.business_purpose) AS business_purpose, p.url AS pull_request_url
FROM arch.recommendation r
LEFT JOIN arch.pull_request p ON p.recommendation_id = r.id
LEFT JOIN LATERAL (SELECT e.explanation AS business_purpose FROM arch.statement_explanation e
                   WHERE e.queryid = r.queryid ORDER BY e.explained_at DESC LIMIT 1) x ON true;
COMMENT ON VIEW arch.recommendations IS
'Every recommendation pg_architect has made, with its proof (costs before/after, estimated gain, confidence).';

CREATE VIEW arch.pending_recommendations WITH (security_barrier) AS
SELECT r.id, format('%I.%I', r.schema_name, r.table_name) AS table_name, r.index_kind,
       CASE WHEN r.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(r.userid, r.ddl) ELSE r.ddl END AS ddl,
       round(r.est_gain_pct::numeric, 2) AS est_gain_pct,
       round(r.confidence::numeric, 2) AS confidence,
       round(r.benefit_ms::numeric, 1) AS benefit_ms,
       pg_size_pretty(r.est_size_bytes) AS est_size,
       r.calls, r.queryid, r.rationale, r.updated_at,
       arch.visible_text(r.userid, x.business_purpose) AS business_purpose
FROM arch.recommendation r
CROSS JOIN arch.settings s
LEFT JOIN LATERAL (SELECT e.explanation AS business_purpose FROM arch.statement_explanation e
                   WHERE e.queryid = r.queryid ORDER BY e.explained_at DESC LIMIT 1) x ON true
WHERE s.id AND r.status = 'proposed' AND r.confidence >= s.confidence_threshold
ORDER BY r.benefit_ms DESC, r.est_gain_pct DESC, r.id;
COMMENT ON VIEW arch.pending_recommendations IS
'Proposed recommendations at or above the confidence threshold, waiting for a human decision, most beneficial first (benefit_ms: estimated execution time saved over the audit window).';

CREATE VIEW arch.audit_runs AS
SELECT a.id, a.status, a.started_at, a.finished_at,
       round(a.duration_ms::numeric) AS duration_ms,
       a.window_start, a.window_end, a.stats_reset_detected,
       a.statements_seen, a.statements_selected, a.statements_analyzed,
       a.statements_skipped AS skipped, a.candidates_tested,
       a.recommendations_new, a.recommendations_updated, a.run_by, a.host, a.error, a.notes,
       a.statements_grouped AS grouped, a.statements_reused AS reused, a.statements_done, a.batches
FROM arch.audit_run a
ORDER BY a.id DESC;
COMMENT ON VIEW arch.audit_runs IS
'One row per audit: its workload window, how many statements it selected, analysed, skipped, grouped with a representative and reused from an earlier audit, what it recommended, and notes on objects a step could not handle (permission denied, lock timeout ...); while CALL arch.run_audit_batched() runs, statements_done and batches show its committed progress.';

CREATE VIEW arch.skipped_statements WITH (security_barrier) AS
SELECT s.audit_run_id, s.queryid, s.skip_code AS code, arch.visible_text(s.userid, s.skip_reason) AS reason,
       s.calls, round(s.mean_time_ms::numeric, 1) AS mean_time_ms,
       left(arch.visible_text(s.userid, st.query), 200) AS query
FROM arch.audit_statement s
LEFT JOIN arch.statement st USING (dbid, userid, queryid)
WHERE s.outcome = 'skipped'
ORDER BY s.audit_run_id DESC, s.total_time_ms DESC;
COMMENT ON VIEW arch.skipped_statements IS
'Statements an audit selected but could not analyse, with the reason (utility statement, dropped table, permission, parse error ...). Text and reason read <insufficient privilege> where pg_stat_statements would hide the statement from the current role (arch.statement_visible); utility statements'' texts are never stored.';
