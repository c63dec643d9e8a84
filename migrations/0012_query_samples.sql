-- pg_architect migration 0012: query samples with their literals (issue 10, real parameter values).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

ALTER TABLE arch.settings
    ADD COLUMN query_sample_max_rows integer NOT NULL DEFAULT 10000,
    ADD CONSTRAINT settings_query_sample_max_rows CHECK (query_sample_max_rows BETWEEN 0 AND 10000000),
    ADD COLUMN query_sample_per_query integer NOT NULL DEFAULT 100,
    ADD CONSTRAINT settings_query_sample_per_query CHECK (query_sample_per_query BETWEEN 1 AND 100000),
    ADD COLUMN query_sample_idle_window interval NOT NULL DEFAULT '1 minute',
    ADD CONSTRAINT settings_query_sample_idle_window CHECK (query_sample_idle_window BETWEEN interval '0' AND interval '1 day'),
    ADD COLUMN constant_parameter_min_samples integer NOT NULL DEFAULT 5,
    ADD CONSTRAINT settings_constant_parameter_min_samples CHECK (constant_parameter_min_samples BETWEEN 2 AND 100000);

-- One statement text as pg_stat_activity showed it, literals included, with the role that ran
-- it (its text is shown only through arch.visible_text(userid, query)). Only single plannable
-- statements are stored, never a utility statement's text. Bounded: at most
-- query_sample_per_query rows per statement and query_sample_max_rows in all, the oldest dropped.
CREATE TABLE arch.query_sample (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dbid             oid NOT NULL,
    userid           oid NOT NULL,
    queryid          bigint NOT NULL,
    application_name text,
    pid              integer,
    query_start      timestamptz,
    sampled_at       timestamptz NOT NULL DEFAULT now(),
    query            text NOT NULL,
    -- one execution is stored once, however many times it is seen (idle, then idle again)
    CONSTRAINT query_sample_execution UNIQUE (dbid, pid, query_start, queryid)
);
CREATE INDEX query_sample_statement ON arch.query_sample (dbid, userid, queryid, sampled_at DESC);
