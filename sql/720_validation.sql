-- pg_architect: validation on staging (issue 12). Idempotent.
-- The measuring itself runs in the sidecar (`pg-architect validate`, request kind `validate`),
-- never inside this server: it needs a connection to the staging database, whose DSN lives only
-- in the sidecar's environment (PGA_STAGING_DSN).

COMMENT ON TABLE arch.validation IS 'Validation on staging: per recommendation and statement, real EXPLAIN (ANALYZE, BUFFERS) runs before and after the change was applied on the staging database (then undone): parameters used, times, medians, buffers, plan node changes, staging size check, measured gain and confidence, or why it was skipped. Read it through arch.validations.';
COMMENT ON COLUMN arch.validation.batch IS 'One validation of one recommendation: its rows (one per statement) share it.';
COMMENT ON COLUMN arch.validation.status IS 'measured (before and after timed), skipped (the statement cannot be run safely or as its role: skip_code), failed (an error on staging), mismatch (the staging tables do not look like production''s: size_check).';
COMMENT ON COLUMN arch.validation.parameters IS 'The parameter values of each run ($1, $2 ...), from arch.query_sample when it exists, else drawn from pg_stats on staging (parameter_source).';
COMMENT ON COLUMN arch.validation.size_check IS 'Per table: columns equal on production and staging, row counts (pg_class.reltuples, else a capped count) and their ratio against validate_size_factor.';
COMMENT ON COLUMN arch.validation.confidence_measured IS 'confidence_before × sqrt(measured gain) / sqrt(estimated gain), clamped to 0..1: the measured gain replaces the estimate (README, Validation on staging).';
COMMENT ON COLUMN arch.validation.noise_pct IS 'Spread of the timed runs before the change, (max - min) / median in percent.';
COMMENT ON COLUMN arch.validation.within_noise IS 'The plan did not change and the measured difference is no larger than noise_pct: counted as no gain in confidence_measured.';
COMMENT ON COLUMN arch.validation.plan_changes IS 'Plan nodes that disappeared and appeared between the median run before and after ({"removed": [...], "added": [...]}).';
COMMENT ON COLUMN arch.settings.validate_policy IS 'When recommendations are validated on staging: none (only arch.validate(id)); before_approval (the audit queues a validate request for proposed ones at or above confidence_threshold not validated since they were last updated; pg-architect validate --once picks them too); before_pr (the sidecar opens a pull request only after a successful validation, validating first when it has PGA_STAGING_DSN; pg-architect validate --once picks approved ones not validated yet).';
COMMENT ON COLUMN arch.settings.validate_runs IS 'Timed EXPLAIN (ANALYZE, BUFFERS) runs of each statement before and after the change on staging (after one untimed warm-up run); the median is kept.';
COMMENT ON COLUMN arch.settings.validate_statement_timeout_ms IS 'statement_timeout on the staging connection while validating (ms): each run, and the DDL.';
COMMENT ON COLUMN arch.settings.validate_lock_timeout_ms IS 'lock_timeout on the staging connection while validating (ms).';
COMMENT ON COLUMN arch.validation.details IS 'What the kind measured beyond the times: rewrite and materialized_view: rows_before / rows_after / same_rows (row counts and order-insensitive hashes of the original and the rewritten statement, same parameter values); materialized_view: create_ms, refresh_ms, refresh_concurrently_ms, benefit_ms_per_refresh (measured); partition: the scratch copy (schema, rows copied, partitions, copy_ms) and partitions_scanned before and after per statement.';
COMMENT ON COLUMN arch.settings.validate_partition_max_rows IS 'A partition recommendation is validated on staging only if its table has at most this many rows there (the partitioned copy holds all of them); above it the validation is skipped with skip_code too_large.';
COMMENT ON COLUMN arch.settings.validate_size_factor IS 'A staging table whose row count differs from production''s by more than this factor (either way) makes the validation a mismatch.';

DROP VIEW IF EXISTS arch.validations, arch.estimate_errors;

CREATE VIEW arch.validations WITH (security_barrier) AS
SELECT v.id, v.recommendation_id, r.kind, r.status AS recommendation_status,
       format('%I.%I', r.schema_name, r.table_name) AS table_name,
       CASE WHEN r.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(r.userid, r.ddl) ELSE r.ddl END AS ddl,
       v.queryid, arch.visible_text(v.userid, s.query) AS query,
       CASE WHEN v.userid IS NULL OR arch.statement_visible(v.userid) THEN v.parameters END AS parameters,
       v.parameter_source, v.status, v.skip_code, v.runs,
       round(v.median_before_ms::numeric, 3) AS median_before_ms,
       round(v.median_after_ms::numeric, 3) AS median_after_ms,
       v.buffers_before, v.buffers_after,
       round(v.measured_gain_pct::numeric, 2) AS measured_gain_pct,
       round(v.noise_pct::numeric, 1) AS noise_pct, v.within_noise,
       round(v.est_gain_pct::numeric, 2) AS est_gain_pct,
       v.plan_changes, v.size_check,
       round(v.confidence_before::numeric, 3) AS confidence_before,
       round(v.confidence_measured::numeric, 3) AS confidence_measured,
       v.error, v.validated_by, v.started_at, v.finished_at, v.details
FROM arch.validation v
JOIN arch.recommendation r ON r.id = v.recommendation_id
LEFT JOIN arch.statement s ON s.dbid = v.dbid AND s.userid = v.userid AND s.queryid = v.queryid;
COMMENT ON VIEW arch.validations IS
'Validations on staging, newest last: per recommendation and statement the median EXPLAIN ANALYZE time before and after the change, buffers, plan node changes, measured vs estimated gain, the confidence with the measured gain, or why it was skipped. Statement texts and parameters only for roles pg_stat_statements would show them to.';

CREATE VIEW arch.estimate_errors AS
SELECT width_bucket(e.conf, 0, 1.0000001, 10) AS band,
       (width_bucket(e.conf, 0, 1.0000001, 10) - 1) / 10.0 AS band_from,
       width_bucket(e.conf, 0, 1.0000001, 10) / 10.0 AS band_to,
       e.kind,
       count(*) AS validated,
       round(avg(e.est)::numeric, 2) AS avg_est_gain_pct,
       round(avg(e.measured)::numeric, 2) AS avg_measured_gain_pct,
       round(avg(e.measured - e.est)::numeric, 2) AS avg_error_pct,
       round(avg(abs(e.measured - e.est))::numeric, 2) AS avg_abs_error_pct,
       count(*) FILTER (WHERE e.measured < e.est / 2) AS overestimated
FROM (SELECT coalesce(r.confidence_estimate, v.confidence_before) AS conf, r.kind, v.est_gain_pct AS est,
             CASE WHEN v.within_noise THEN 0 ELSE v.measured_gain_pct END AS measured
      FROM arch.validation v
      JOIN arch.recommendation r ON r.id = v.recommendation_id
      WHERE v.status = 'measured' AND v.est_gain_pct IS NOT NULL) e
GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW arch.estimate_errors IS
'Planner estimate against staging measurement, per confidence band (of confidence_estimate, as arch.calibration) and kind: statements validated, average estimated and measured gain, average (absolute) error, how many delivered less than half the estimate.';

CREATE OR REPLACE FUNCTION arch.validate(recommendation_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rec record;
    req bigint;
BEGIN
    SELECT r.id, r.status, r.kind INTO rec FROM arch.recommendation r WHERE r.id = validate.recommendation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'arch.validate: recommendation % does not exist', validate.recommendation_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT id, table_name, ddl, confidence FROM arch.pending_recommendations;';
    END IF;
    INSERT INTO arch.request AS q (kind, payload, dedup_key)
    VALUES ('validate', jsonb_build_object('recommendation_id', rec.id), 'validate:' || rec.id)
    ON CONFLICT (dedup_key) DO UPDATE SET status = 'pending', attempts = 0, run_after = now(), last_error = NULL,
        finished_at = NULL, claimed_by = NULL, claimed_at = NULL, result = NULL, requested_by = current_user
        WHERE q.status IN ('done', 'failed', 'refused')
    RETURNING q.id INTO req;
    IF req IS NULL THEN
        SELECT q.id INTO req FROM arch.request q WHERE q.dedup_key = 'validate:' || rec.id;
    END IF;
    RAISE NOTICE 'recommendation % queued for validation on staging as request %: SELECT * FROM arch.validations WHERE recommendation_id = %;',
        rec.id, req, rec.id
        USING HINT = 'The sidecar needs PGA_STAGING_DSN in its environment (or run pg-architect validate --staging-dsn ...).';
    RETURN req;
END
$$;
COMMENT ON FUNCTION arch.validate(bigint) IS
'Queues a validate request: the sidecar applies the recommendation on the staging database (PGA_STAGING_DSN), runs its statements with EXPLAIN (ANALYZE, BUFFERS) before and after, undoes it and records arch.validations. Returns the request id (an already pending one is reused).';

CREATE OR REPLACE FUNCTION arch._adopt_validation(recommendation_id bigint, confidence double precision,
                                                  measured_gain_pct double precision) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- SECURITY DEFINER: the sidecar may not UPDATE arch.recommendation beyond its status; this
-- changes only the confidence (and records the measurement in confidence_factors), and only of a
-- proposed recommendation: an approved one is frozen (what a human approved stays as approved).
DECLARE
    n integer;
BEGIN
    IF confidence IS NULL OR confidence < 0 OR confidence > 1 THEN
        RAISE EXCEPTION 'arch._adopt_validation: confidence % out of range', confidence
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE arch.recommendation r
    SET confidence = _adopt_validation.confidence,
        confidence_factors = r.confidence_factors || jsonb_build_object(
            'validated', jsonb_build_object('measured_gain_pct', round(_adopt_validation.measured_gain_pct::numeric, 2),
                                            'confidence_before', r.confidence, 'at', now()))
    WHERE r.id = _adopt_validation.recommendation_id AND r.status = 'proposed';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;
COMMENT ON FUNCTION arch._adopt_validation(bigint, double precision, double precision) IS
'Internal (sidecar): sets the confidence of a proposed recommendation to the one computed with the gain measured on staging; approved and later recommendations are frozen and keep theirs. Returns whether it changed.';
