-- pg_architect migration 0006: the audit's own lock_timeout; notes of per-object steps that failed.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

ALTER TABLE arch.settings
    ADD COLUMN lock_timeout interval NOT NULL DEFAULT '5 s',
    ADD CONSTRAINT settings_lock_timeout CHECK (lock_timeout BETWEEN interval '0' AND interval '1 hour');

-- One line per object an audit step could not handle (permission denied, lock not available ...):
-- the audit records it and carries on.
ALTER TABLE arch.audit_run
    ADD COLUMN notes text[] NOT NULL DEFAULT '{}';
