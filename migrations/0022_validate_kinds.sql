-- pg_architect migration 0022: validation on staging of rewrite, materialized_view and partition
-- recommendations (issue 12): what each kind measures beyond the times, and the row cap of the
-- partitioned copy.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

ALTER TABLE arch.settings
    ADD COLUMN validate_partition_max_rows bigint NOT NULL DEFAULT 10000000,
    ADD CONSTRAINT settings_validate_partition_max_rows CHECK (validate_partition_max_rows >= 1);

-- Per kind: rewrite / materialized_view (same rows: row counts and order-insensitive hashes of
-- both forms), materialized_view (create / REFRESH / REFRESH CONCURRENTLY times, the measured
-- benefit per refresh interval), partition (the scratch copy, partitions scanned before and after).
ALTER TABLE arch.validation
    ADD COLUMN details jsonb NOT NULL DEFAULT '{}';
