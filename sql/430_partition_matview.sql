-- pg_architect: partitioning, materialized-view and cache advice (issue 12). Idempotent.
-- Nothing here stores anything: each function reads pg_stat_statements and the catalog and
-- returns one row per advice. Statement texts (and DDL derived from them) go through
-- arch.visible_text(), like every arch view.

COMMENT ON COLUMN arch.settings.partition_min_table_mb IS 'arch.advise_partitioning(): only tables of at least this size (MB, pg_total_relation_size) are considered.';
COMMENT ON COLUMN arch.settings.partition_min_time_share IS 'arch.advise_partitioning(): the partition key must be filtered on by statements holding at least this share (0..1) of all statement time on the table.';
COMMENT ON COLUMN arch.settings.matview_max_staleness IS 'arch.advise_materialized_views(): how stale a materialized view may be; the refresh interval is at most this.';
COMMENT ON COLUMN arch.settings.matview_min_calls IS 'arch.advise_materialized_views(): an aggregate statement must have been called at least this often (pg_stat_statements).';
COMMENT ON COLUMN arch.settings.matview_min_mean_time_ms IS 'arch.advise_materialized_views(): an aggregate statement must take at least this long on average (ms).';
COMMENT ON COLUMN arch.settings.matview_min_reads_per_write IS 'arch.advise_materialized_views(): the statement''s calls per call of a statement writing its tables must be at least this.';
COMMENT ON COLUMN arch.settings.cache_max_staleness IS 'arch.advise_materialized_views(): the longest TTL proposed for an application cache.';
COMMENT ON COLUMN arch.settings.cache_min_calls IS 'arch.advise_materialized_views(): a statement is a cache candidate from this many calls on.';
COMMENT ON COLUMN arch.settings.cache_max_rows_per_call IS 'arch.advise_materialized_views(): a cache candidate returns at most this many rows per call.';
COMMENT ON COLUMN arch.settings.cache_min_reads_per_write IS 'arch.advise_materialized_views(): a cache candidate''s calls per call of a statement writing its tables must be at least this.';

DROP FUNCTION IF EXISTS arch.advise_partitioning(), arch._advise_partitioning(),
                        arch.advise_materialized_views(), arch._advise_materialized_views(),
                        arch._visible_statements(jsonb);

CREATE FUNCTION arch._advise_partitioning()
RETURNS TABLE (kind text, schema_name text, table_name text, column_name text, ddl text, rollback_ddl text,
               steps jsonb, estimate jsonb, rationale text, runbook text, constraint_changes text[],
               statements jsonb, not_pruned jsonb)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.advise_partitioning(plpy)
$python$;
COMMENT ON FUNCTION arch._advise_partitioning() IS
'Internal: arch.advise_partitioning() before statement texts are filtered by arch.visible_text().';

CREATE FUNCTION arch._visible_statements(statements jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(jsonb_agg(e || jsonb_build_object('query', arch.visible_text((e->>'userid')::oid, e->>'query'))
                          ORDER BY o), '[]'::jsonb)
FROM jsonb_array_elements(_visible_statements.statements) WITH ORDINALITY AS x(e, o)
$$;
COMMENT ON FUNCTION arch._visible_statements(jsonb) IS
'Internal: a JSON array of statements ({userid, query, ...}) with each query passed through arch.visible_text().';

CREATE FUNCTION arch.advise_partitioning()
RETURNS TABLE (kind text, table_name text, column_name text, ddl text, rollback_ddl text, steps jsonb,
               estimate jsonb, rationale text, runbook text, constraint_changes text[], statements jsonb,
               not_pruned jsonb)
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT a.kind, format('%I.%I', a.schema_name, a.table_name), a.column_name, a.ddl, a.rollback_ddl, a.steps,
       a.estimate, a.rationale, a.runbook, a.constraint_changes,
       arch._visible_statements(a.statements), arch._visible_statements(a.not_pruned)
FROM arch._advise_partitioning() a
$$;
COMMENT ON FUNCTION arch.advise_partitioning() IS
'Partitioning advice (kind partition): for ordinary tables of at least partition_min_table_mb where statements holding partition_min_time_share of the table''s statement time (pg_stat_statements) filter on one time column or increasing id (range predicates, or DELETE of old rows), a declarative RANGE partitioning: interval from the data span (index min/max or pg_stats histogram) and the statements'' typical span, constraint changes (primary/unique keys must include the key; referencing foreign keys and views), the statements that would not prune, an estimate (partitions read = ceil(selectivity x n) + 1 of n; time saved = total time x (1 - read/n), an upper bound), and a migration plan run with psql: create table and partitions (or partman.create_parent), copy in batches, verify, swap in one short transaction; the rollback swaps back. Stores nothing, plans nothing; statement texts follow arch.visible_text().';

CREATE FUNCTION arch._advise_materialized_views()
RETURNS TABLE (kind text, schema_name text, table_name text, advised boolean, ddl text, rollback_ddl text,
               rewritten_query text, schedule text, estimate jsonb, rationale text, statements jsonb)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.advise_materialized_views(plpy)
$python$;
COMMENT ON FUNCTION arch._advise_materialized_views() IS
'Internal: arch.advise_materialized_views() before statement texts (and the DDL derived from them) are filtered by arch.visible_text().';

CREATE FUNCTION arch.advise_materialized_views()
RETURNS TABLE (kind text, table_name text, advised boolean, ddl text, rollback_ddl text, rewritten_query text,
               schedule text, estimate jsonb, rationale text, statements jsonb)
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT a.kind, format('%I.%I', a.schema_name, a.table_name), a.advised,
       arch.visible_text(u.userid, a.ddl), arch.visible_text(u.userid, a.rollback_ddl),
       arch.visible_text(u.userid, a.rewritten_query), a.schedule, a.estimate, a.rationale,
       arch._visible_statements(a.statements)
FROM arch._advise_materialized_views() a
CROSS JOIN LATERAL (SELECT (a.statements->0->>'userid')::oid AS userid) u
$$;
COMMENT ON FUNCTION arch.advise_materialized_views() IS
'Materialized-view and cache advice. Kind materialized_view: frequent (matview_min_calls), expensive (matview_min_mean_time_ms) GROUP BY statements over tables read matview_min_reads_per_write times per writing statement call: CREATE MATERIALIZED VIEW with a unique index on the GROUP BY columns (REFRESH CONCURRENTLY), a pg_cron refresh every min(matview_max_staleness, mean write interval) and the statement rewritten to read it (only when its parameters filter GROUP BY columns; else advised = false with the reason); benefit per refresh interval = calls x (mean - read time) - refresh cost. Kind cache: frequent (cache_min_calls), small (cache_max_rows_per_call) reads over slowly written tables: TTL = min(cache_max_staleness, mean write interval), keys = the parameters, expected hit rate 1 - K(1 - (1 - 1/K)^n)/n. Stores nothing; plans as the statement''s role; texts follow arch.visible_text().';
