-- pg_architect migration 0013: validation on staging (issue 12): real EXPLAIN ANALYZE before
-- and after a recommendation is applied on a staging database, then undone.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

ALTER TABLE arch.settings
    ADD COLUMN validate_policy               text             NOT NULL DEFAULT 'none',
    ADD COLUMN validate_runs                 integer          NOT NULL DEFAULT 5,
    ADD COLUMN validate_statement_timeout_ms integer          NOT NULL DEFAULT 30000,
    ADD COLUMN validate_lock_timeout_ms      integer          NOT NULL DEFAULT 2000,
    ADD COLUMN validate_size_factor          double precision NOT NULL DEFAULT 10,
    ADD CONSTRAINT settings_validate_policy CHECK (validate_policy IN ('none', 'before_approval', 'before_pr')),
    ADD CONSTRAINT settings_validate_runs CHECK (validate_runs BETWEEN 1 AND 100),
    ADD CONSTRAINT settings_validate_statement_timeout_ms CHECK (validate_statement_timeout_ms BETWEEN 100 AND 3600000),
    ADD CONSTRAINT settings_validate_lock_timeout_ms CHECK (validate_lock_timeout_ms BETWEEN 10 AND 600000),
    ADD CONSTRAINT settings_validate_size_factor CHECK (validate_size_factor >= 1);

-- The sidecar's new request kind.
ALTER TABLE arch.request DROP CONSTRAINT request_kind;
ALTER TABLE arch.request ADD CONSTRAINT request_kind
    CHECK (kind IN ('open_pr', 'explain', 'ask', 'train', 'validate'));

-- Kinds of advice (issue 9's advisor names) next to the ones of 0002: a statistics
-- recommendation is validated with CREATE STATISTICS + ANALYZE on staging.
ALTER TABLE arch.recommendation DROP CONSTRAINT recommendation_kind;
ALTER TABLE arch.recommendation ADD CONSTRAINT recommendation_kind
    CHECK (kind IN ('index', 'drop_index', 'rewrite', 'statistics', 'partition', 'partitioning',
                    'materialized_view', 'cache', 'caching'));

-- One row per (validation, statement): what running the statement on staging measured before
-- and after the change. Statement texts are not copied here (arch.statement holds them).
CREATE TABLE arch.validation (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recommendation_id    bigint           NOT NULL REFERENCES arch.recommendation (id) ON DELETE CASCADE,
    batch                uuid             NOT NULL,
    request_id           bigint REFERENCES arch.request (id) ON DELETE SET NULL,
    dbid                 oid,
    userid               oid,
    queryid              bigint,
    status               text             NOT NULL,
    skip_code            text,
    parameters           jsonb            NOT NULL DEFAULT '[]',
    parameter_source     text,
    runs                 integer          NOT NULL DEFAULT 0,
    times_before_ms      double precision[] NOT NULL DEFAULT '{}',
    times_after_ms       double precision[] NOT NULL DEFAULT '{}',
    median_before_ms     double precision,
    median_after_ms      double precision,
    buffers_before       bigint,
    buffers_after        bigint,
    measured_gain_pct    double precision,
    noise_pct            double precision,
    within_noise         boolean          NOT NULL DEFAULT false,
    est_gain_pct         double precision,
    plan_changes         jsonb            NOT NULL DEFAULT '{}',
    size_check           jsonb            NOT NULL DEFAULT '{}',
    confidence_before    double precision,
    confidence_measured  double precision,
    staging              jsonb            NOT NULL DEFAULT '{}',
    error                text,
    validated_by         name             NOT NULL DEFAULT current_user,
    started_at           timestamptz      NOT NULL DEFAULT clock_timestamp(),
    finished_at          timestamptz,
    CONSTRAINT validation_status CHECK (status IN ('measured', 'skipped', 'failed', 'mismatch')),
    CONSTRAINT validation_measured_has_times CHECK (status <> 'measured'
        OR (median_before_ms IS NOT NULL AND median_after_ms IS NOT NULL AND runs >= 1)),
    CONSTRAINT validation_not_measured_has_error CHECK (status = 'measured' OR error IS NOT NULL),
    CONSTRAINT validation_runs CHECK (runs >= 0),
    CONSTRAINT validation_confidence_range CHECK (confidence_measured IS NULL OR confidence_measured BETWEEN 0 AND 1),
    CONSTRAINT validation_parameters_array CHECK (jsonb_typeof(parameters) = 'array')
);
CREATE INDEX validation_recommendation_idx ON arch.validation (recommendation_id, id);
