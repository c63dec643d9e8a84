-- pg_architect migration 0002: audit runs, per-statement results, recommendations.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

CREATE TABLE arch.audit_run (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at             timestamptz,
    status                  text        NOT NULL DEFAULT 'running',
    run_by                  name        NOT NULL DEFAULT current_user,
    host                    text        NOT NULL DEFAULT 'plpython',
    snapshot_id             bigint REFERENCES arch.snapshot (id) ON DELETE SET NULL,
    prev_snapshot_id        bigint REFERENCES arch.snapshot (id) ON DELETE SET NULL,
    window_start            timestamptz,
    window_end              timestamptz,
    stats_reset_detected    boolean     NOT NULL DEFAULT false,
    window_total_time_ms    double precision,
    statements_seen         integer     NOT NULL DEFAULT 0,
    statements_selected     integer     NOT NULL DEFAULT 0,
    statements_analyzed     integer     NOT NULL DEFAULT 0,
    statements_skipped      integer     NOT NULL DEFAULT 0,
    candidates_tested       integer     NOT NULL DEFAULT 0,
    recommendations_new     integer     NOT NULL DEFAULT 0,
    recommendations_updated integer     NOT NULL DEFAULT 0,
    duration_ms             double precision,
    timings                 jsonb       NOT NULL DEFAULT '{}',
    error                   text,
    CONSTRAINT audit_run_status CHECK (status IN ('running', 'ok', 'failed'))
);

-- One row per statement an audit selected: analysed (with its cost) or skipped (with the reason).
CREATE TABLE arch.audit_statement (
    audit_run_id   bigint           NOT NULL REFERENCES arch.audit_run (id) ON DELETE CASCADE,
    dbid           oid              NOT NULL,
    userid         oid              NOT NULL,
    queryid        bigint           NOT NULL,
    calls          bigint           NOT NULL,
    total_time_ms  double precision NOT NULL,
    mean_time_ms   double precision NOT NULL,
    time_share     double precision NOT NULL,
    outcome        text             NOT NULL,
    skip_code      text,
    skip_reason    text,
    cost_before    double precision,
    candidates     integer          NOT NULL DEFAULT 0,
    recommendations integer         NOT NULL DEFAULT 0,
    duration_ms    double precision,
    PRIMARY KEY (audit_run_id, dbid, userid, queryid),
    CONSTRAINT audit_statement_outcome CHECK (outcome IN ('analyzed', 'skipped')),
    CONSTRAINT audit_statement_skip_has_reason CHECK (outcome <> 'skipped' OR skip_reason IS NOT NULL)
);

CREATE TABLE arch.recommendation (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint         text             NOT NULL,
    kind                text             NOT NULL DEFAULT 'index',
    index_kind          text,
    schema_name         name             NOT NULL,
    table_name          name             NOT NULL,
    index_name          name,
    definition          text             NOT NULL,
    ddl                 text             NOT NULL,
    hypo_ddl            text,
    rollback_ddl        text,
    columns             text[]           NOT NULL DEFAULT '{}',
    rationale           text             NOT NULL,
    queryid             bigint,
    query               text,
    calls               bigint,
    total_time_ms       double precision,
    time_share          double precision,
    cost_before         double precision NOT NULL,
    cost_after          double precision NOT NULL,
    est_gain_pct        double precision NOT NULL,
    est_size_bytes      bigint,
    benefit_ms          double precision NOT NULL DEFAULT 0,
    confidence          double precision NOT NULL,
    confidence_factors  jsonb            NOT NULL DEFAULT '{}',
    plan_changes        jsonb            NOT NULL DEFAULT '[]',
    status              text             NOT NULL DEFAULT 'proposed',
    first_audit_run_id  bigint REFERENCES arch.audit_run (id) ON DELETE SET NULL,
    last_audit_run_id   bigint REFERENCES arch.audit_run (id) ON DELETE SET NULL,
    times_seen          integer          NOT NULL DEFAULT 1,
    created_at          timestamptz      NOT NULL DEFAULT now(),
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT recommendation_fingerprint_unique UNIQUE (fingerprint),
    CONSTRAINT recommendation_kind CHECK (kind IN ('index', 'rewrite', 'partitioning', 'caching', 'drop_index')),
    CONSTRAINT recommendation_status CHECK (status IN ('proposed', 'approved', 'rejected', 'pr_open',
                                                       'merged', 'closed', 'applied', 'superseded')),
    CONSTRAINT recommendation_confidence_range CHECK (confidence BETWEEN 0 AND 1),
    CONSTRAINT recommendation_gain_range CHECK (est_gain_pct <= 100)
);
CREATE INDEX recommendation_status_idx ON arch.recommendation (status, confidence DESC);

-- Every statement a recommendation helps, per audit (a recommendation can serve several statements).
CREATE TABLE arch.recommendation_statement (
    recommendation_id bigint           NOT NULL REFERENCES arch.recommendation (id) ON DELETE CASCADE,
    audit_run_id      bigint           NOT NULL REFERENCES arch.audit_run (id) ON DELETE CASCADE,
    dbid              oid              NOT NULL,
    userid            oid              NOT NULL,
    queryid           bigint           NOT NULL,
    cost_before       double precision NOT NULL,
    cost_after        double precision NOT NULL,
    est_gain_pct      double precision NOT NULL,
    PRIMARY KEY (recommendation_id, audit_run_id, dbid, userid, queryid)
);
