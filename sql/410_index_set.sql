-- pg_architect: a set of indexes for the whole workload (issue 10). Idempotent.

COMMENT ON COLUMN arch.settings.audit_index_set IS
'true (default, migration 0019): the audit''s index recommendations are one set for all the statements it analysed (each lists every statement it serves and its share of the workload gain; audit_run.workload_cost_before_ms/after_ms recorded); false: the best index of each statement proven alone.';
COMMENT ON COLUMN arch.settings.index_budget_mb IS
'arch.design_indexes: the chosen set of indexes takes at most this many MB (estimated sizes); NULL: no cap, but every MB must pay for itself (save statement time beyond its write and storage cost).';
COMMENT ON COLUMN arch.settings.max_indexes_per_table IS
'arch.design_indexes: at most this many new indexes per table in the chosen set.';
COMMENT ON COLUMN arch.audit_run.workload_cost_before_ms IS
'Estimated statement time (ms) of the audited workload without the chosen index set (planner cost converted with each statement''s measured time).';
COMMENT ON COLUMN arch.audit_run.workload_cost_after_ms IS
'Estimated statement time (ms) of the audited workload with the chosen index set present (hypothetical indexes).';

DROP FUNCTION IF EXISTS arch.design_indexes(numeric);
CREATE FUNCTION arch.design_indexes(budget_mb numeric DEFAULT NULL)
RETURNS TABLE (table_name text, index_name text, ddl text, size_mb numeric, queryids bigint[],
               gain_share double precision, workload_ms_before double precision,
               workload_ms_after double precision)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.design_indexes(plpy, budget_mb)
$python$;
COMMENT ON FUNCTION arch.design_indexes(numeric) IS
'The set of indexes for the whole current pg_stat_statements workload of this database (statements above the audit thresholds): candidates of every statement in one pool (plus EXISTS/IN correlation, foreign-key and ORDER BY ... LIMIT ones), merged, chosen greedily by net benefit per MB with the whole set present as hypothetical indexes, sizes estimated from pg_stats (b-tree pages, deduplication, fill factor), write cost (pg_stat_user_tables) and a storage price relative to the window subtracted, within budget_mb (NULL: arch.settings.index_budget_mb) and max_indexes_per_table; interfering indexes removed. One row per chosen index: DDL, estimated size, the statements it serves, its share of the gain, the workload''s estimated time before/after. Every statement is planned as the role that ran it. Stores nothing.';
