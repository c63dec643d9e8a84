-- pg_architect: index housekeeping (advisor kind drop_index): usage snapshots and the advice.
-- Idempotent. Logic: plpy/pg_architect/advisors/drop_index.py.

COMMENT ON TABLE arch.snapshot_index IS
'Index usage snapshots (arch.snapshot_indexes()): per user index its idx_scan, size and its table''s write counters, with pg_stat_database.stats_reset at that moment. A partitioned index is one row summing its partitions'' indexes.';
COMMENT ON COLUMN arch.settings.unused_index_window IS
'An index is proposed for dropping as unused only when its idx_scan stayed the same across index snapshots spanning this long, all taken since the statistics were last reset.';

CREATE OR REPLACE FUNCTION arch.snapshot_indexes()
RETURNS integer
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.snapshot_indexes(plpy)
$python$;
COMMENT ON FUNCTION arch.snapshot_indexes() IS
'Takes one index usage snapshot now into arch.snapshot_index (idx_scan, size, table write counters, stats reset time of every user index) and prunes snapshots no longer needed; returns the number of indexes recorded.';

DROP FUNCTION IF EXISTS arch.advise_index_housekeeping();
CREATE FUNCTION arch.advise_index_housekeeping()
RETURNS TABLE (table_name text, index_name text, reason text, ddl text, rollback text,
               size_bytes bigint, scans bigint, covering_index text,
               writes_saved_per_day double precision, rationale text)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.advise_index_housekeeping(plpy)
$python$;
COMMENT ON FUNCTION arch.advise_index_housekeeping() IS
'Index housekeeping advice, nothing stored: one row per existing index to drop, reason unused (idx_scan unchanged across snapshots spanning unused_index_window since the stats reset), duplicate or prefix_redundant, with DROP INDEX DDL, its rollback, size, scans, the covering index, index writes saved per day and the evidence. Never an index backing a constraint, the replica identity, a clustered index, a unique index (except an exact duplicate of another unique one) or the only index covering a foreign key (NOTICE says so).';
