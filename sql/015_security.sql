-- pg_architect: who may read a statement's text (issue 7). Idempotent.
--
-- The rule is pg_stat_statements' own: a role sees the text of a statement it ran itself
-- (userid), and members of pg_read_all_stats (and superusers) see every text; everyone else
-- sees '<insufficient privilege>'.  Every arch view that shows a statement text, or something
-- derived from it (explanations, knowledge cases, skip reasons), goes through these functions.
-- Texts of utility statements (ALTER ROLE ... PASSWORD ...) are never stored at all.

CREATE OR REPLACE FUNCTION arch.statement_visible(userid oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT statement_visible.userid IS NOT NULL
       AND (statement_visible.userid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
            OR pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'))
$$;
COMMENT ON FUNCTION arch.statement_visible(oid) IS
'True if the current role may read the text of a statement run by role userid: its own statements, or any when it is a superuser or has the privileges of pg_read_all_stats (the rule of pg_stat_statements).';

CREATE OR REPLACE FUNCTION arch.visible_text(userid oid, text text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN visible_text.text IS NULL THEN NULL
            WHEN arch.statement_visible(visible_text.userid) THEN visible_text.text
            ELSE '<insufficient privilege>' END
$$;
COMMENT ON FUNCTION arch.visible_text(oid, text) IS
'text if the current role may read the statement of role userid (arch.statement_visible), else ''<insufficient privilege>'' like pg_stat_statements.';

CREATE OR REPLACE FUNCTION arch.approval_hash(kind text, schema_name text, table_name text, ddl text, rollback_ddl text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(pg_catalog.chr(31),
       coalesce(kind, ''), coalesce(schema_name, ''), coalesce(table_name, ''), coalesce(ddl, ''),
       coalesce(rollback_ddl, '')), 'UTF8')), 'hex')
$$;
COMMENT ON FUNCTION arch.approval_hash(text, text, text, text, text) IS
'sha256 (hex) of what a human approves: kind, schema, table, DDL and rollback DDL, joined by chr(31). Recorded in arch.recommendation.approved_hash at approval; the sidecar recomputes it before writing a pull request.';

CREATE OR REPLACE FUNCTION arch.approval_hash(kind text, schema_name text, table_name text, ddl text, rollback_ddl text,
                                              details jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN approval_hash.details IS NULL OR approval_hash.details = '{}'::jsonb
            THEN arch.approval_hash(approval_hash.kind, approval_hash.schema_name, approval_hash.table_name,
                                    approval_hash.ddl, approval_hash.rollback_ddl)
            ELSE pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(pg_catalog.chr(31),
                 coalesce(approval_hash.kind, ''), coalesce(approval_hash.schema_name, ''),
                 coalesce(approval_hash.table_name, ''), coalesce(approval_hash.ddl, ''),
                 coalesce(approval_hash.rollback_ddl, ''), approval_hash.details::text), 'UTF8')), 'hex') END
$$;
COMMENT ON FUNCTION arch.approval_hash(text, text, text, text, text, jsonb) IS
'sha256 (hex) of what a human approves including the structured advice (arch.recommendation.details, the text of the jsonb appended after chr(31)); with details {} the same as the five-argument form. Recorded in approved_hash at approval; the sidecar recomputes it before writing a pull request.';
