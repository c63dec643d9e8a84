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
      arch.audit_run, arch.audit_statement, arch.recommendation, arch.recommendation_statement TO arch_admin;
-- The prologue must read where the package lives (reading it is harmless; writing it is not).
GRANT SELECT ON arch.python_env TO arch_admin;
GRANT EXECUTE ON FUNCTION arch._boot(), arch.run_audit(), arch.analyze_query(text), arch._analyze_query(text, text),
      arch.schedule(text), arch.unschedule() TO arch_admin;

-- arch.schedule() runs as its caller: admins need to reach pg_cron's functions (when installed).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        GRANT USAGE ON SCHEMA cron TO arch_admin;
    END IF;
END
$$;
