-- pg_architect: the extended-statistics advisor's setting. Idempotent.

COMMENT ON COLUMN arch.settings.prove_statistics_in_transaction IS
'Prove statistics candidates by running CREATE STATISTICS / SET STATISTICS and ANALYZE in a rolled-back subtransaction (takes a SHARE UPDATE EXCLUSIVE lock on the table for a moment, waits at most 200 ms for it). Off: such candidates are "unproven: validate on staging".';

CREATE OR REPLACE FUNCTION arch.advise_statistics(min_calls bigint DEFAULT 1, max_statements integer DEFAULT 20)
RETURNS jsonb
LANGUAGE plpython3u VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.advise_statistics(plpy, min_calls, max_statements)
$python$;
COMMENT ON FUNCTION arch.advise_statistics(bigint, integer) IS
'Extended-statistics advice for the costliest SELECTs of pg_stat_statements (at least min_calls calls): row misestimates (rows per call vs the plan, per-node vs a sample of the table), CREATE STATISTICS / SET STATISTICS candidates with DDL and rollback, proven in a rolled-back subtransaction when arch.settings.prove_statistics_in_transaction is on. Stores nothing; returns a JSON array, one element per statement.';
