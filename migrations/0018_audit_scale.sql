-- pg_architect migration 0018: audit scale (issue 10): grouped statements, batched audits.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- A statement that differs from another only in normalisation noise (IN-list length, parameter
-- numbers) is analysed once with its group: its row says which representative it was grouped
-- with (outcome 'grouped'); a statement whose analysis was reused from an earlier audit says so
-- (outcome 'reused', reused_from = that audit).
ALTER TABLE arch.audit_statement
    ADD COLUMN grouped_with bigint,
    ADD COLUMN reused_from bigint REFERENCES arch.audit_run (id) ON DELETE SET NULL,
    ADD COLUMN note text;
ALTER TABLE arch.audit_statement
    DROP CONSTRAINT audit_statement_outcome,
    ADD CONSTRAINT audit_statement_outcome CHECK (outcome IN ('analyzed', 'skipped', 'grouped', 'reused')),
    ADD CONSTRAINT audit_statement_grouped_has_representative CHECK (outcome <> 'grouped' OR grouped_with IS NOT NULL);
COMMENT ON COLUMN arch.audit_statement.grouped_with IS
'outcome grouped: the queryid of the statement (same role) it was analysed with: they differ only in normalisation noise (IN-list length, parameter numbers).';
COMMENT ON COLUMN arch.audit_statement.reused_from IS
'outcome reused: the audit whose analysis of this statement was reused (its text, tables and statistics unchanged since).';
COMMENT ON COLUMN arch.audit_statement.note IS
'Why the statement was grouped or reused, in a sentence.';

-- Progress of a running audit, committed between batches by CALL arch.run_audit_batched().
ALTER TABLE arch.audit_run
    ADD COLUMN statements_done integer NOT NULL DEFAULT 0,
    ADD COLUMN statements_grouped integer NOT NULL DEFAULT 0,
    ADD COLUMN statements_reused integer NOT NULL DEFAULT 0,
    ADD COLUMN batches integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN arch.audit_run.statements_done IS
'Statements of the window handled so far (analysed, skipped, grouped or reused): progress while the audit runs.';
COMMENT ON COLUMN arch.audit_run.statements_grouped IS
'Statements analysed with a representative of their group instead of alone (they differ only in normalisation noise).';
COMMENT ON COLUMN arch.audit_run.statements_reused IS
'Statements whose analysis was reused from an earlier audit (text, tables and statistics unchanged).';
COMMENT ON COLUMN arch.audit_run.batches IS
'Transactions the audit committed: 1 for SELECT arch.run_audit(), one per batch (plus the first and the last) for CALL arch.run_audit_batched().';

-- The analysis of each statement the last audits planned, with the hash of its inputs (text,
-- role, search_path, its tables' columns / indexes / statistics within a band, the settings):
-- an audit reuses it while the inputs are unchanged instead of planning the statement again.
CREATE TABLE arch.statement_analysis (
    dbid         oid              NOT NULL,
    userid       oid              NOT NULL,
    queryid      bigint           NOT NULL,
    inputs       text             NOT NULL,
    analysed_in  bigint           NOT NULL REFERENCES arch.audit_run (id) ON DELETE CASCADE,
    linked_in    bigint           NOT NULL REFERENCES arch.audit_run (id) ON DELETE CASCADE,
    cost_before  double precision,
    candidates   integer          NOT NULL DEFAULT 0,
    updated_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (dbid, userid, queryid)
);
COMMENT ON COLUMN arch.statement_analysis.inputs IS
'SHA-256 of what the analysis depended on: statement text, role and search_path, each table''s oid, relfilenode, columns, indexes, extended statistics, constraints, reltuples/relpages within a band and last (auto)analyze, arch.settings, the planner settings, hypopg''s and pg_architect''s versions.';
COMMENT ON COLUMN arch.statement_analysis.linked_in IS
'The latest audit that linked the recommendations of this analysis (arch.recommendation_statement): the next reuse copies its links.';

-- true: a statement whose inputs are unchanged since the audit that analysed it reuses that
-- analysis (see arch.statement_analysis); false: every selected statement is planned again.
ALTER TABLE arch.settings
    ADD COLUMN reuse_analyses boolean NOT NULL DEFAULT true;
