-- pg_architect migration 0011: index housekeeping (advisor kind drop_index).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- An index is "unused" only when its idx_scan stayed the same across snapshots spanning
-- unused_index_window, all taken since the statistics were last reset.
ALTER TABLE arch.settings
    ADD COLUMN unused_index_window interval NOT NULL DEFAULT '14 days',
    ADD CONSTRAINT settings_unused_index_window
        CHECK (unused_index_window BETWEEN interval '1 day' AND interval '10 years');

-- One row per user index per snapshot (arch.snapshot_indexes()): its scan counter, its size and
-- the write counters of its table, with the database's statistics reset time at that moment.
-- A partitioned index is one row: the sums over its leaf partitions' indexes and tables.
CREATE TABLE arch.snapshot_index (
    taken_at      timestamptz NOT NULL,
    indexrelid    oid         NOT NULL,
    tablerelid    oid         NOT NULL,
    schema_name   text        NOT NULL,
    table_name    text        NOT NULL,
    index_name    text        NOT NULL,
    idx_scan      bigint      NOT NULL,
    size_bytes    bigint      NOT NULL,
    n_tup_ins     bigint      NOT NULL,
    n_tup_upd     bigint      NOT NULL,
    n_tup_hot_upd bigint      NOT NULL,
    n_tup_del     bigint      NOT NULL,
    stats_reset   timestamptz,
    PRIMARY KEY (taken_at, indexrelid),
    CONSTRAINT snapshot_index_counters CHECK (idx_scan >= 0 AND size_bytes >= 0)
);
CREATE INDEX snapshot_index_by_index ON arch.snapshot_index (indexrelid, taken_at);
