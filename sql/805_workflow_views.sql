-- pg_architect: views of the approval workflow, the sidecar and its results. Idempotent.

-- Key of the session-level advisory lock a running sidecar holds on (this constant, its id):
-- pg_locks then tells whether the process behind a claim is still alive.
CREATE OR REPLACE FUNCTION arch._sidecar_lock_key() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 1885430131 $$;
COMMENT ON FUNCTION arch._sidecar_lock_key() IS
'Internal: first key of the advisory lock (key, sidecar id) each running sidecar holds while connected.';

DROP VIEW IF EXISTS arch.recommendation_history, arch.requests, arch.sidecars, arch.pull_requests,
                    arch.explanations, arch.answers;

CREATE VIEW arch.recommendation_history AS
SELECT t.recommendation_id, t.id AS seq, t.from_status, t.to_status, t.changed_by, t.changed_at, t.note,
       format('%I.%I', r.schema_name, r.table_name) AS table_name, r.index_name
FROM arch.recommendation_transition t
JOIN arch.recommendation r ON r.id = t.recommendation_id
ORDER BY t.recommendation_id, t.id;
COMMENT ON VIEW arch.recommendation_history IS
'Every status change of every recommendation: from, to, who (the role that made it) and when, with the note or reason.';

CREATE VIEW arch.sidecars AS
SELECT s.id, s.name, s.host, s.pid, s.version, s.login_role, s.started_at, s.heartbeat_at, s.stopped_at,
       (s.stopped_at IS NULL AND EXISTS (
            SELECT 1 FROM pg_catalog.pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.classid = arch._sidecar_lock_key()::oid AND l.objid = s.id::oid)) AS alive,
       s.processed, s.failed, s.last_error
FROM arch.sidecar s
ORDER BY s.id DESC;
COMMENT ON VIEW arch.sidecars IS
'Sidecar processes: heartbeat, whether the process is still connected (alive), requests processed and failed.';

CREATE VIEW arch.requests AS
SELECT q.id, q.kind, q.status, q.attempts, q.run_after, q.last_error,
       s.name AS claimed_by, q.claimed_at, q.requested_by, q.created_at, q.finished_at,
       CASE WHEN q.kind = 'ask' THEN NULL ELSE q.payload END AS payload,
       CASE WHEN q.kind = 'ask' THEN NULL ELSE q.result END AS result
FROM arch.request q
LEFT JOIN arch.sidecar s ON s.id = q.claimed_by
ORDER BY q.id DESC;
COMMENT ON VIEW arch.requests IS
'The sidecar''s work queue (open_pr, explain, ask, train): status, attempts, last error, which sidecar claimed it. Questions and answers of ask requests are in arch.answers.';

CREATE VIEW arch.pull_requests AS
SELECT p.recommendation_id, r.status AS recommendation_status, p.repo, p.pr_number, p.url, p.state,
       p.branch, p.base_branch, p.migration_format,
       ARRAY(SELECT f ->> 'path' FROM jsonb_array_elements(p.files) f) AS files,
       p.created_at, p.merged_at, p.closed_at, p.synced_at
FROM arch.pull_request p
JOIN arch.recommendation r ON r.id = p.recommendation_id
ORDER BY p.recommendation_id DESC;
COMMENT ON VIEW arch.pull_requests IS
'The pull request opened for each approved recommendation: number, URL, branch, migration files and state (synced back from GitHub by the sidecar).';

CREATE VIEW arch.explanations WITH (security_barrier) AS
SELECT e.queryid, arch.visible_text(e.userid, e.explanation) AS business_purpose,
       left(arch.visible_text(e.userid, st.query), 300) AS query,
       e.provider, e.model, e.explained_at
FROM arch.statement_explanation e
LEFT JOIN arch.statement st USING (dbid, userid, queryid)
ORDER BY e.explained_at DESC;
COMMENT ON VIEW arch.explanations IS
'What each slow statement does for the business, in plain words (written by the sidecar through Vanna and the configured LLM).';

CREATE VIEW arch.answers AS
SELECT q.id AS request_id, q.status, q.payload ->> 'question' AS question,
       q.result ->> 'sql' AS generated_sql,
       (q.result ->> 'accepted')::boolean AS accepted,
       q.result ->> 'refusal' AS refusal,
       q.result ->> 'error' AS error,
       q.result -> 'columns' AS columns,
       q.result -> 'rows' AS rows,
       (q.result ->> 'row_count')::integer AS row_count,
       (q.result ->> 'truncated')::boolean AS truncated,
       q.requested_by AS asked_by, q.created_at AS asked_at, q.finished_at AS answered_at,
       q.last_error
FROM arch.request q
WHERE q.kind = 'ask'
ORDER BY q.id DESC;
COMMENT ON VIEW arch.answers IS
'Answers to arch.ask(): the generated SQL, whether it was accepted (one read-only statement) and the first rows it returned as arch_reader.';

CREATE OR REPLACE FUNCTION arch.answer(request_id bigint)
RETURNS TABLE (status text, question text, generated_sql text, accepted boolean, refusal text, error text,
               columns jsonb, rows jsonb, row_count integer, truncated boolean, answered_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT a.status, a.question, a.generated_sql, a.accepted, a.refusal, coalesce(a.error, a.last_error),
       a.columns, a.rows, a.row_count, a.truncated, a.answered_at
FROM arch.answers a WHERE a.request_id = answer.request_id
$$;
COMMENT ON FUNCTION arch.answer(bigint) IS
'The answer to one arch.ask() request: status (pending until the sidecar has answered), generated SQL, accepted or why refused, the first rows.';
