-- pg_architect: weekly audit through pg_cron. Idempotent.

CREATE OR REPLACE FUNCTION arch.schedule(cron text DEFAULT '0 2 * * 0') RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_schema name;
    job bigint;
BEGIN
    IF cron IS NULL OR btrim(cron) = '' THEN
        RAISE EXCEPTION 'arch.schedule: the cron expression must not be empty'
            USING HINT = 'Use a five-field cron expression, e.g. ''0 2 * * 0'' for Sundays at 02:00.';
    END IF;
    -- pg_cron keeps its objects in schema cron, whatever pg_extension.extnamespace says.
    SELECT 'cron' INTO cron_schema FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_schema IS NULL THEN
        RAISE EXCEPTION 'arch.schedule: pg_cron is not installed in database %', current_database()
            USING DETAIL = 'The weekly audit is registered as a pg_cron job.',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name, and CREATE EXTENSION pg_cron; or run SELECT arch.run_audit() from your own scheduler.';
    END IF;
    BEGIN
        EXECUTE format('SELECT %I.schedule($1, $2, $3)', cron_schema)
            INTO job USING 'pg_architect_audit', cron, 'SELECT arch.run_audit()';
    EXCEPTION WHEN invalid_parameter_value OR invalid_text_representation THEN
        RAISE EXCEPTION 'arch.schedule: invalid cron expression "%"', cron
            USING DETAIL = SQLERRM,
                  HINT = 'Use a five-field cron expression (minute hour day-of-month month day-of-week), e.g. ''0 2 * * 0''.';
    END;
    RETURN job;
END
$$;
COMMENT ON FUNCTION arch.schedule(text) IS
'Registers (or re-registers) the pg_cron job pg_architect_audit that runs SELECT arch.run_audit() on the given cron schedule (default Sundays 02:00); returns the job id.';

CREATE OR REPLACE FUNCTION arch.unschedule() RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_schema name;
    found_job boolean;
BEGIN
    -- pg_cron keeps its objects in schema cron, whatever pg_extension.extnamespace says.
    SELECT 'cron' INTO cron_schema FROM pg_extension e WHERE e.extname = 'pg_cron';
    IF cron_schema IS NULL THEN
        RAISE EXCEPTION 'arch.unschedule: pg_cron is not installed in database %', current_database()
            USING HINT = 'Nothing to unschedule: without pg_cron no audit job can exist.';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.job WHERE jobname = $1 AND username = current_user)', cron_schema)
        INTO found_job USING 'pg_architect_audit';
    IF found_job THEN
        EXECUTE format('SELECT %I.unschedule($1)', cron_schema) USING 'pg_architect_audit';
    END IF;
    RETURN found_job;
END
$$;
COMMENT ON FUNCTION arch.unschedule() IS
'Removes the pg_cron job pg_architect_audit; returns false when there was none.';
