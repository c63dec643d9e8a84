-- pg_architect migration 0009: arch.recommendation.kind names the advisor that proposed it.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- The kinds of the advisor interface (plpy/pg_architect/advisors/): index, drop_index, rewrite,
-- statistics, partition, materialized_view, cache. 0002 allowed 'partitioning' and 'caching',
-- never written by any release: rows with them (none expected) are renamed.
ALTER TABLE arch.recommendation DROP CONSTRAINT recommendation_kind;
UPDATE arch.recommendation SET kind = 'partition' WHERE kind = 'partitioning';
UPDATE arch.recommendation SET kind = 'cache' WHERE kind = 'caching';
ALTER TABLE arch.recommendation
    ADD CONSTRAINT recommendation_kind CHECK (kind IN ('index', 'drop_index', 'rewrite', 'statistics', 'partition',
                                                       'materialized_view', 'cache'));
COMMENT ON COLUMN arch.recommendation.kind IS
'The advisor that proposed it: index, drop_index, rewrite, statistics, partition, materialized_view or cache.';
