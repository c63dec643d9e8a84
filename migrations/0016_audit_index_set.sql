-- pg_architect migration 0016: the audit's index recommendations from the workload-level set (issue 10).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- true: the audit chooses one set of indexes for all the statements it analysed (as
-- arch.design_indexes() does) instead of the best index of each statement proven alone.
ALTER TABLE arch.settings
    ADD COLUMN audit_index_set boolean NOT NULL DEFAULT false;
