-- pg_architect: the extended-statistics advisor's setting. Idempotent.

COMMENT ON COLUMN arch.settings.prove_statistics_in_transaction IS
'Prove statistics candidates by running CREATE STATISTICS / SET STATISTICS and ANALYZE in a rolled-back subtransaction (takes a SHARE UPDATE EXCLUSIVE lock on the table for a moment, waits at most 200 ms for it). Off: such candidates are "unproven: validate on staging".';
