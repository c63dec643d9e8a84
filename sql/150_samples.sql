-- pg_architect: query samples, real parameter values (issue 10). Idempotent.
--
-- arch.sample_queries() copies the plannable statements pg_stat_activity shows now (with their
-- literals) into arch.query_sample; arch.schedule_sampling() runs it every minute with pg_cron.
-- Texts follow the rules of statement texts (sql/015_security.sql): shown only through
-- arch.visible_text(userid, text); utility statements' texts are never stored.

COMMENT ON TABLE arch.query_sample IS
'Statement texts with their literals as pg_stat_activity showed them (arch.sample_queries), with the role that ran them; single plannable statements only, never a utility statement. Bounded by query_sample_per_query and query_sample_max_rows (oldest dropped).';
COMMENT ON COLUMN arch.settings.query_sample_max_rows IS
'At most this many rows in arch.query_sample (all statements); the oldest are dropped by arch.sample_queries(). 0: keep none.';
COMMENT ON COLUMN arch.settings.query_sample_per_query IS
'At most this many samples per statement (dbid, userid, queryid) in arch.query_sample; the oldest are dropped.';
COMMENT ON COLUMN arch.settings.query_sample_idle_window IS
'arch.sample_queries() also samples the last statement of idle sessions whose state changed at most this long ago (active and idle-in-transaction sessions are always sampled).';
COMMENT ON COLUMN arch.settings.constant_parameter_min_samples IS
'A parameter counts as constant (partial-index predicate, recovered expression) when it had one value in every sample of its statement and there are at least this many samples.';

CREATE OR REPLACE FUNCTION arch.sample_queries() RETURNS jsonb
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.sample_queries(plpy)
$python$;
COMMENT ON FUNCTION arch.sample_queries() IS
'Stores in arch.query_sample the statements of this database that pg_stat_activity shows now (active, idle in transaction, or idle since at most query_sample_idle_window), with their literals: one plannable statement per text only (never a utility statement, several statements, a truncated text or a call of arch), then prunes to the caps. Runs with the caller''s rights (other roles'' texts need pg_read_all_stats). Returns {seen, stored, skipped, dropped, hidden}.';

DROP VIEW IF EXISTS arch.query_samples;
CREATE VIEW arch.query_samples WITH (security_barrier) AS
SELECT q.id, q.sampled_at, q.queryid, q.userid, r.rolname AS role_name, q.application_name,
       arch.visible_text(q.userid, q.query) AS query
FROM arch.query_sample q
LEFT JOIN pg_catalog.pg_roles r ON r.oid = q.userid
ORDER BY q.sampled_at DESC, q.id DESC;
COMMENT ON VIEW arch.query_samples IS
'Sampled statement texts with their literals, newest first; query reads <insufficient privilege> where pg_stat_statements would hide the statement from the current role (arch.statement_visible).';

DROP FUNCTION IF EXISTS arch.sampled_parameters(bigint, integer);
CREATE FUNCTION arch.sampled_parameters(queryid bigint, min_samples integer DEFAULT NULL)
RETURNS TABLE (userid oid, normalised text, samples integer, aligned integer, value_tuples jsonb,
               constants jsonb, expressions jsonb)
LANGUAGE plpython3u STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.sampled_parameters(plpy, queryid, min_samples)
$python$;
COMMENT ON FUNCTION arch.sampled_parameters(bigint, integer) IS
'What the samples of a statement say about its $n parameters, per role that ran it and whose texts the caller may read: value tuples with counts (most frequent first), constant parameters with their partial-index predicate (status = ''pending''), expressions normalisation hid ((payload ->> ''order_id'')). min_samples: default the setting constant_parameter_min_samples.';

DROP FUNCTION IF EXISTS arch.compare_plans(bigint, integer);
CREATE FUNCTION arch.compare_plans(queryid bigint, max_values integer DEFAULT 5)
RETURNS TABLE (userid oid, source text, param_values text[], samples integer, generic_cost float8,
               custom_cost float8, generic_plan text[], custom_plan text[], skipped text)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.compare_plans(plpy, queryid, max_values)
$python$;
COMMENT ON FUNCTION arch.compare_plans(bigint, integer) IS
'The generic plan of a statement against its custom plans (plan_cache_mode = force_custom_plan) for the max_values most frequent sampled value tuples, or, without samples, pg_stats'' most common values of the compared columns; planned with the rights of the role that ran it (never the caller''s), nothing executed.';

CREATE OR REPLACE FUNCTION arch.schedule_sampling(cron text DEFAULT '* * * * *') RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
RETURN arch._cron_schedule('arch.schedule_sampling', 'pg_architect_sampling', cron, 'SELECT arch.sample_queries()',
                           '* * * * *', 'Query sampling');
COMMENT ON FUNCTION arch.schedule_sampling(text) IS
'Registers (or re-registers) the pg_cron job pg_architect_sampling that runs SELECT arch.sample_queries() on the given cron schedule (default every minute; pg_cron fires on whole minutes); returns the job id. The job runs as the caller, who needs pg_read_all_stats to sample other roles'' statements.';

CREATE OR REPLACE FUNCTION arch.unschedule_sampling() RETURNS boolean
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
RETURN arch._cron_unschedule('arch.unschedule_sampling', 'pg_architect_sampling', 'sampling');
COMMENT ON FUNCTION arch.unschedule_sampling() IS
'Removes the pg_cron job pg_architect_sampling; returns false when there was none.';
