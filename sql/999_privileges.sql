-- pg_architect: every privilege of the arch schema, in one place; sorts last. Idempotent.
--
-- Sections: base roles and tables (revoke PUBLIC on everything, then grant), knowledge,
-- workflow and sidecar, security functions, statistics advisor. New objects get their grants
-- here (sql/ files by pipeline step create objects and comment them; this file grants).

-- ==== base: roles, tables, audit functions ====
-- pg_architect: comments on tables and privileges. Idempotent.
--
-- Roles (created by `pg-architect install`, NOLOGIN; grant them to login roles):
--   arch_reader  reads the views (Grafana, dashboards)
--   arch_admin   runs audits, changes settings, schedules the weekly audit
-- arch.python_env and arch.migration are never granted: only the installing superuser writes them.

COMMENT ON SCHEMA arch IS 'pg_architect: an AI database architect that lives inside PostgreSQL.';
COMMENT ON TABLE arch.statement IS 'Text of every pg_stat_statements entry seen by an audit, stored once per (dbid, userid, queryid).';
COMMENT ON TABLE arch.snapshot IS 'A copy of pg_stat_statements counters taken at the start of each audit; audits work on the delta between snapshots.';
COMMENT ON TABLE arch.snapshot_statement IS 'Cumulative counters of one statement in one snapshot.';
COMMENT ON TABLE arch.audit_run IS 'One row per audit run: window, counts, timings and status.';
COMMENT ON TABLE arch.audit_statement IS 'Each statement an audit selected: analysed (with its cost) or skipped (with the reason).';
COMMENT ON TABLE arch.recommendation IS 'Proven recommendations: exact DDL, costs before/after, estimated gain, confidence, status.';
COMMENT ON TABLE arch.recommendation_statement IS 'Which statements each recommendation speeds up, per audit.';
COMMENT ON TABLE arch.statement_analysis IS 'The last analysis of each statement with the hash of its inputs: an audit reuses it while text, tables and statistics are unchanged.';

REVOKE ALL ON ALL TABLES IN SCHEMA arch FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA arch FROM PUBLIC;
GRANT USAGE ON SCHEMA arch TO arch_reader, arch_admin;

-- Readers: the views and the settings, nothing else.
GRANT SELECT ON arch.recommendations, arch.pending_recommendations, arch.audit_runs,
                arch.skipped_statements, arch.settings_overview, arch.settings TO arch_reader;
GRANT EXECUTE ON FUNCTION arch.version() TO PUBLIC;

-- Admins: everything a reader has, run audits, change settings, schedule.
GRANT arch_reader TO arch_admin;
GRANT SELECT, UPDATE ON arch.settings TO arch_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON arch.statement, arch.snapshot, arch.snapshot_statement,
      arch.audit_run, arch.audit_statement, arch.recommendation, arch.recommendation_statement,
      arch.statement_analysis TO arch_admin;
-- The prologue must read where the package lives (reading it is harmless; writing it is not).
GRANT SELECT ON arch.python_env TO arch_admin;
GRANT EXECUTE ON FUNCTION arch._boot(), arch.run_audit(), arch.analyze_query(text), arch._analyze_query(text, text),
      arch.schedule(text), arch.unschedule() TO arch_admin;
-- The batched audit is SECURITY INVOKER like arch.run_audit() (a procedure that COMMITs cannot be
-- SECURITY DEFINER): its caller needs arch_admin's rights on the arch tables.
REVOKE ALL ON PROCEDURE arch.run_audit_batched(integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE arch.run_audit_batched(integer) TO arch_admin;
-- arch.schedule() / arch.schedule_sampling() and their unschedule twins run as the caller, through these.
GRANT EXECUTE ON FUNCTION arch._cron_schedule(text, text, text, text, text, text),
      arch._cron_unschedule(text, text, text) TO arch_admin;

-- arch.schedule() runs as its caller: admins need to reach pg_cron's functions (when installed).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        GRANT USAGE ON SCHEMA cron TO arch_admin;
    END IF;
END
$$;

-- ==== knowledge base ====
-- pg_architect: privileges of the knowledge base. Idempotent.
-- After the base section above (which revoked PUBLIC on every arch table and function).
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

-- ==== workflow and sidecar ====
-- pg_architect: comments and privileges of the approval workflow and the sidecar. Idempotent.
-- After the base section above (which revoked PUBLIC on every arch table and function).
--
-- Roles (created by `pg-architect install`, NOLOGIN; grant them to login roles):
--   arch_approver  approves and rejects recommendations (and reads the views)
--   arch_sidecar   claims sidecar requests and writes their results, nothing else; it is a member
--                  of arch_reader only so that it can drop to it (SET LOCAL ROLE) to run arch.ask() SQL
-- Approvals, history and the queue are written by SECURITY INVOKER functions and triggers, so
-- the history records the real current_user; each role gets exactly the table rights that needs,
-- and the transition trigger decides which role may make which status change.

COMMENT ON TABLE arch.recommendation_transition IS 'Every status change of every recommendation (who, when, from, to, note). Read it through arch.recommendation_history.';
COMMENT ON TABLE arch.sidecar IS 'One row per sidecar process started: host, pid, heartbeat, counters. Read it through arch.sidecars.';
COMMENT ON TABLE arch.request IS 'The sidecar''s work queue: open_pr, explain, ask and train requests with status, attempts, last error and result. NOTIFY arch_request on insert.';
COMMENT ON TABLE arch.pull_request IS 'The pull request of each approved recommendation: branch, migration files, number, state.';
COMMENT ON TABLE arch.statement_explanation IS 'Business purpose of a statement in plain words, written by the sidecar (Vanna + LLM).';
COMMENT ON TABLE arch.documentation IS 'Documentation for Vanna written by DBAs (INSERT INTO arch.documentation (title, body) ...); used by arch.train().';
COMMENT ON TABLE arch.vanna_training IS 'Vanna''s training data (DDL, documentation, question/SQL pairs) with 384-dimension embeddings; one row per source, so re-training adds no duplicates.';

COMMENT ON COLUMN arch.settings.approval_policy IS 'on_approval: a DBA approves (arch.approve) and then a pull request is opened; auto_above_threshold: a pull request is opened for every recommendation at or above confidence_threshold and its review is the approval.';
COMMENT ON COLUMN arch.settings.github_api_url IS 'GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3). The token comes from the sidecar''s environment (PGA_GITHUB_TOKEN), never from the database.';
COMMENT ON COLUMN arch.settings.github_repo IS 'Repository pull requests are opened in, as owner/name; NULL: no pull requests.';
COMMENT ON COLUMN arch.settings.github_base_branch IS 'Branch pull requests are opened against.';
COMMENT ON COLUMN arch.settings.migrations_dir IS 'Directory of the repository the migration file is written to.';
COMMENT ON COLUMN arch.settings.rewrite_docs_dir IS 'Directory of the repository a rewrite''s pull request writes its markdown note to (a rewrite changes application code: no SQL migration, in every migration_format).';
COMMENT ON COLUMN arch.settings.migration_format IS 'sql: a plain SQL file; prisma: <timestamp>_<name>/migration.sql; flyway: V<version>__<name>.sql with a .sql.conf that turns off the transaction.';
COMMENT ON COLUMN arch.settings.github_timeout_s IS 'Timeout of one GitHub API call (seconds).';
COMMENT ON COLUMN arch.settings.github_max_wait_s IS 'Longest wait for a GitHub rate-limit reset inside one attempt (seconds); a longer one reschedules the request.';
COMMENT ON COLUMN arch.settings.sidecar_poll_s IS 'The sidecar looks at the queue at least this often (seconds) besides waking up on NOTIFY.';
COMMENT ON COLUMN arch.settings.sidecar_lease_s IS 'A running request whose sidecar has sent no heartbeat for this long (seconds) is claimed again by another sidecar.';
COMMENT ON COLUMN arch.settings.request_max_attempts IS 'A request that failed this many times is marked failed (arch.retry_request puts it back).';
COMMENT ON COLUMN arch.settings.request_retry_base_s IS 'Backoff after a failed attempt: this many seconds times 2^(attempts-1), at most one hour.';
COMMENT ON COLUMN arch.settings.pr_sync_interval_s IS 'How often (seconds) a sidecar syncs the state of open pull requests (merged, closed) back.';
COMMENT ON COLUMN arch.settings.llm_provider IS 'LLM for Vanna (explain, ask, train): openai (any OpenAI-compatible API), ollama or gemini; NULL: none (no explain requests are queued). Keys come from the sidecar''s environment.';
COMMENT ON COLUMN arch.settings.llm_base_url IS 'Base URL of the LLM API; NULL: the provider''s default.';
COMMENT ON COLUMN arch.settings.llm_model IS 'Model name passed to the LLM API.';
COMMENT ON COLUMN arch.settings.llm_timeout_s IS 'Timeout of one LLM call (seconds).';
COMMENT ON COLUMN arch.settings.ask_row_cap IS 'arch.ask(): at most this many rows of the generated SQL are fetched and stored.';
COMMENT ON COLUMN arch.settings.ask_statement_timeout_ms IS 'arch.ask(): statement_timeout of the generated SQL (ms).';

GRANT USAGE ON SCHEMA arch TO arch_approver, arch_sidecar;

-- Readers: the new views (questions and answers of arch.ask are for admins: arch.answers).
GRANT SELECT ON arch.recommendation_history, arch.requests, arch.sidecars, arch.pull_requests,
                arch.explanations TO arch_reader;

-- Approvers: read everything a reader reads; approve and reject. approve() and reject() run as
-- the caller (so the history shows who decided): they need to update the status and the
-- decision, write the history and queue the pull request.
GRANT arch_reader TO arch_approver;
GRANT SELECT, UPDATE (status, decision_note) ON arch.recommendation TO arch_approver;
GRANT SELECT ON arch.settings TO arch_approver;
GRANT INSERT ON arch.recommendation_transition TO arch_approver;
GRANT SELECT, INSERT ON arch.request TO arch_approver;
GRANT EXECUTE ON FUNCTION arch._queue_request(text, jsonb, text, boolean) TO arch_approver, arch_admin;
GRANT EXECUTE ON FUNCTION arch.approve(bigint, text), arch.reject(bigint, text),
      arch._decision_error(text, bigint, text, name, timestamptz, text),
      arch._transition_role(text, text) TO arch_approver;

-- Admins (the audit): queue explain / open_pr requests, supersede, mark applied; ask and train.
GRANT SELECT, INSERT, UPDATE, DELETE ON arch.request, arch.recommendation_transition, arch.pull_request,
      arch.statement_explanation, arch.documentation, arch.vanna_training, arch.sidecar TO arch_admin;
GRANT SELECT ON arch.answers TO arch_admin;
GRANT EXECUTE ON FUNCTION arch.retry_request(bigint), arch.ask(text), arch.answer(bigint), arch.train(),
      arch._transition_role(text, text), arch._sidecar_lock_key() TO arch_admin;

-- The sidecar: claim requests, write their results, nothing else. It reads what a pull request
-- body and a prompt need; it writes the queue's status columns, its heartbeat, pull requests,
-- explanations and Vanna's training data; it moves recommendations only through the statuses
-- the transition trigger allows it (pr_open, merged, closed).
GRANT arch_reader TO arch_sidecar;
GRANT SELECT ON arch.settings, arch.python_env, arch.migration, arch.recommendation, arch.recommendation_statement,
      arch.recommendation_transition, arch.statement, arch.audit_run, arch.documentation TO arch_sidecar;
GRANT SELECT, UPDATE (status, attempts, run_after, last_error, claimed_by, claimed_at, result, finished_at)
      ON arch.request TO arch_sidecar;
GRANT UPDATE (status) ON arch.recommendation TO arch_sidecar;
GRANT INSERT ON arch.recommendation_transition TO arch_sidecar;
GRANT SELECT, INSERT, UPDATE ON arch.sidecar, arch.pull_request, arch.statement_explanation TO arch_sidecar;
GRANT SELECT, INSERT, UPDATE, DELETE ON arch.vanna_training TO arch_sidecar;
GRANT EXECUTE ON FUNCTION arch._transition_role(text, text), arch._sidecar_lock_key() TO arch_sidecar;

-- arch.sidecars calls it (views run functions with the reader's privileges): a constant, harmless.
GRANT EXECUTE ON FUNCTION arch._sidecar_lock_key() TO arch_reader;

-- ==== security functions ====
-- pg_architect: privileges of the security functions (issue 7). Idempotent.
--
-- Views run these functions with the privileges of the role reading them: every role that
-- reads an arch view (arch_reader and the roles granted it) needs them.

GRANT EXECUTE ON FUNCTION arch.statement_visible(oid), arch.visible_text(oid, text),
      arch.approval_hash(text, text, text, text, text), arch.approval_hash(text, text, text, text, text, jsonb) TO arch_reader;

-- ==== statistics advisor ====
-- pg_architect: privileges of the statistics advisor. Idempotent.
-- After the base section above (which revoked PUBLIC on every arch function).
-- arch.advise_statistics() reads a sample of the audited tables and, when the setting allows,
-- takes their SHARE UPDATE EXCLUSIVE lock for a moment: admins only, with their own rights.

GRANT EXECUTE ON FUNCTION arch.advise_statistics(bigint, integer) TO arch_admin;

-- ==== query samples (150_samples.sql) ====
-- (runs after 090_privileges.sql, which revoked PUBLIC on every arch table and function)
REVOKE ALL ON arch.query_sample, arch.query_samples FROM PUBLIC;
REVOKE ALL ON FUNCTION arch.sample_queries(), arch.sampled_parameters(bigint, integer),
              arch.compare_plans(bigint, integer), arch.schedule_sampling(text),
              arch.unschedule_sampling() FROM PUBLIC;
-- Readers see the samples through the view (texts filtered by arch.visible_text).
GRANT SELECT ON arch.query_samples TO arch_reader;
-- Admins sample (with their own rights: the functions are SECURITY INVOKER), read what the
-- samples say, compare plans (planned as each statement's role) and schedule sampling.
GRANT SELECT, INSERT, DELETE ON arch.query_sample TO arch_admin;
GRANT EXECUTE ON FUNCTION arch.sample_queries(), arch.sampled_parameters(bigint, integer),
      arch.compare_plans(bigint, integer), arch.schedule_sampling(text), arch.unschedule_sampling() TO arch_admin;
-- The sidecar's staging validation (validate.py) takes real parameter values from the samples.
GRANT SELECT ON arch.query_sample TO arch_sidecar;

-- ==== workload index set (410_index_set.sql) ====
-- Plans the workload's statements as the roles that ran them (security.PlanAs): admins only.
REVOKE ALL ON FUNCTION arch.design_indexes(numeric) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION arch.design_indexes(numeric) TO arch_admin;

-- ==== index housekeeping (420_housekeeping.sql) ====
-- Both run with the caller's rights: they read the statistics views and the catalog (no user
-- data, no statement text) and write only arch.snapshot_index. Admins only.
REVOKE ALL ON FUNCTION arch.snapshot_indexes(), arch.advise_index_housekeeping() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION arch.snapshot_indexes(), arch.advise_index_housekeeping() TO arch_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON arch.snapshot_index TO arch_admin;
GRANT SELECT ON arch.snapshot_index TO arch_reader;

-- ==== partitioning, materialized views, caching (430_partition_matview.sql) ====
-- The advisors read pg_stat_statements and the catalog (and, for materialized views, plan the
-- statements as their roles): admins only, with their own rights.
REVOKE ALL ON FUNCTION arch._advise_partitioning(), arch.advise_partitioning(), arch._advise_materialized_views(),
       arch.advise_materialized_views(), arch._visible_statements(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION arch._advise_partitioning(), arch.advise_partitioning(), arch._advise_materialized_views(),
      arch.advise_materialized_views(), arch._visible_statements(jsonb) TO arch_admin;

-- ==== validation on staging (720_validation.sql) ====
REVOKE ALL ON FUNCTION arch.validate(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION arch._adopt_validation(bigint, double precision, double precision) FROM PUBLIC;
REVOKE ALL ON arch.validation, arch.validations, arch.estimate_errors FROM PUBLIC;
GRANT SELECT ON arch.validations, arch.estimate_errors TO arch_reader;
GRANT SELECT ON arch.validation TO arch_admin;
GRANT EXECUTE ON FUNCTION arch.validate(bigint) TO arch_admin;
GRANT SELECT, INSERT, UPDATE ON arch.validation TO arch_sidecar;
GRANT EXECUTE ON FUNCTION arch._adopt_validation(bigint, double precision, double precision) TO arch_sidecar, arch_admin;
-- The sidecar compares system identifiers of production and staging (refuses the same database).
GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO arch_sidecar, arch_admin;

-- ==== KPIs (810_kpis.sql) ====
GRANT SELECT ON arch.kpis TO arch_reader;
