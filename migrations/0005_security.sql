-- pg_architect migration 0005: security (issue 7).
-- Run once, in a transaction, by `pg-architect install`; never edit after release.

-- What a human approved, as a hash the sidecar checks before writing anything to GitHub:
-- sha256 of kind, schema, table, DDL and rollback DDL (see arch.approval_hash()).
ALTER TABLE arch.recommendation
    ADD COLUMN approved_hash text,
    ADD CONSTRAINT recommendation_approved_hash CHECK (approved_hash IS NULL OR approved_hash ~ '^[0-9a-f]{64}$');

-- Recommendations approved before this version: what they hold now is what was approved.
UPDATE arch.recommendation r
SET approved_hash = pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(pg_catalog.chr(31),
        coalesce(r.kind, ''), coalesce(r.schema_name::text, ''), coalesce(r.table_name::text, ''), coalesce(r.ddl, ''),
        coalesce(r.rollback_ddl, '')), 'UTF8')), 'hex')
WHERE r.status NOT IN ('proposed', 'rejected', 'superseded');

-- The role whose statement a recommendation's query text is (visibility of the text).
ALTER TABLE arch.recommendation ADD COLUMN userid oid;
UPDATE arch.recommendation r SET userid = (
    SELECT min(s.userid::bigint)::oid FROM arch.recommendation_statement s
    WHERE s.recommendation_id = r.id AND s.queryid = r.queryid);

-- Utility statements (ALTER ROLE ... PASSWORD, CREATE USER ...) keep their kind and queryid,
-- never their text: pg_stat_statements keeps their literals on PostgreSQL 15.  Texts stored
-- by earlier versions are blanked (the same test as pg_architect.security.is_utility).
UPDATE arch.statement
SET query = ltrim(upper(coalesce(substring(query FROM '^(?:\s|--[^\n]*\n|/\*(?:[^*]|\*+[^*/])*\*+/|\()*([A-Za-z_]+)'), ''))
                  || ' <utility statement: text not stored>')
WHERE query !~* '^(\s|--[^\n]*\n|/\*([^*]|\*+[^*/])*\*+/|\()*(select|insert|update|delete|merge|with|values|table)\M';
