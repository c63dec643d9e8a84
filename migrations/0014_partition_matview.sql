-- pg_architect migration 0014: settings of the partitioning, materialized-view and cache advisors.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

ALTER TABLE arch.settings
    ADD COLUMN partition_min_table_mb       numeric          NOT NULL DEFAULT 10240,
    ADD COLUMN partition_min_time_share     double precision NOT NULL DEFAULT 0.5,
    ADD COLUMN matview_max_staleness        interval         NOT NULL DEFAULT '1 hour',
    ADD COLUMN matview_min_calls            bigint           NOT NULL DEFAULT 100,
    ADD COLUMN matview_min_mean_time_ms     double precision NOT NULL DEFAULT 100,
    ADD COLUMN matview_min_reads_per_write  double precision NOT NULL DEFAULT 10,
    ADD COLUMN cache_max_staleness          interval         NOT NULL DEFAULT '5 minutes',
    ADD COLUMN cache_min_calls              bigint           NOT NULL DEFAULT 1000,
    ADD COLUMN cache_max_rows_per_call      double precision NOT NULL DEFAULT 100,
    ADD COLUMN cache_min_reads_per_write    double precision NOT NULL DEFAULT 100,
    ADD CONSTRAINT settings_partition_min_table_mb      CHECK (partition_min_table_mb > 0),
    ADD CONSTRAINT settings_partition_min_time_share    CHECK (partition_min_time_share BETWEEN 0 AND 1),
    ADD CONSTRAINT settings_matview_max_staleness       CHECK (matview_max_staleness BETWEEN interval '1 minute' AND interval '30 days'),
    ADD CONSTRAINT settings_matview_min_calls           CHECK (matview_min_calls >= 0),
    ADD CONSTRAINT settings_matview_min_mean_time_ms    CHECK (matview_min_mean_time_ms >= 0),
    ADD CONSTRAINT settings_matview_min_reads_per_write CHECK (matview_min_reads_per_write >= 0),
    ADD CONSTRAINT settings_cache_max_staleness         CHECK (cache_max_staleness BETWEEN interval '1 second' AND interval '30 days'),
    ADD CONSTRAINT settings_cache_min_calls             CHECK (cache_min_calls >= 0),
    ADD CONSTRAINT settings_cache_max_rows_per_call     CHECK (cache_max_rows_per_call >= 0),
    ADD CONSTRAINT settings_cache_min_reads_per_write   CHECK (cache_min_reads_per_write >= 0);
