-- pg_architect migration 0008: the extended-statistics advisor's setting.
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- Proving a CREATE STATISTICS / SET STATISTICS candidate means running it and ANALYZE on the
-- table inside a subtransaction that is rolled back: that takes a SHARE UPDATE EXCLUSIVE lock
-- (blocks VACUUM, ANALYZE and DDL on the table, not reads or writes). Off by default: on
-- production the candidates stay "unproven: validate on staging".
ALTER TABLE arch.settings
    ADD COLUMN prove_statistics_in_transaction boolean NOT NULL DEFAULT false;
