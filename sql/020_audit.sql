-- pg_architect: the audit entry points. Idempotent.

CREATE OR REPLACE FUNCTION arch.run_audit() RETURNS jsonb
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.run_audit(plpy)
$python$;
COMMENT ON FUNCTION arch.run_audit() IS
'Runs an audit now: snapshots pg_stat_statements, analyses the costliest statements of the window, proves index candidates with hypopg and stores recommendations. Returns a JSON summary.';

CREATE OR REPLACE FUNCTION arch._analyze_query(query text, search_path text)
RETURNS TABLE (table_name text, index_kind text, ddl text, cost_before double precision,
               cost_after double precision, est_gain_pct double precision, est_size_bytes bigint,
               confidence double precision, plan_changes jsonb, rationale text)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.analyze_query(plpy, query, search_path)
$python$;
COMMENT ON FUNCTION arch._analyze_query(text, text) IS
'Internal: arch.analyze_query() with the caller''s search_path passed explicitly.';

-- Deliberately without SET search_path: it must see the caller's search_path to resolve the
-- statement's unqualified table names. Its body is fully schema-qualified.
CREATE OR REPLACE FUNCTION arch.analyze_query(query text)
RETURNS TABLE (table_name text, index_kind text, ddl text, cost_before double precision,
               cost_after double precision, est_gain_pct double precision, est_size_bytes bigint,
               confidence double precision, plan_changes jsonb, rationale text)
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT * FROM arch._analyze_query(query, pg_catalog.current_setting('search_path')) $$;
COMMENT ON FUNCTION arch.analyze_query(text) IS
'Analyses one statement given by hand (literals or $n parameters) like the audit does and returns its proven index recommendations, without storing anything. Unqualified names resolve with your search_path.';
