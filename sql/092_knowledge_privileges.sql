-- pg_architect: privileges of the knowledge base. Idempotent.
-- Runs after 090_privileges.sql (which revoked PUBLIC on every arch table and function).
--
-- Readers see the knowledge base through views (no vectors, no functions: arch.embed and
-- arch.similar_optimizations load a model into the calling backend — about 150 MB for the default,
-- 0.5 GB for a sentence-transformers one — so they are for admins). Admins run audits, which
-- write cases and recall decisions, and prune.

GRANT SELECT ON arch.knowledge_cases, arch.outcomes, arch.calibration, arch.recall_decisions TO arch_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON arch.knowledge, arch.audit_recall TO arch_admin;
GRANT EXECUTE ON FUNCTION arch.embed(text), arch.canonical_statement(text),
      arch.similar_optimizations(text, integer), arch.prune_knowledge(interval, text[], boolean, boolean),
      arch._check_embedding_model() TO arch_admin;
