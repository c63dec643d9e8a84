-- pg_architect migration 0001: settings, install bookkeeping, workload snapshots.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

CREATE TABLE arch.python_env (
    id              boolean PRIMARY KEY DEFAULT true,
    package_path    text        NOT NULL,
    package_version text        NOT NULL,
    installed_at    timestamptz NOT NULL DEFAULT now(),
    installed_by    name        NOT NULL DEFAULT current_user,
    CONSTRAINT python_env_single_row CHECK (id),
    CONSTRAINT python_env_path_absolute CHECK (package_path LIKE '/%')
);

CREATE TABLE arch.settings (
    id                     boolean PRIMARY KEY DEFAULT true,
    min_mean_time_ms       double precision NOT NULL DEFAULT 500,
    min_calls              bigint           NOT NULL DEFAULT 100,
    confidence_threshold   double precision NOT NULL DEFAULT 0.80,
    min_gain_pct           double precision NOT NULL DEFAULT 10,
    max_statements         integer          NOT NULL DEFAULT 50,
    statement_budget_ms    integer          NOT NULL DEFAULT 5000,
    max_candidates         integer          NOT NULL DEFAULT 30,
    max_index_columns      integer          NOT NULL DEFAULT 3,
    max_statement_length   integer          NOT NULL DEFAULT 100000,
    snapshot_retention     interval         NOT NULL DEFAULT '90 days',
    CONSTRAINT settings_single_row            CHECK (id),
    CONSTRAINT settings_min_mean_time_ms      CHECK (min_mean_time_ms >= 0),
    CONSTRAINT settings_min_calls             CHECK (min_calls >= 0),
    CONSTRAINT settings_confidence_threshold  CHECK (confidence_threshold BETWEEN 0 AND 1),
    CONSTRAINT settings_min_gain_pct          CHECK (min_gain_pct BETWEEN 0 AND 100),
    CONSTRAINT settings_max_statements        CHECK (max_statements BETWEEN 1 AND 100000),
    CONSTRAINT settings_statement_budget_ms   CHECK (statement_budget_ms BETWEEN 10 AND 3600000),
    CONSTRAINT settings_max_candidates        CHECK (max_candidates BETWEEN 1 AND 500),
    CONSTRAINT settings_max_index_columns     CHECK (max_index_columns BETWEEN 1 AND 8),
    CONSTRAINT settings_max_statement_length  CHECK (max_statement_length BETWEEN 100 AND 10000000),
    CONSTRAINT settings_snapshot_retention    CHECK (snapshot_retention >= interval '1 day')
);
INSERT INTO arch.settings DEFAULT VALUES;

-- One row per pg_stat_statements entry ever seen in this database (the text is stored once).
CREATE TABLE arch.statement (
    dbid        oid         NOT NULL,
    userid      oid         NOT NULL,
    queryid     bigint      NOT NULL,
    query       text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dbid, userid, queryid)
);

CREATE TABLE arch.snapshot (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    stats_reset  timestamptz,
    dealloc      bigint,
    statements   integer NOT NULL DEFAULT 0
);

CREATE TABLE arch.snapshot_statement (
    snapshot_id      bigint           NOT NULL REFERENCES arch.snapshot (id) ON DELETE CASCADE,
    dbid             oid              NOT NULL,
    userid           oid              NOT NULL,
    queryid          bigint           NOT NULL,
    calls            bigint           NOT NULL,
    total_exec_time  double precision NOT NULL,
    total_plan_time  double precision NOT NULL DEFAULT 0,
    rows             bigint           NOT NULL DEFAULT 0,
    shared_blks_hit  bigint           NOT NULL DEFAULT 0,
    shared_blks_read bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (snapshot_id, dbid, userid, queryid)
);
