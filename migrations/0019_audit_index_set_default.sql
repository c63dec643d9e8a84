-- pg_architect migration 0019: the workload's index set becomes the audit's default (issue 10).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- New installs: the audit chooses one set of indexes for all the statements it analysed.
ALTER TABLE arch.settings
    ALTER COLUMN audit_index_set SET DEFAULT true;

-- Existing installs: turn it on where it was never changed.  arch.settings keeps no history, so
-- "never changed" is read from what the audits recorded: false was the default (0016), so a DBA
-- who wanted false had nothing to set, and false only means a choice when it was true once and
-- set back. While it is true, every audit that analyses a statement records the workload's
-- estimated time before/after the set (arch.audit_run.workload_cost_before_ms); a row with it
-- means the set was on at that audit, so a false now was set on purpose and is kept.
UPDATE arch.settings
   SET audit_index_set = true
 WHERE NOT audit_index_set
   AND NOT EXISTS (SELECT 1 FROM arch.audit_run r WHERE r.workload_cost_before_ms IS NOT NULL);
