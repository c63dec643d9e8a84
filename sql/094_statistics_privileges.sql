-- pg_architect: privileges of the statistics advisor. Idempotent.
-- Runs after 090_privileges.sql (which revoked PUBLIC on every arch function).
-- arch.advise_statistics() reads a sample of the audited tables and, when the setting allows,
-- takes their SHARE UPDATE EXCLUSIVE lock for a moment: admins only, with their own rights.

GRANT EXECUTE ON FUNCTION arch.advise_statistics(bigint, integer) TO arch_admin;
