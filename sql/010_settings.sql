-- pg_architect: settings documentation and the settings overview. Idempotent.

COMMENT ON TABLE arch.settings IS
'pg_architect settings: exactly one row; change with UPDATE arch.settings SET ... (arch_admin or owner). See arch.settings_overview.';
COMMENT ON COLUMN arch.settings.min_mean_time_ms IS 'A statement is audited only if its mean execution time in the audit window is at least this (ms).';
COMMENT ON COLUMN arch.settings.min_calls IS 'A statement is audited only if it was called at least this many times in the audit window.';
COMMENT ON COLUMN arch.settings.confidence_threshold IS 'Recommendations at or above this confidence (0..1) wait for human approval in arch.pending_recommendations.';
COMMENT ON COLUMN arch.settings.min_gain_pct IS 'A candidate index is kept only if it lowers the planner''s estimated cost by at least this percentage.';
COMMENT ON COLUMN arch.settings.max_statements IS 'At most this many statements (the costliest in the window) are analysed per audit.';
COMMENT ON COLUMN arch.settings.statement_budget_ms IS 'Time budget per statement (ms); when spent, remaining candidates are not costed and the statement notes it.';
COMMENT ON COLUMN arch.settings.max_candidates IS 'At most this many candidate indexes are costed per statement.';
COMMENT ON COLUMN arch.settings.max_index_columns IS 'Maximum number of key columns in a multi-column candidate.';
COMMENT ON COLUMN arch.settings.max_statement_length IS 'Statements longer than this (characters) are skipped with a reason.';
COMMENT ON COLUMN arch.settings.snapshot_retention IS 'Workload snapshots older than this are pruned at the end of an audit (the latest one is always kept).';

CREATE OR REPLACE VIEW arch.settings_overview AS
SELECT s.key AS name,
       s.value #>> '{}' AS value,
       d.value #>> '{}' AS default_value,
       col_description('arch.settings'::regclass, a.attnum) AS description
FROM jsonb_each(to_jsonb((SELECT st FROM arch.settings st WHERE st.id)) - 'id') AS s
JOIN pg_attribute a ON a.attrelid = 'arch.settings'::regclass AND a.attname = s.key
LEFT JOIN LATERAL (
    SELECT to_jsonb(pg_get_expr(ad.adbin, ad.adrelid)) AS value
    FROM pg_attrdef ad WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum
) d ON true
ORDER BY a.attnum;
COMMENT ON VIEW arch.settings_overview IS
'pg_architect settings, one per row: current value, default and meaning.';

COMMENT ON TABLE arch.python_env IS
'Where PL/Python imports the pg_architect package from, and its version. Written only by `pg-architect install` (superuser); no other role may change it.';
COMMENT ON TABLE arch.migration IS
'Run-once schema migrations applied to this database, with the SHA-256 of each file.';

COMMENT ON COLUMN arch.settings.lock_timeout IS 'lock_timeout for everything an audit does (0: wait forever); a statement whose table is locked longer is skipped with reason locked, a locked object of another step becomes a note in arch.audit_runs.';
