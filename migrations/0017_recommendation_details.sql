-- pg_architect migration 0017: the structured advice of kinds that are more than one statement.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- partition (the migration plan, its steps, runbook and the statements that would not prune),
-- materialized_view (view, unique index, refresh schedule, rewritten statement) and cache (keys,
-- TTL, hit-rate model) keep here the advice exactly as their advisor returned it (the same
-- object arch.advise_partitioning() / arch.advise_materialized_views() return); ddl and
-- rollback_ddl keep the whole script a human approves.
ALTER TABLE arch.recommendation
    ADD COLUMN details jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN arch.recommendation.details IS
'The advisor''s structured advice for kinds that are more than one statement (partition: migration plan, runbook, non-pruning statements; materialized_view: view, unique index, refresh schedule, rewritten statement; cache: keys, TTL, hit-rate model). {} for the other kinds.';
