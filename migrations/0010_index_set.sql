-- pg_architect migration 0010: choosing a set of indexes for the whole workload (issue 10).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- The index-set search (arch.design_indexes): a storage cap and a per-table cap.
-- index_budget_mb NULL: no cap, but every MB must pay for itself (see the README).
ALTER TABLE arch.settings
    ADD COLUMN index_budget_mb numeric NULL,
    ADD COLUMN max_indexes_per_table integer NOT NULL DEFAULT 5,
    ADD CONSTRAINT settings_index_budget_mb CHECK (index_budget_mb IS NULL OR index_budget_mb > 0),
    ADD CONSTRAINT settings_max_indexes_per_table CHECK (max_indexes_per_table BETWEEN 1 AND 100);

-- The estimated statement time of the audited workload without and with the chosen set
-- (planner cost converted to ms per statement), for the audit once it chooses a set.
ALTER TABLE arch.audit_run
    ADD COLUMN workload_cost_before_ms double precision,
    ADD COLUMN workload_cost_after_ms double precision;
