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
'Runs an audit now: snapshots pg_stat_statements, analyses the costliest statements of the window, proves the advisors'' candidates with the planner (hypopg) and stores recommendations. Returns a JSON summary.';

COMMENT ON COLUMN arch.settings.reuse_analyses IS
'true: a statement whose text, role, tables (columns, indexes, statistics within a band, last analyze) and settings are unchanged since the audit that analysed it reuses that analysis instead of being planned again (outcome reused in arch.audit_statement); false: every selected statement is planned.';

-- The scheduled audit: the same pipeline, committing between batches of statements (a long
-- transaction holds back vacuum's xmin horizon on a busy database). A procedure that COMMITs can
-- have neither SET clauses nor SECURITY DEFINER (PostgreSQL refuses the COMMIT), so it is
-- SECURITY INVOKER like arch.run_audit() and sets search_path = pg_catalog, pg_temp (and the
-- audit's plan_cache_mode and lock_timeout) itself, local to each batch's transaction; its
-- body is fully schema-qualified. Run it with CALL outside a transaction block.
CREATE OR REPLACE PROCEDURE arch.run_audit_batched(batch_size integer DEFAULT 100)
LANGUAGE plpython3u
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; entry.run_audit_batched(plpy, batch_size)
$python$;
COMMENT ON PROCEDURE arch.run_audit_batched(integer) IS
'Runs an audit like arch.run_audit(), committing every batch_size statements (and between its steps) so that no transaction stays open for minutes; one audit at a time across the commits (a session-level advisory lock, released on success and on error); progress in arch.audit_runs while it runs. CALL it outside a transaction block (arch.schedule() does).';

-- analyze_query returns the advisor's kind (0.x had no kind column): a changed RETURNS TABLE
-- needs DROP + CREATE; done only when the installed one lacks it (grants: 999_privileges.sql).
DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'arch' AND p.proname IN ('analyze_query', '_analyze_query')
                 AND NOT ('kind' = ANY (p.proargnames))) THEN
        DROP FUNCTION IF EXISTS arch.analyze_query(text);
        DROP FUNCTION IF EXISTS arch._analyze_query(text, text);
    END IF;
END
$do$;

CREATE OR REPLACE FUNCTION arch._analyze_query(query text, search_path text)
RETURNS TABLE (kind text, table_name text, index_kind text, ddl text, cost_before double precision,
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
RETURNS TABLE (kind text, table_name text, index_kind text, ddl text, cost_before double precision,
               cost_after double precision, est_gain_pct double precision, est_size_bytes bigint,
               confidence double precision, plan_changes jsonb, rationale text)
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT * FROM arch._analyze_query(query, pg_catalog.current_setting('search_path')) $$;
COMMENT ON FUNCTION arch.analyze_query(text) IS
'Analyses one statement given by hand (literals or $n parameters) like the audit does and returns its proven recommendations (kind names the advisor, index_kind the index subtype), without storing anything. Unqualified names resolve with your search_path.';
