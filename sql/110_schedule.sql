-- pg_architect: weekly audit through pg_cron. Idempotent.

-- The pg_cron plumbing shared by arch.schedule() / arch.schedule_sampling() and their unschedule
-- twins: one job per name, registered as the caller, with errors that say what to do.
CREATE OR REPLACE FUNCTION arch._cron_schedule(caller text, jobname text, cron text, command text, example text,
                                               purpose text) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_schema name;
    job bigint;
BEGIN
    IF cron IS NULL OR btrim(cron) = '' THEN
        RAISE EXCEPTION '%: the cron expression must not be empty', caller
            USING HINT = format('Use a five-field cron expression, e.g. %L.', example);
    END IF;
    -- pg_cron keeps its objects in schema cron, whatever pg_extension.extnamespace says.
    SELECT 'cron' INTO cron_schema FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_schema IS NULL THEN
        RAISE EXCEPTION '%: pg_cron is not installed in database %', caller, current_database()
            USING DETAIL = format('%s is registered as a pg_cron job.', purpose),
                  HINT = format('Add pg_cron to shared_preload_libraries, set cron.database_name, and CREATE EXTENSION pg_cron; or run %s from your own scheduler.', command);
    END IF;
    BEGIN
        EXECUTE format('SELECT %I.schedule($1, $2, $3)', cron_schema) INTO job USING jobname, cron, command;
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation THEN
        RAISE EXCEPTION '%: invalid cron expression "%"', caller, cron
            USING DETAIL = SQLERRM,
                  HINT = format('Use a five-field cron expression (minute hour day-of-month month day-of-week), e.g. %L.', example);
    END;
    RETURN job;
END
$$;
COMMENT ON FUNCTION arch._cron_schedule(text, text, text, text, text, text) IS
'Internal: registers (or re-registers) pg_cron job jobname running command on cron, as the caller; errors name caller (arch.schedule, arch.schedule_sampling).';

CREATE OR REPLACE FUNCTION arch._cron_unschedule(caller text, jobname text, what text) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_schema name;
    found_job boolean;
BEGIN
    SELECT 'cron' INTO cron_schema FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_schema IS NULL THEN
        RAISE EXCEPTION '%: pg_cron is not installed in database %', caller, current_database()
            USING HINT = format('Nothing to unschedule: without pg_cron no %s job can exist.', what);
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.job WHERE jobname = $1 AND username = current_user)', cron_schema)
        INTO found_job USING jobname;
    IF found_job THEN
        EXECUTE format('SELECT %I.unschedule($1)', cron_schema) USING jobname;
    END IF;
    RETURN found_job;
END
$$;
COMMENT ON FUNCTION arch._cron_unschedule(text, text, text) IS
'Internal: removes the caller''s pg_cron job jobname; false when there was none.';

CREATE OR REPLACE FUNCTION arch.schedule(cron text DEFAULT '0 2 * * 0') RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
RETURN arch._cron_schedule('arch.schedule', 'pg_architect_audit', cron, 'CALL arch.run_audit_batched()', '0 2 * * 0',
                           'The weekly audit');
COMMENT ON FUNCTION arch.schedule(text) IS
'Registers (or re-registers) the pg_cron job pg_architect_audit that runs CALL arch.run_audit_batched() (an audit that commits between batches of statements) on the given cron schedule (default Sundays 02:00); returns the job id.';

CREATE OR REPLACE FUNCTION arch.unschedule() RETURNS boolean
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
RETURN arch._cron_unschedule('arch.unschedule', 'pg_architect_audit', 'audit');
COMMENT ON FUNCTION arch.unschedule() IS
'Removes the pg_cron job pg_architect_audit; returns false when there was none.';
