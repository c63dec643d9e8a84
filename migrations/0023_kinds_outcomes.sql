-- pg_architect migration 0023: applied detection and measured outcomes of partition and
-- materialized_view recommendations (issue 12).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- A change that gives the statements it serves a new queryid (a materialized view the application
-- reads instead of the table, a table swapped for its partitioned copy): the queryid that measures
-- the statement after the change, found by its text in the workload snapshots.
ALTER TABLE arch.recommendation_statement
    ADD COLUMN queryid_after bigint;
COMMENT ON COLUMN arch.recommendation_statement.queryid_after IS
'After the recommendation was applied: the queryid of the statement that now does this one''s work (the rewritten statement reading the materialized view; the same text over the partitioned table), when it differs from queryid; NULL: the same queryid, or not seen yet.';

-- not_measured: applied, but its statements cannot be measured after the change (the rewritten
-- statement never ran), said in outcome_detail.
ALTER TABLE arch.recommendation
    DROP CONSTRAINT recommendation_outcome,
    ADD CONSTRAINT recommendation_outcome CHECK (outcome IN ('improved', 'no_gain', 'slower', 'unused',
                                                             'not_measured'));
