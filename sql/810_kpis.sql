-- pg_architect: the seed's success metrics (issue 12), weekly and monthly. Idempotent.
--
-- arch.kpis reads only arch tables (no statement text, no function of the package): it is a
-- plain view, owned by the installing superuser, readable by arch_reader (Grafana).
--
-- Where each number comes from (a period is [period_start, period_end) in the session's TimeZone,
-- weeks start on Monday):
--   audits, slow_statements ...   arch.audit_run.started_at / arch.audit_statement: the statements
--                                 the audits of the period selected as slow (distinct dbid, userid,
--                                 queryid), analysed or skipped; new_slow_statements: selected for
--                                 the first time ever in the period.
--   recommendations ...           arch.recommendation.created_at: recommendations made, per kind
--                                 (arch.recommendation.kind), their average confidence.
--   prs_opened                    first change to pr_open in arch.recommendation_transition (else the
--                                 pull request's created_at once it has a number).
--   prs_merged                    arch.pull_request.merged_at (synced from GitHub), else the first
--                                 change to merged in arch.recommendation_transition.
--   applied ...                   arch.recommendation.applied_at (the audit saw the index appear) and
--                                 the outcome measured from the snapshots (arch.outcomes).
--   time_saved_ms                 for each applied recommendation with a measured outcome:
--                                 (mean_time_before_ms - mean_time_after_ms) x the calls its
--                                 statements made in the period since it was applied, counted from
--                                 consecutive arch.snapshot_statement rows taken from the snapshot
--                                 that first saw the index on (a delta belongs to the period of its
--                                 later snapshot; after a statistics reset the counters since the
--                                 reset). Negative when the change made things slower. A
--                                 statement with a new queryid after the change (the rewritten
--                                 statement reading a materialized view, the same text over a
--                                 partitioned table) is counted by recommendation_statement.queryid_after.

DROP VIEW IF EXISTS arch.kpis;

CREATE VIEW arch.kpis AS
WITH
kinds (period_kind, step) AS (
    VALUES ('week'::text, interval '1 week'), ('month'::text, interval '1 month')
),
selected AS (   -- every statement an audit selected as slow, and when
    SELECT a.started_at AS at, s.dbid, s.userid, s.queryid, s.outcome
    FROM arch.audit_statement s
    JOIN arch.audit_run a ON a.id = s.audit_run_id
),
first_selected AS (
    SELECT min(at) AS at FROM selected GROUP BY dbid, userid, queryid
),
pr AS (         -- when each recommendation's pull request was opened and merged
    SELECT r.id,
           coalesce((SELECT min(t.changed_at) FROM arch.recommendation_transition t
                     WHERE t.recommendation_id = r.id AND t.to_status = 'pr_open'),
                    CASE WHEN p.pr_number IS NOT NULL THEN p.created_at END) AS opened_at,
           coalesce(p.merged_at,
                    (SELECT min(t.changed_at) FROM arch.recommendation_transition t
                     WHERE t.recommendation_id = r.id AND t.to_status = 'merged')) AS merged_at
    FROM arch.recommendation r
    LEFT JOIN arch.pull_request p ON p.recommendation_id = r.id
),
applied AS (
    SELECT r.applied_at AS at, r.measured_gain_pct, r.outcome
    FROM arch.recommendation r
    WHERE r.status = 'applied' AND r.applied_at IS NOT NULL
),
snap AS (       -- each snapshot with the one taken just before it
    SELECT s.id, s.taken_at, s.stats_reset,
           lag(s.id) OVER w AS prev_id, lag(s.stats_reset) OVER w AS prev_reset
    FROM arch.snapshot s
    WINDOW w AS (ORDER BY s.id)
),
since AS (      -- counters of each applied recommendation's statements from the snapshot that first saw it on
    SELECT r.applied_snapshot_id, r.mean_time_before_ms - r.mean_time_after_ms AS saved_per_call,
           sn.id AS snapshot_id, sn.taken_at, sn.prev_id, sn.stats_reset, sn.prev_reset, c.calls,
           lag(sn.id) OVER k AS last_id, lag(c.calls) OVER k AS last_calls
    FROM arch.recommendation r
    JOIN (SELECT DISTINCT rs.recommendation_id, rs.dbid, rs.userid, coalesce(rs.queryid_after, rs.queryid) AS queryid
          FROM arch.recommendation_statement rs) st ON st.recommendation_id = r.id
    JOIN snap sn ON sn.id >= r.applied_snapshot_id
    JOIN arch.snapshot_statement c
      ON c.snapshot_id = sn.id AND c.dbid = st.dbid AND c.userid = st.userid AND c.queryid = st.queryid
    WHERE r.status = 'applied' AND r.applied_snapshot_id IS NOT NULL
      AND r.mean_time_before_ms IS NOT NULL AND r.mean_time_after_ms IS NOT NULL
    WINDOW k AS (PARTITION BY r.id, st.dbid, st.userid, st.queryid ORDER BY sn.id)
),
saved AS (      -- measured mean time saved x calls, per snapshot interval since the change: the calls
                -- since the previous snapshot, or all of them when the statement was not in it (new
                -- entry) or the statistics were reset in between
    SELECT s.taken_at AS at,
           s.saved_per_call
           * CASE WHEN s.last_id IS DISTINCT FROM s.prev_id OR s.prev_reset IS DISTINCT FROM s.stats_reset
                       OR s.calls < s.last_calls
                  THEN s.calls ELSE s.calls - s.last_calls END AS saved_ms
    FROM since s
    WHERE s.snapshot_id > s.applied_snapshot_id
),
events (at) AS (
    SELECT a.started_at FROM arch.audit_run a
    UNION ALL SELECT r.created_at FROM arch.recommendation r
    UNION ALL SELECT pr.opened_at FROM pr
    UNION ALL SELECT pr.merged_at FROM pr
    UNION ALL SELECT applied.at FROM applied   -- time saved comes later than its applied_at
),
periods AS (    -- every period from the first event to now, empty ones included (zeros, not gaps)
    SELECT k.period_kind, g.start AS period_start, g.start + k.step AS period_end
    FROM kinds k
    CROSS JOIN (SELECT min(e.at) AS first_at, max(e.at) AS last_at FROM events e) b
    CROSS JOIN LATERAL generate_series(date_trunc(k.period_kind, b.first_at),
                                       date_trunc(k.period_kind, greatest(b.last_at, now())),
                                       k.step) AS g (start)
    WHERE b.first_at IS NOT NULL
),
audits AS (
    SELECT k.period_kind, date_trunc(k.period_kind, a.started_at) AS period_start, count(*) AS audits
    FROM arch.audit_run a CROSS JOIN kinds k
    GROUP BY 1, 2
),
slow AS (
    SELECT k.period_kind, date_trunc(k.period_kind, s.at) AS period_start,
           count(DISTINCT (s.dbid, s.userid, s.queryid)) AS slow_statements,
           count(DISTINCT (s.dbid, s.userid, s.queryid)) FILTER (WHERE s.outcome = 'analyzed') AS analyzed,
           count(DISTINCT (s.dbid, s.userid, s.queryid)) FILTER (WHERE s.outcome = 'skipped') AS skipped
    FROM selected s CROSS JOIN kinds k
    GROUP BY 1, 2
),
new_slow AS (
    SELECT k.period_kind, date_trunc(k.period_kind, f.at) AS period_start, count(*) AS new_slow_statements
    FROM first_selected f CROSS JOIN kinds k
    GROUP BY 1, 2
),
recs_by_kind AS (
    SELECT k.period_kind, date_trunc(k.period_kind, r.created_at) AS period_start, r.kind,
           count(*) AS n, sum(r.confidence) AS confidence_sum
    FROM arch.recommendation r CROSS JOIN kinds k
    GROUP BY 1, 2, 3
),
recs AS (
    SELECT b.period_kind, b.period_start, sum(b.n) AS recommendations,
           jsonb_object_agg(b.kind, b.n ORDER BY b.kind) AS by_kind,
           sum(b.confidence_sum) / sum(b.n) AS avg_confidence
    FROM recs_by_kind b
    GROUP BY 1, 2
),
prs AS (
    SELECT k.period_kind, x.period_start, sum(x.opened) AS prs_opened, sum(x.merged) AS prs_merged
    FROM kinds k
    CROSS JOIN LATERAL (
        SELECT date_trunc(k.period_kind, pr.opened_at) AS period_start, 1 AS opened, 0 AS merged
        FROM pr WHERE pr.opened_at IS NOT NULL
        UNION ALL
        SELECT date_trunc(k.period_kind, pr.merged_at), 0, 1
        FROM pr WHERE pr.merged_at IS NOT NULL) x
    GROUP BY 1, 2
),
applied_stats AS (
    SELECT k.period_kind, date_trunc(k.period_kind, a.at) AS period_start,
           count(*) AS applied,
           count(a.measured_gain_pct) AS applied_measured,
           count(*) FILTER (WHERE a.outcome = 'improved') AS applied_improved,
           count(*) FILTER (WHERE a.outcome IN ('slower', 'unused')) AS applied_failed,
           avg(a.measured_gain_pct) AS avg_measured_gain_pct
    FROM applied a CROSS JOIN kinds k
    GROUP BY 1, 2
),
savings AS (
    SELECT k.period_kind, date_trunc(k.period_kind, s.at) AS period_start, sum(s.saved_ms) AS saved_ms
    FROM (SELECT saved.at, sum(saved.saved_ms) AS saved_ms FROM saved GROUP BY saved.at) s CROSS JOIN kinds k
    GROUP BY 1, 2
)
SELECT p.period_kind, p.period_start, p.period_end,
       coalesce(au.audits, 0) AS audits,
       coalesce(sl.slow_statements, 0) AS slow_statements,
       coalesce(ns.new_slow_statements, 0) AS new_slow_statements,
       coalesce(sl.analyzed, 0) AS slow_statements_analyzed,
       coalesce(sl.skipped, 0) AS slow_statements_skipped,
       coalesce(rc.recommendations, 0)::bigint AS recommendations,
       coalesce(rc.by_kind, '{}'::jsonb) AS recommendations_by_kind,
       round(rc.avg_confidence::numeric, 3) AS avg_confidence,
       coalesce(pq.prs_opened, 0)::bigint AS prs_opened,
       coalesce(pq.prs_merged, 0)::bigint AS prs_merged,
       coalesce(oc.applied, 0) AS applied,
       coalesce(oc.applied_measured, 0) AS applied_measured,
       coalesce(oc.applied_improved, 0) AS applied_improved,
       coalesce(oc.applied_failed, 0) AS applied_failed,
       round(oc.avg_measured_gain_pct::numeric, 1) AS avg_measured_gain_pct,
       round(coalesce(sv.saved_ms, 0)::numeric, 1) AS time_saved_ms,
       round((sum(coalesce(sv.saved_ms, 0)) OVER (PARTITION BY p.period_kind ORDER BY p.period_start))::numeric, 1)
           AS time_saved_to_date_ms
FROM periods p
LEFT JOIN audits au           ON (au.period_kind, au.period_start) = (p.period_kind, p.period_start)
LEFT JOIN slow sl             ON (sl.period_kind, sl.period_start) = (p.period_kind, p.period_start)
LEFT JOIN new_slow ns         ON (ns.period_kind, ns.period_start) = (p.period_kind, p.period_start)
LEFT JOIN recs rc             ON (rc.period_kind, rc.period_start) = (p.period_kind, p.period_start)
LEFT JOIN prs pq              ON (pq.period_kind, pq.period_start) = (p.period_kind, p.period_start)
LEFT JOIN applied_stats oc    ON (oc.period_kind, oc.period_start) = (p.period_kind, p.period_start)
LEFT JOIN savings sv          ON (sv.period_kind, sv.period_start) = (p.period_kind, p.period_start)
ORDER BY p.period_kind DESC, p.period_start;

COMMENT ON VIEW arch.kpis IS
'The seed''s success metrics, one row per week and per month (period_kind, period_start; weeks start on Monday, in the session''s TimeZone) from the first audit to now: audits; slow statements the audits selected (distinct, new ones, analysed, skipped); recommendations made, by kind (jsonb) and their average confidence; pull requests opened and merged; recommendations applied in the period, their measured outcome and average measured gain (arch.outcomes); time saved = measured mean time saved per call x calls of their statements since applied (from the workload snapshots), in the period and to date.';
