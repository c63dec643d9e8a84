-- pg_architect migration 0003: the knowledge base (embeddings of past recommendations and their
-- statements), recall decisions, measured outcomes of applied recommendations.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- Settings of recall, outcomes and calibration (comments in sql/050_knowledge.sql).
ALTER TABLE arch.settings
    ADD COLUMN embedding_model        text             NOT NULL DEFAULT 'all-MiniLM-L6-v2',
    ADD COLUMN similarity_threshold   double precision NOT NULL DEFAULT 0.90,
    ADD COLUMN recall_k               integer          NOT NULL DEFAULT 5,
    ADD COLUMN reproposal_cost_factor double precision NOT NULL DEFAULT 2.0,
    ADD COLUMN outcome_min_gain_pct   double precision NOT NULL DEFAULT 10,
    ADD COLUMN outcome_min_calls      bigint           NOT NULL DEFAULT 10,
    ADD COLUMN outcome_window         interval         NOT NULL DEFAULT '7 days',
    ADD COLUMN calibration_min_cases  integer          NOT NULL DEFAULT 20,
    ADD CONSTRAINT settings_embedding_model CHECK (
        embedding_model IN ('all-MiniLM-L6-v2', 'sentence-transformers/all-MiniLM-L6-v2', 'hashing')
        OR embedding_model LIKE '/%'),
    ADD CONSTRAINT settings_similarity_threshold   CHECK (similarity_threshold BETWEEN 0 AND 1),
    ADD CONSTRAINT settings_recall_k               CHECK (recall_k BETWEEN 1 AND 100),
    ADD CONSTRAINT settings_reproposal_cost_factor CHECK (reproposal_cost_factor >= 1),
    ADD CONSTRAINT settings_outcome_min_gain_pct   CHECK (outcome_min_gain_pct BETWEEN 0 AND 100),
    ADD CONSTRAINT settings_outcome_min_calls      CHECK (outcome_min_calls >= 1),
    ADD CONSTRAINT settings_outcome_window         CHECK (outcome_window >= interval '1 minute'),
    ADD CONSTRAINT settings_calibration_min_cases  CHECK (calibration_min_cases >= 1);

-- Decisions of humans, and what happened after.
ALTER TABLE arch.recommendation
    ADD COLUMN rejected_reason          text,
    ADD COLUMN rejected_at              timestamptz,
    ADD COLUMN reproposed_at            timestamptz,
    ADD COLUMN confidence_estimate      double precision,
    ADD COLUMN similar_to               jsonb            NOT NULL DEFAULT '[]',
    ADD COLUMN index_signature          text,
    ADD COLUMN applied_at               timestamptz,
    ADD COLUMN applied_index            name,
    ADD COLUMN applied_snapshot_id      bigint REFERENCES arch.snapshot (id) ON DELETE SET NULL,
    ADD COLUMN applied_prev_snapshot_id bigint REFERENCES arch.snapshot (id) ON DELETE SET NULL,
    ADD COLUMN mean_time_before_ms      double precision,
    ADD COLUMN mean_time_after_ms       double precision,
    ADD COLUMN time_per_call_before_ms  double precision,
    ADD COLUMN time_per_call_after_ms   double precision,
    ADD COLUMN calls_before             bigint,
    ADD COLUMN calls_after              bigint,
    ADD COLUMN measured_gain_pct        double precision,
    ADD COLUMN index_scans              bigint,
    ADD COLUMN outcome                  text,
    ADD COLUMN outcome_detail           text,
    ADD COLUMN measured_at              timestamptz,
    ADD CONSTRAINT recommendation_outcome CHECK (outcome IN ('improved', 'no_gain', 'slower', 'unused')),
    ADD CONSTRAINT recommendation_confidence_estimate_range CHECK (confidence_estimate BETWEEN 0 AND 1);
CREATE INDEX recommendation_applied_idx ON arch.recommendation (applied_at) WHERE status = 'applied';

-- The knowledge base: one case per (recommendation, statement), with the embedding of the
-- statement's canonical text (pg_architect.embed.canonical_text).
CREATE TABLE arch.knowledge (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recommendation_id    bigint           NOT NULL REFERENCES arch.recommendation (id) ON DELETE CASCADE,
    dbid                 oid              NOT NULL,
    userid               oid              NOT NULL,
    queryid              bigint           NOT NULL,
    query                text             NOT NULL,
    canonical            text             NOT NULL,
    canonical_md5        text             NOT NULL GENERATED ALWAYS AS (md5(canonical)) STORED,
    embedding_model      text             NOT NULL,
    cost_before          double precision,
    cost_after           double precision,
    est_gain_pct         double precision,
    mean_time_before_ms  double precision,
    mean_time_after_ms   double precision,
    calls_before         bigint,
    calls_after          bigint,
    measured_gain_pct    double precision,
    outcome              text,
    measured_at          timestamptz,
    first_audit_run_id   bigint REFERENCES arch.audit_run (id) ON DELETE SET NULL,
    last_audit_run_id    bigint REFERENCES arch.audit_run (id) ON DELETE SET NULL,
    created_at           timestamptz      NOT NULL DEFAULT now(),
    updated_at           timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT knowledge_case_unique UNIQUE (recommendation_id, dbid, userid, queryid),
    CONSTRAINT knowledge_outcome CHECK (outcome IN ('improved', 'no_gain', 'slower', 'unused'))
);
CREATE INDEX knowledge_canonical_idx ON arch.knowledge (canonical_md5, embedding_model);
CREATE INDEX knowledge_statement_idx ON arch.knowledge (dbid, userid, queryid);

-- The embedding column and its HNSW index use pgvector's type, wherever the extension lives.
DO $$
DECLARE
    vs text := (SELECT quote_ident(n.nspname) FROM pg_catalog.pg_extension e
                JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector');
BEGIN
    IF vs IS NULL THEN
        RAISE EXCEPTION 'pg_architect: the vector extension (pgvector) is not installed'
            USING HINT = 'CREATE EXTENSION vector; (pg-architect install does it when pgvector is available)';
    END IF;
    EXECUTE format('ALTER TABLE arch.knowledge ADD COLUMN embedding %s.vector(384) NOT NULL', vs);
    EXECUTE format('CREATE INDEX knowledge_embedding_idx ON arch.knowledge'
                   ' USING hnsw (embedding %s.vector_cosine_ops)', vs);
END
$$;

-- What recall decided for a statement in an audit: a rejected recommendation skipped or
-- re-proposed, a confidence raised or lowered by similar past cases.
CREATE TABLE arch.audit_recall (
    audit_run_id              bigint           NOT NULL REFERENCES arch.audit_run (id) ON DELETE CASCADE,
    dbid                      oid              NOT NULL,
    userid                    oid              NOT NULL,
    queryid                   bigint           NOT NULL,
    action                    text             NOT NULL,
    recommendation_id         bigint REFERENCES arch.recommendation (id) ON DELETE CASCADE,
    similar_recommendation_id bigint REFERENCES arch.recommendation (id) ON DELETE SET NULL,
    similarity                double precision,
    cost_before               double precision,
    reason                    text             NOT NULL,
    created_at                timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT audit_recall_action CHECK (action IN ('skipped_rejected', 'reproposed', 'raised', 'lowered'))
);
CREATE INDEX audit_recall_run_idx ON arch.audit_recall (audit_run_id);
CREATE INDEX audit_recall_recommendation_idx ON arch.audit_recall (recommendation_id);

ALTER TABLE arch.audit_run ADD COLUMN knowledge jsonb NOT NULL DEFAULT '{}';
