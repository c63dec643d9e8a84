-- pg_architect migration 0015: where a rewrite's pull request writes its note (issue 11).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- A rewrite changes the application's code, not the schema: its pull request adds a markdown note
-- under this directory of the repository (in every migration_format), no SQL migration.
ALTER TABLE arch.settings
    ADD COLUMN rewrite_docs_dir text NOT NULL DEFAULT 'docs/pg_architect',
    ADD CONSTRAINT settings_rewrite_docs_dir CHECK (rewrite_docs_dir ~ '^[A-Za-z0-9._/-]*$'
                                                    AND rewrite_docs_dir !~ '(^|/)\.\.(/|$)'
                                                    AND rewrite_docs_dir !~ '^/');
